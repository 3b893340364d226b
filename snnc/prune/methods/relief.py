"""NNrelief (Dekhovich et al. 2021, arXiv:2109.10795; docs/methods.md, "NNrelief").

Prunes conv kernels and dense weights by their share of the neuron's input (measured on two batches
of the scoring window, :func:`snnc.prune.monitors.relief_contributions`), never regenerates, and
removes the channels and neurons left without an outgoing connection.
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


def select_connections(
    blocks: dict[str, SpikingBlock], keys: dict[str, torch.Tensor], n_pruned: int
) -> dict[str, torch.Tensor]:
    """Connection masks (``weight_mask`` shapes) with ``n_pruned`` weights pruned in total: the
    already pruned stay pruned (no regeneration in NNrelief), then units with the largest key go,
    each unit being a weight (dense) or a kernel ``K_ij`` (conv, ``k*k`` weights). Every neuron
    keeps its top input."""
    items = []
    pruned = 0
    new = {}
    order = {name: i for i, name in enumerate(blocks)}
    for name, b in blocks.items():
        wm = b.weight_mask
        unit = int(wm[0, 0].numel()) if isinstance(b, Conv) else 1
        alive = (wm.flatten(2).amax(2) > 0) if isinstance(b, Conv) else wm > 0
        new[name] = alive.clone()
        pruned += int((~alive).sum()) * unit
        k = keys[name]
        top = torch.zeros_like(alive)  # each neuron's most important input is never pruned
        top.scatter_(1, k.argmin(1, keepdim=True), True)
        for j, i in torch.nonzero(alive & ~top).tolist():
            items.append((-float(k[j, i]), order[name], j, i, name, unit))
    for _, _, j, i, name, unit in sorted(items):
        if pruned >= n_pruned:
            break
        new[name][j, i] = False
        pruned += unit
    out = {}
    for name, b in blocks.items():
        m = new[name].to(b.weight_mask.dtype)
        out[name] = m.view(*m.shape, 1, 1).expand_as(b.weight_mask).clone() if isinstance(b, Conv) else m
    return out


class Relief(Method):
    name = "relief"
    unit = "conv+dense connections"

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        return dict(M.connection_targets(model))

    def records(self, regen: bool) -> tuple[str, ...]:
        return ("relief",)

    def score(self, event: PruneEvent) -> Scores:
        """Minus :func:`relief_keys` of each connection (``(C_out, C_in)``; a conv kernel is one
        unit), at ``alpha_conv`` or ``alpha_fc``."""
        mon, out = event.monitor, {}
        for k, b in event.blocks.items():
            conv = isinstance(b, Conv)
            shares = relief_shares(
                mon.sums[k]["relief"],
                float(mon.sums[k]["relief_samples"]),
                relief_bias(b),
                mon.out_hw.get(k, 1) if conv else 1,
            )
            out[k] = -relief_keys(shares, event.cfg.alpha_conv if conv else event.cfg.alpha_fc)
        return out

    def prune(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.weight.numel() for b in blocks.values())
        keys = {k: -s for k, s in self.score(event).items()}
        new = select_connections(blocks, keys, int(round(event.target * total)))
        for k, b in blocks.items():
            b.weight_mask.copy_(new[k])
        return {"orphans_removed": M.remove_orphans(event.model)}


METHOD = Relief()
