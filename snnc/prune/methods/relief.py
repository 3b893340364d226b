"""NNrelief (Dekhovich et al. 2021, arXiv:2109.10795; docs/methods.md, "NNrelief").

Per neuron, the fewest top inputs (conv: whole 2-D kernels; the bias is one of the ranked items)
whose shares of the neuron's input flow add up to ``alpha`` are kept and the rest pruned (shares
measured on two batches of the scoring window, :func:`snnc.prune.monitors.relief_contributions`).
As in the authors' code (adekhovich/NNrelief), dead units (no spike on the pruning set) lose all
their inputs, and backward pruning removes every unit left without an outgoing connection, from the
output down. ``--sparsity`` is a target: at each prune event ``alpha`` is set by bisection
(:func:`alpha_for_target`) so that the pruned share of conv + dense weights reaches the schedule's
target. Never regenerates.
"""

from __future__ import annotations

import math

import torch

from snnc.nn.blocks import Conv, SpikingBlock
from snnc.nn.zoo import SpikingNet
from snnc.prune import masks as M
from snnc.prune.methods.base import Method, PruneEvent, Scores


def relief_bias(block: SpikingBlock) -> torch.Tensor:
    """``|b_j|``: the neuron's effective bias per step (its own bias plus the BN shift, running
    stats)."""
    b = torch.zeros(block.out_channels)
    if block.bias is not None:
        b = b + block.bias.detach()
    if block.bn is not None:
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = b + (bn.bias - scale * bn.running_mean).detach()
    return b.abs().double()


def relief_shares(contrib: torch.Tensor, samples: float, bias: torch.Tensor, out_hw: int = 1) -> torch.Tensor:
    """NNrelief importance (Dekhovich et al. 2021, arXiv:2109.10795, eq. 1 and sec. 3.2)::

        s_ij = mean_n c_nij / (sum_k mean_n c_nkj + |b_j| * sqrt(h * w))

    ``contrib``: ``(C_out, C_in)`` sums over ``samples`` of ``c_nij`` (``|w_ij x_ni|`` for dense,
    the Frobenius norm of ``|x_ni| * |K_ij|`` for conv,
    :func:`snnc.prune.monitors.relief_contributions`); ``bias``: ``|b_j|`` ``(C_out,)``; ``out_hw``:
    output positions ``h*w`` (1 for dense). Returns ``(C_out, C_in)`` shares; each row plus its bias
    share sums to 1.
    """
    mean = contrib / max(samples, 1.0)
    denom = mean.sum(1, keepdim=True) + bias.view(-1, 1) * math.sqrt(out_hw)
    return torch.where(denom > 0, mean / denom.clamp(min=1e-300), torch.zeros_like(mean))


def relief_keys(shares: torch.Tensor, alpha: float) -> torch.Tensor:
    """Pruning key of each connection: the share held by the more important inputs of the same
    neuron, divided by ``alpha``. The paper keeps, per neuron, the fewest top inputs whose shares
    reach ``alpha``, i.e. it prunes exactly the connections with key >= 1; ranking by the key lets
    the schedule prune any given number in the same order."""
    vals, idx = shares.sort(dim=1, descending=True, stable=True)
    before = vals.cumsum(1) - vals
    keys = torch.empty_like(shares)
    keys.scatter_(1, idx, before / alpha)
    return keys


def relief_prefix(shares: torch.Tensor, bias_share: torch.Tensor) -> torch.Tensor:
    """For each input ``i`` of neuron ``j`` (``shares`` ``(C_out, C_in)``, ``bias_share``
    ``(C_out,)``), the share held by the items ranked above it, the bias being one of the items
    (ties: lower index first). The paper keeps the fewest top items whose shares reach ``alpha``:
    exactly the inputs with prefix ``< alpha`` (the authors' code: ``pivot = #(cumsum < alpha S) +
    1`` items kept)."""
    items = torch.cat([shares, bias_share.view(-1, 1)], 1)
    vals, idx = items.sort(dim=1, descending=True, stable=True)
    before = vals.cumsum(1) - vals
    prefix = torch.empty_like(items)
    prefix.scatter_(1, idx, before)
    return prefix[:, :-1]


def relief_alphas(r: float, alpha_conv: float, alpha_fc: float) -> tuple[float, float]:
    """The one-parameter family the bisection searches: ``1 - alpha = r (1 - alpha_0)`` for conv and
    dense alike (``r = 1``: the configured ``alpha_conv``/``alpha_fc``; ``r = 0``: alpha 1)."""
    return max(0.0, 1.0 - r * (1.0 - alpha_conv)), max(0.0, 1.0 - r * (1.0 - alpha_fc))


class Relief(Method):
    name = "relief"
    unit = "conv+dense connections"

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        return dict(M.connection_targets(model))

    def records(self, regen: bool) -> tuple[str, ...]:
        return ("relief", "rate")

    def shares(self, event: PruneEvent) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer: (input shares (C_out, C_in), bias share (C_out,))}`` (:func:`relief_shares`)."""
        mon, out = event.monitor, {}
        for k, b in event.blocks.items():
            hw = mon.out_hw.get(k, 1) if isinstance(b, Conv) else 1
            bias = relief_bias(b)
            sh = relief_shares(mon.sums[k]["relief"], float(mon.sums[k]["relief_samples"]), bias, hw)
            mean = mon.sums[k]["relief"] / max(float(mon.sums[k]["relief_samples"]), 1.0)
            denom = mean.sum(1) + bias * math.sqrt(hw)
            bshare = torch.where(
                denom > 0, bias * math.sqrt(hw) / denom.clamp(min=1e-300), torch.zeros_like(bias)
            )
            out[k] = (sh, bshare)
        return out

    def score(self, event: PruneEvent) -> Scores:
        """Minus the :func:`relief_prefix` of each connection (``(C_out, C_in)``, a conv kernel is one
        unit): higher = keep; the paper keeps those with prefix below ``alpha``."""
        return {k: -relief_prefix(sh, bs) for k, (sh, bs) in self.shares(event).items()}

    def prune(self, event: PruneEvent) -> dict:
        blocks, model = event.blocks, event.model
        prefix = {k: -s for k, s in self.score(event).items()}
        dead = {
            k: (event.monitor.sums[k].get("rate", torch.ones(b.out_channels)) == 0) & (b.channel_mask > 0)
            for k, b in blocks.items()
        }
        output = list(blocks)[-1]
        dead[output] = torch.zeros_like(dead[output])  # the output layer's neurons are never removed
        total = sum(b.weight.numel() for b in blocks.values())
        n_target = int(round(event.target * total))
        r, pruned, info = alpha_for_target(
            model, blocks, prefix, dead, n_target, event.cfg.alpha_conv, event.cfg.alpha_fc
        )
        apply_relief(model, blocks, prefix, dead, *relief_alphas(r, event.cfg.alpha_conv, event.cfg.alpha_fc))
        a_conv, a_fc = relief_alphas(r, event.cfg.alpha_conv, event.cfg.alpha_fc)
        return {
            "alpha_conv": a_conv,
            "alpha_fc": a_fc,
            "pruned_weights": pruned,
            "target_weights": n_target,
            "dead_units": int(sum(int(d.sum()) for d in dead.values())),
            **info,
        }


def apply_relief(
    model: SpikingNet,
    blocks: dict[str, SpikingBlock],
    prefix: dict[str, torch.Tensor],
    dead: dict[str, torch.Tensor],
    alpha_conv: float,
    alpha_fc: float,
) -> int:
    """Write the masks of the alpha rule (on top of the current ones: pruned stays pruned), remove
    ``dead`` units whole, then backward-prune to a fixed point; returns the orphans removed."""
    for k, b in blocks.items():
        conv = isinstance(b, Conv)
        keep = prefix[k] < (alpha_conv if conv else alpha_fc)
        m = keep.to(b.weight_mask.dtype)
        if conv:
            m = m.view(*m.shape, 1, 1).expand_as(b.weight_mask)
        b.weight_mask.mul_(m)
        b.channel_mask[dead[k]] = 0.0
    orphans = 0
    while True:  # backward pruning: a unit with no outgoing connection loses its inputs
        n = M.remove_orphans(model)
        if n == 0:
            return orphans
        orphans += n


def _pruned(blocks: dict[str, SpikingBlock]) -> int:
    return sum(int(b.weight.numel() - M.effective_weight_mask(b).sum()) for b in blocks.values())


def alpha_for_target(
    model: SpikingNet,
    blocks: dict[str, SpikingBlock],
    prefix: dict[str, torch.Tensor],
    dead: dict[str, torch.Tensor],
    n_target: int,
    alpha_conv: float,
    alpha_fc: float,
    iterations: int = 40,
) -> tuple[float, int, dict]:
    """The smallest ``r`` (:func:`relief_alphas`) whose rule prunes at least ``n_target`` weights
    (dead units and orphans included), by bisection: the pruned count never falls as ``r`` grows
    (a smaller alpha keeps a subset of each neuron's items, and a subset orphans at least as many
    units). Leaves the masks as they were. Returns (r, weights pruned at r, log)."""
    saved = {k: (b.weight_mask.clone(), b.channel_mask.clone()) for k, b in blocks.items()}

    def count(r: float) -> int:
        try:
            apply_relief(model, blocks, prefix, dead, *relief_alphas(r, alpha_conv, alpha_fc))
            return _pruned(blocks)
        finally:
            for k, b in blocks.items():
                b.weight_mask.copy_(saved[k][0])
                b.channel_mask.copy_(saved[k][1])

    hi = 1.0 / max(1e-12, min(1.0 - alpha_conv, 1.0 - alpha_fc))  # alpha 0 for both: top item only
    lo = 0.0
    at_lo = count(lo)
    if at_lo >= n_target:
        return lo, at_lo, {"alpha_search": "target met at alpha 1 (dead units and zero-flow inputs)"}
    at_hi = count(hi)
    if at_hi < n_target:
        return hi, at_hi, {"alpha_search": "target beyond alpha 0 (one item per neuron)"}
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if count(mid) >= n_target:
            hi = mid
        else:
            lo = mid
    return hi, count(hi), {"alpha_search": "bisection"}


METHOD = Relief()
