"""SCA, spiking channel activity (Li et al. 2024, arXiv:2406.01072; docs/methods.md, "SCA").

During training, at every prune event: the conv channels with the lowest mean membrane-potential
magnitude ``S_c = mean |U|`` (over samples, steps and positions of the scoring window) are pruned,
and pruned channels come back by the magnitude of the loss gradient with respect to their BN scale
``gamma``, computed *densely* (RigL-style) on one regrowth batch: the pruned channel's ``gamma`` and
shift are set to 0 instead of masking its output, so the forward pass is the pruned net's while the
gradient reaches the pruned channel's ``gamma`` (:func:`dense_gamma_grad`).

Variants (``PruneConfig.variant``): ``potential`` (default, the paper's score) and ``rectified``
(``mean max(U, 0)``: a hyperpolarised, silent channel no longer scores high; a documented
deviation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from snnc import data as D
from snnc.errors import UsageError
from snnc.prune.distributed import seeded_generator
from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores

VARIANTS = ("potential", "rectified")


def variant_of(cfg) -> str:
    """The SCA variant of ``cfg`` (``potential`` when none is given); one-line error otherwise."""
    v = getattr(cfg, "variant", None) or "potential"
    if v not in VARIANTS:
        raise UsageError(f"unknown --variant {v!r} for method 'sca'; choose {' or '.join(VARIANTS)}")
    return v


def dense_gamma_grad(model, blocks: dict, spikes: torch.Tensor, labels: torch.Tensor) -> dict:
    """``{layer: dL/dgamma (C,)}`` at the pruned net's point, dense over channels.

    The blocks' channel mask gates the current *after* BN, so the ordinary gradient of a pruned
    channel's ``gamma`` is exactly 0. Here the mask moves onto the parameters: ``gamma' = gamma m``,
    ``beta' = beta m`` (and the block's own bias), with the output mask set to 1. The forward pass
    is unchanged (a pruned channel gets zero current and zero bias, so ``v = 0`` and it never
    spikes), but the gradient of the loss with respect to ``gamma'`` reaches the pruned channel
    through its (kept) outgoing weights: RigL's dense gradient (Evci et al. 2020,
    arXiv:1911.11134). BN running statistics are not updated; the model's parameters get no
    gradient. Loss: cross-entropy on the output spike counts.
    """
    overrides: dict[str, torch.Tensor] = {k: v.clone() for k, v in model.named_buffers() if "running_" in k}
    leaves = {}
    for name, b in blocks.items():
        m = b.channel_mask.detach()
        g = (b.bn.weight.detach() * m).clone().requires_grad_(True)
        leaves[name] = g
        overrides[f"{name}.bn.weight"] = g
        overrides[f"{name}.bn.bias"] = b.bn.bias.detach() * m
        if b.bias is not None:
            overrides[f"{name}.bias"] = b.bias.detach() * m
        overrides[f"{name}.channel_mask"] = torch.ones_like(m)
    with torch.enable_grad():
        counts = functional_call(model, overrides, (spikes,)).sum(-1)
        loss = F.cross_entropy(counts, labels)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    return {name: g.detach() for name, g in zip(leaves, grads, strict=True)}


def regrowth_batch(cfg, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch for the regrowth gradient: ``batch_size`` samples of the run's training
    set drawn by a generator seeded by ``(seed, 11, epoch)`` (identical on every rank and in a
    resumed run), encoded as the run encodes."""
    x, y = D.load(cfg.dataset).train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    gen = seeded_generator(cfg.seed, 11, epoch)
    idx = torch.randperm(len(x), generator=gen)[: cfg.batch_size].numpy()
    spikes = D.encode(torch.from_numpy(x[idx]), cfg.steps, cfg.encoding, generator=gen)
    return spikes, torch.from_numpy(y[idx])


class SCA(ChannelMethod):
    name = "sca"

    def check(self, model) -> None:
        super().check(model)
        missing = [n for n, b in self.targets(model).items() if b.bn is None]
        if missing:
            raise UsageError(
                f"method 'sca' regrows channels by their BN scale gradient but conv {missing[0]!r} "
                "has no batch-norm; use --method l1 or criticality"
            )

    def start(self, model, cfg):
        variant_of(cfg)  # an unknown variant fails before training starts
        return None

    def records(self, regen: bool) -> tuple[str, ...]:
        return ("vabs", "vpos")

    def score(self, event: PruneEvent) -> Scores:
        """``S_c``: mean ``|U|`` of each channel over the window (``rectified``: mean
        ``max(U, 0)``), ``U`` the membrane potential before reset. Not normalised: the values are
        compared across layers as they are."""
        key = "vabs" if variant_of(event.cfg) == "potential" else "vpos"
        return {name: event.monitor.mean(name, key) for name in event.blocks}

    def regrow(self, event: PruneEvent) -> Scores:
        """``|dL/dgamma|`` of each channel, dense (:func:`dense_gamma_grad`) on one regrowth batch
        (:func:`regrowth_batch`)."""
        spikes, labels = regrowth_batch(event.cfg, event.epoch)
        grads = dense_gamma_grad(event.model, event.blocks, spikes, labels)
        return {name: g.abs().double() for name, g in grads.items()}


METHOD = SCA()
