"""Criticality (Chen, Liu, Liu, You, arXiv:2311.16141; docs/methods.md, "Criticality"), after the
authors' public code (MmPple/pruning-criticality).

Criticality of a neuron/channel: ``crit_c = mean over samples of max over positions of (1/T) sum_t
f(v_t)``, ``f(v) = 1 / (1 + (pi (v - theta) / theta)^2)`` (the ATan surrogate derivative, peak 1 at
threshold; :func:`snnc.prune.monitors.sample_criticality`), ``v`` the potential before reset.

Two variants (``PruneConfig.variant``):

- ``structured`` (default; ``channel_pruning/vggprune.py``): the prune epochs train with an L1
  penalty on the BN scales (network slimming, ``grad += 1e-4 sign(gamma)``); at the last prune event
  all ``|gamma|`` are sorted globally, ``n = round(p C)`` plus ``G = floor((C - n) 0.05)`` channels
  are pruned, and the ``G`` pruned channels with the highest criticality (global top-G, measured on
  the unpruned net over the scoring window) come back with their trained weights; the remaining
  epochs fine-tune.
- ``unstructured`` (``weight_pruning/core.py``): at every prune event, global magnitude pruning of
  conv and dense weights to the cubic schedule's target, with ``G = floor(0.2 K')`` of the kept
  budget (``K'`` the kept weights outside the output layer) filled by pruned weights ranked by the
  criticality of their post-synaptic neuron; regrown weights restart at zero. Logs the
  regeneration survival (share of this step's magnitude-pruned weights that criticality
  re-enabled).
"""

from __future__ import annotations

import math

import torch

from snnc.errors import UsageError
from snnc.prune import masks as M
from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores

VARIANTS = ("structured", "unstructured")
SLIMMING = 1e-4  # the authors' L1 strength on BN gamma (README: main.py -sr --s 0.0001)
GROWTH_STRUCTURED = 0.05  # vggprune.py --growth_rate 0.05 (README)
GROWTH_UNSTRUCTURED = 0.2  # main.py -r 0.2 (README)


def variant_of(cfg) -> str:
    v = getattr(cfg, "variant", None) or "structured"
    if v not in VARIANTS:
        raise UsageError(f"unknown --variant {v!r} for method 'criticality'; choose {' or '.join(VARIANTS)}")
    return v


def structured_selection(
    gamma: dict[str, torch.Tensor],
    crit: dict[str, torch.Tensor],
    n_pruned: int,
    floor: dict[str, int],
    growth: float = GROWTH_STRUCTURED,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]], int]:
    """Keep masks ``{layer: bool (C,)}`` after the authors' structured step: prune the ``n_pruned
    + G`` channels of lowest ``|gamma|`` globally (``G = floor((C - n_pruned) growth)``, ``C`` all
    channels; a layer keeps at least ``floor[layer]``), then bring back the ``G`` pruned channels of
    highest ``crit`` (global top-G). Ties break by layer order and index. Returns (keep masks,
    regenerated ``(layer, channel)``, G)."""
    total = sum(g.numel() for g in gamma.values())
    g_extra = int(math.floor((total - n_pruned) * growth))
    order = {k: i for i, k in enumerate(gamma)}
    keep = {k: torch.ones(g.numel(), dtype=torch.bool) for k, g in gamma.items()}
    kept = {k: g.numel() for k, g in gamma.items()}
    need = n_pruned + g_extra
    for _, _, i, k in sorted(
        (float(g[i].abs()), order[k], i, k) for k, g in gamma.items() for i in range(g.numel())
    ):
        if need == 0:
            break
        if kept[k] <= floor[k]:
            continue
        keep[k][i] = False
        kept[k] -= 1
        need -= 1
    cands = sorted(
        (-float(crit[k][i]), order[k], i, k)
        for k, m in keep.items()
        for i in torch.nonzero(~m).flatten().tolist()
    )
    revived = [(k, i) for _, _, i, k in cands[:g_extra]]
    for k, i in revived:
        keep[k][i] = True
    return keep, revived, g_extra


def unstructured_selection(
    weights: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    crit: dict[str, torch.Tensor],
    n_keep: int,
    growth: float = GROWTH_UNSTRUCTURED,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """The authors' unstructured update (``core.py``, ``Masking.pruning`` and ``truncate_weights``).

    ``weights``/``masks``: ``{layer: weight-shaped}`` (the last entry is the output layer);
    ``crit``: ``{layer: (C_out,)}`` criticality of each post-synaptic neuron; ``n_keep``: ``K``, the
    weights kept in total. The global top-``K`` by ``|w|`` (pruned weights are 0) gives the
    magnitude mask; the output layer keeps its part of it. With ``K'`` the other layers' share,
    ``G = floor(growth K')``: those layers keep their top ``K' - G`` by magnitude and the ``G``
    pruned weights whose post-synaptic neuron is most critical come back (ties: larger ``|w|``
    first, then layer order and index). Returns (new masks, regrown (bool) per layer, log with
    ``regrown`` = G and ``regeneration_survival``: the share of this step's magnitude-pruned weights
    (alive before, outside the magnitude mask) that came back).
    """
    names = list(weights)
    last = names[-1]
    mag = {k: (weights[k].abs() * (masks[k] > 0)).double() for k in names}
    flat = torch.cat([mag[k].flatten() for k in names])
    order = torch.sort(flat, descending=True, stable=True).indices
    keep_flat = torch.zeros_like(flat, dtype=torch.bool)
    keep_flat[order[:n_keep]] = True
    l1, s = {}, 0
    for k in names:
        n = mag[k].numel()
        l1[k] = keep_flat[s : s + n].view_as(mag[k])
        s += n
    k_prime = n_keep - int(l1[last].sum())
    g = int(math.floor(growth * k_prime))
    others = names[:-1]
    flat_o = torch.cat([mag[k].flatten() for k in others])
    order_o = torch.sort(flat_o, descending=True, stable=True).indices
    keep_o = torch.zeros_like(flat_o, dtype=torch.bool)
    keep_o[order_o[: k_prime - g]] = True
    # Regrowth ranking: criticality of the post-synaptic neuron, then |w|, then position.
    ff = torch.cat(
        [crit[k].double().view((-1,) + (1,) * (mag[k].dim() - 1)).expand_as(mag[k]).flatten() for k in others]
    )
    cand = torch.nonzero(~keep_o).flatten()
    by_mag = cand[torch.sort(flat_o[cand], descending=True, stable=True).indices]
    by_crit = by_mag[torch.sort(ff[by_mag], descending=True, stable=True).indices]
    regrown_o = torch.zeros_like(keep_o)
    regrown_o[by_crit[:g]] = True
    new, regrown, s = {}, {}, 0
    for k in others:
        n = mag[k].numel()
        new[k] = (keep_o[s : s + n] | regrown_o[s : s + n]).view_as(mag[k])
        regrown[k] = regrown_o[s : s + n].view_as(mag[k])
        s += n
    new[last] = l1[last]
    regrown[last] = torch.zeros_like(l1[last])
    was = {k: masks[k] > 0 for k in names}
    dropped = sum(int((was[k] & ~l1[k]).sum()) for k in names)
    back = sum(int((was[k] & ~l1[k] & regrown[k]).sum()) for k in names)
    log = {
        "regrown": g,
        "magnitude_pruned": dropped,
        "regeneration_survival": back / dropped if dropped else 0.0,
    }
    return new, regrown, log


class SlimmingHook:
    """Network slimming during the prune epochs of the structured variant: adds ``s sign(gamma)``
    to the gradient of every target block's BN scale (the authors' ``updateBN``), until
    :meth:`stop` (the one-shot pruning event) or once any target channel is pruned (a run resumed
    after that event fine-tunes without the penalty, as the uninterrupted run does)."""

    def __init__(self, blocks: dict, strength: float) -> None:
        self.strength = strength
        self.active = True
        self.blocks = blocks
        self.handles = [
            b.bn.weight.register_hook(self._hook(b.bn.weight)) for b in blocks.values() if b.bn is not None
        ]

    def _hook(self, gamma):
        def hook(grad):
            if not self.active or any(bool((b.channel_mask == 0).any()) for b in self.blocks.values()):
                return grad
            return grad + self.strength * torch.sign(gamma.detach())

        return hook

    def stop(self) -> None:
        self.active = False
        for h in self.handles:
            h.remove()
        self.handles = []


class Criticality(ChannelMethod):
    name = "criticality"

    def __init__(self) -> None:
        self._variant = "structured"
        self._regen = True  # False with --no-regen: G = 0
        self._slimming: SlimmingHook | None = None

    @property
    def unit(self) -> str:  # type: ignore[override]
        return "conv channels" if self._variant == "structured" else "conv+dense connections"

    def targets(self, model):
        if self._variant == "unstructured":
            return dict(M.connection_targets(model))
        return super().targets(model)

    def start(self, model, cfg):
        """Fix the variant for the run; the structured variant starts slimming (its hooks are
        removed at the pruning event; none when ``sparsity`` is 0)."""
        self._variant = variant_of(cfg)
        allocation, objective = getattr(cfg, "allocation", None), getattr(cfg, "objective", "accuracy")
        if allocation not in (None, "global") or objective != "accuracy":
            raise UsageError(
                "method 'criticality' ranks all layers together by the authors' rule; drop --allocation "
                "and --objective, or use sca, l1 or random"
            )
        self._regen = cfg.regen_fraction > 0
        if self._slimming is not None:
            self._slimming.stop()
            self._slimming = None
        if self._variant == "structured" and cfg.sparsity > 0:
            self._slimming = SlimmingHook(super().targets(model), SLIMMING)
        return None

    def records(self, regen: bool) -> tuple[str, ...]:
        return ("crit_atan",)

    def score(self, event: PruneEvent) -> Scores:
        """Structured: ``|gamma|`` per channel. Unstructured: ``|w|`` per weight."""
        if self._variant == "unstructured":
            return {k: b.weight.detach().abs().double() for k, b in event.blocks.items()}
        return {k: b.bn.weight.detach().abs().double() for k, b in event.blocks.items()}

    def regrow(self, event: PruneEvent) -> Scores:
        """Criticality of each channel/neuron over the window (``crit_c``)."""
        return {k: event.monitor.mean(k, "crit_atan") for k in event.blocks}

    def prune(self, event: PruneEvent) -> dict:
        if self._variant == "unstructured":
            return self._prune_unstructured(event)
        return self._prune_structured(event)

    def _prune_structured(self, event: PruneEvent) -> dict:
        """One shot at the last prune event (target = the final sparsity); earlier events only
        slim."""
        if event.target < event.cfg.sparsity - 1e-12:
            return {"regenerated": 0, "slimming": True}
        if self._slimming is not None:
            self._slimming.stop()
            self._slimming = None
        blocks = event.blocks
        if any(b.bn is None for b in blocks.values()):
            raise UsageError(
                "criticality (structured) ranks channels by BN gamma; every conv needs batch-norm"
            )
        total = sum(b.out_channels for b in blocks.values())
        n_pruned = int(round(event.target * total))
        floor = {
            k: max(1, math.ceil(event.cfg.min_keep_fraction * b.out_channels)) for k, b in blocks.items()
        }
        keep, revived, g = structured_selection(
            self.score(event), self.regrow(event), n_pruned, floor, GROWTH_STRUCTURED if self._regen else 0.0
        )
        for k, b in blocks.items():
            b.channel_mask.copy_(keep[k].to(b.channel_mask.dtype))
        return {
            "regenerated": len(revived),
            "revived": [[k, i] for k, i in revived],
            "growth": g,
            "regeneration_survival": len(revived) / (n_pruned + g) if n_pruned + g else 0.0,
        }

    def _prune_unstructured(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.weight.numel() for b in blocks.values())
        n_keep = total - int(round(event.target * total))
        weights = {k: b.weight.detach() for k, b in blocks.items()}
        masks = {k: M.effective_weight_mask(b) for k, b in blocks.items()}
        new, regrown, log = unstructured_selection(
            weights, masks, self.regrow(event), n_keep, GROWTH_UNSTRUCTURED if self._regen else 0.0
        )
        for k, b in blocks.items():
            b.weight_mask.copy_(new[k].to(b.weight_mask.dtype))
            b.weight.masked_fill_(regrown[k], 0.0)  # regrown weights restart at zero
        return {"regenerated": log["regrown"], **log}


METHOD = Criticality()
