"""The switcher method (``switcher``): a small network that reads a task network's FC weights and
outputs connection switches (after the switcher-network pruning of arXiv:2103.15590; the paper
gives no architecture, so docs/methods.md, "Switcher network", records what we chose and measured).

For each FC weight ``w_ij`` the switcher sees five features, divided by the mean ``|w|`` over all FC
layers: ``w_ij``, ``|w_ij|``, the mean ``|w|`` of row ``j`` (the neuron) and of column ``i`` (the
input), and ``|w_ij| - |w_ij(start)|`` (what the run's training did to the connection, which the
magnitude alone does not tell). Its switch probability is ``p = sigmoid(PRIOR (a - 1) + f)``, ``a``
the scaled ``|w_ij|`` and ``f`` a shared MLP starting at 0, so the untrained switcher ranks as
magnitude pruning does and training learns the difference. The switcher is trained on the odd
batches of a prune epoch (SGD) on ``task loss + lambda * mean(p)``, the task net seeing the
binarised switch ``1[p > 1/2]`` with a straight-through gradient (Bengio et al. 2013,
arXiv:1308.3432); the task net trains on the even batches with its mask. At a prune event the mask
keeps the top-``p`` connections needed to meet the schedule's sparsity (switched-back connections
regenerate at zero).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snnc.errors import UsageError
from snnc.nn.blocks import Dense, SpikingBlock
from snnc.nn.zoo import SpikingNet
from snnc.prune import masks as M
from snnc.prune.config import PruneConfig
from snnc.prune.distributed import all_reduce_mean
from snnc.prune.methods.base import Method, PruneEvent, Scores
from snnc.prune.resume import load_optimizer, optimizer_tensors

N_FEATURES = 5


def features(
    weight: torch.Tensor, start: torch.Tensor | None = None, scale: torch.Tensor | float | None = None
) -> torch.Tensor:
    """``(out, in)`` weights (and the same weights at the start of the run) -> ``(out, in, 5)``
    switcher features: ``w``, ``|w|``, row and column mean ``|w|``, ``|w| - |w_start|``, all divided
    by ``scale`` (default: the layer's mean ``|w|``; the method passes the mean over all FC
    layers, so that the features, like magnitude pruning, compare weights across layers)."""
    w = weight.detach()
    scale = w.abs().mean().clamp(min=1e-12) if scale is None else scale
    a = w.abs() / scale
    row = a.mean(1, keepdim=True).expand_as(a)
    col = a.mean(0, keepdim=True).expand_as(a)
    moved = a - start.detach().abs() / scale if start is not None else torch.zeros_like(a)
    return torch.stack([w / scale, a, row, col, moved], dim=-1)


PRIOR = 4.0  # slope of the magnitude prior in the switch logit


class Switcher(nn.Module):
    """Switch probability ``p = sigmoid(PRIOR (a - 1) + f(features))``, ``a = |w| / scale``
    (:func:`features`), ``f`` a shared per-connection MLP ``5 -> hidden -> 1`` whose last layer
    starts at zero: the untrained switcher ranks as magnitude does (connections above the mean
    ``|w|`` on), and what training adds is ``f``, learned from the task loss."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():
            self.net[2].weight.zero_()
            self.net[2].bias.zero_()

    def forward(
        self, weight: torch.Tensor, start: torch.Tensor | None = None, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Switch probabilities ``(out, in)`` for an FC weight ``(out, in)``."""
        return torch.sigmoid(self.logit(weight, start, scale))

    def logit(
        self, weight: torch.Tensor, start: torch.Tensor | None = None, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The switch's logit ``PRIOR (a - 1) + f``: what prune events rank by (the probability
        saturates at 1 in float32 for large weights, which would make ties of the top ones)."""
        feats = features(weight, start, scale)
        return PRIOR * (feats[..., 1] - 1.0) + self.net(feats).squeeze(-1)


def straight_through(p: torch.Tensor) -> torch.Tensor:
    """Binary switch ``1[p > 1/2]`` forward, identity gradient to ``p`` backward."""
    hard = (p > 0.5).to(p.dtype)
    return hard + p - p.detach()


def switcher_masks(
    probs: dict[str, torch.Tensor], blocks: dict[str, Dense], n_pruned: int
) -> dict[str, torch.Tensor]:
    """Masks keeping the connections with the highest score ``probs`` (``{layer: (out, in)}``: switch
    logits, probabilities or magnitudes) so that ``n_pruned`` FC weights are pruned in total; every
    neuron keeps its highest-scoring input."""
    flat = torch.cat([p.flatten() for p in probs.values()])
    protected = []
    for p in probs.values():
        t = torch.zeros_like(p, dtype=torch.bool)
        t.scatter_(1, p.argmax(1, keepdim=True), True)
        protected.append(t.flatten())
    prot = torch.cat(protected)
    key = torch.where(prot, torch.full_like(flat, float("inf")), flat)
    order = torch.sort(key, stable=True).indices
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[order[: min(n_pruned, int((~prot).sum()))]] = False
    out, s = {}, 0
    for k, b in blocks.items():
        n = b.weight.numel()
        out[k] = keep[s : s + n].view_as(b.weight).to(b.weight_mask.dtype)
        s += n
    return out


class SwitcherTraining:
    """The switcher network and its SGD (momentum 0.9) during a run: it trains on the odd batches of
    a prune epoch, the task net on the even ones."""

    def __init__(self, model: SpikingNet, cfg: PruneConfig) -> None:
        self.model, self.cfg = model, cfg
        self.fc = dict(M.connection_targets(model, (Dense,)))
        self.start = {k: b.weight.detach().clone() for k, b in self.fc.items()}
        self.switcher = Switcher()
        self.opt = torch.optim.SGD(self.switcher.parameters(), lr=cfg.switcher_lr, momentum=0.9)

    def step(self, batch_index: int, spikes: torch.Tensor, labels: torch.Tensor) -> bool:
        """One SGD step of the switcher on ``task loss + lambda * mean switch`` on odd batches; the
        task net is fixed."""
        if batch_index % 2 == 0:
            return False
        saved = {k: b.weight_mask for k, b in self.fc.items()}
        probs = []
        try:
            for k, p in self.probs().items():
                b = self.fc[k]
                probs.append(p.flatten())
                # The switch replaces the mask for this step (a buffer may hold a non-leaf tensor).
                b.weight_mask = straight_through(p)
            counts = self.model(spikes).sum(-1)
            loss = F.cross_entropy(counts, labels) + self.cfg.switcher_lambda * torch.cat(probs).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            for k, b in self.fc.items():
                b.weight_mask = saved[k]
        for p in self.model.parameters():
            p.grad = None
        all_reduce_mean([p.grad for p in self.switcher.parameters() if p.grad is not None])
        self.opt.step()
        return True

    def logits(self) -> dict[str, torch.Tensor]:
        """Switch logits of every FC layer, features scaled by the mean ``|w|`` of all FC weights."""
        scale = (
            torch.cat([b.weight.detach().abs().flatten() for b in self.fc.values()]).mean().clamp(min=1e-12)
        )
        return {k: self.switcher.logit(b.weight, self.start.get(k), scale) for k, b in self.fc.items()}

    def probs(self) -> dict[str, torch.Tensor]:
        """Switch probabilities of every FC layer (:meth:`logits` through a sigmoid)."""
        return {k: torch.sigmoid(v) for k, v in self.logits().items()}

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"switcher.{k}": v for k, v in self.switcher.state_dict().items()}
        tensors.update({f"swstart.{k}": v for k, v in self.start.items()})
        opt_tensors, info = optimizer_tensors("swopt", self.opt)
        tensors.update(opt_tensors)
        return tensors, {"swopt": info}

    def load_state(self, tensors: dict[str, torch.Tensor], header: dict) -> None:
        self.switcher.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("switcher.")})
        self.start = {k: tensors[f"swstart.{k}"] for k in self.fc if f"swstart.{k}" in tensors} or self.start
        load_optimizer("swopt", self.opt, tensors, header["swopt"])


class SwitcherMethod(Method):
    name = "switcher"
    unit = "dense connections"

    def check(self, model: SpikingNet) -> None:
        if not M.connection_targets(model, (Dense,)):
            raise UsageError("method 'switcher' prunes FC connections but the model has no dense layers")

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        return dict(M.connection_targets(model, (Dense,)))

    def start(self, model: SpikingNet, cfg: PruneConfig) -> SwitcherTraining:
        return SwitcherTraining(model, cfg)

    def score(self, event: PruneEvent) -> Scores:
        """Switch logits ``(out, in)`` of every FC connection (ranked as the probabilities, without
        their saturation). They rank pruned connections too, so a connection switched back on
        regenerates (no separate ``regrow``)."""
        with torch.no_grad():
            return {k: v.double() for k, v in event.training.logits().items()}

    def prune(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.weight.numel() for b in blocks.values())
        n_pruned = int(round(event.target * total))
        new = switcher_masks(self.score(event), blocks, n_pruned)
        # What magnitude (same count, same rule) would keep on the same weights: how much the switch
        # differs from |w| (1.0 = it learned nothing magnitude does not say).
        mag = switcher_masks(
            {k: (b.weight.detach().abs() * b.weight_mask).double() for k, b in blocks.items()},
            blocks,
            n_pruned,
        )
        kept = sum(int(new[k].sum()) for k in blocks)
        agree = sum(int(((new[k] > 0) & (mag[k] > 0)).sum()) for k in blocks)
        regenerated = 0
        for k, b in blocks.items():
            before = b.weight_mask.clone()
            b.weight_mask.copy_(new[k])
            regenerated += int(((before == 0) & (new[k] > 0)).sum())
        return {
            "regenerated": regenerated,
            "magnitude_agreement": agree / max(kept, 1),
            "kept_per_layer": {k: int(new[k].sum()) for k in blocks},
        }


METHOD = SwitcherMethod()
