"""Scores: which units matter. Higher score = keep. Each function cites its source in
docs/methods.md.

Channel scores are ``{layer: (C,)}`` float64 tensors normalised by the mean over the layer's active
channels, so layers of different width and activity compete in one global ranking.
"""

from __future__ import annotations

import math

import torch

from snnc.nn.blocks import Conv, SpikingBlock
from snnc.prune.monitors import ActivityMonitor


def _normalise(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    ref = x[keep].mean() if bool(keep.any()) else x.mean()
    return x / ref if float(ref) > 0 else x.clone()


def sca_scores(mon: ActivityMonitor) -> tuple[dict, dict]:
    """Spiking channel activity (Li et al. 2024, arXiv:2406.01072): mean spike rate and mean ``|v|``
    of each channel over the window, each normalised per layer, averaged. Regrowth signal: mean
    ``|dL/ds|`` of the channel's masked output, normalised by the layer's active mean. Returns
    (score, regrow)."""
    score, regrow = {}, {}
    for name, b in mon.blocks.items():
        keep = b.channel_mask > 0
        rate, vabs = mon.mean(name, "rate"), mon.mean(name, "vabs")
        score[name] = 0.5 * _normalise(rate, keep) + 0.5 * _normalise(vabs, keep)
        regrow[name] = _normalise(mon.mean(name, "grad"), keep)
    return score, regrow


def criticality_scores(mon: ActivityMonitor) -> tuple[dict, dict]:
    """Criticality (Chen et al. 2023, arXiv:2311.16141): mean surrogate derivative of the spike at
    the channel's voltage, i.e. how close the membrane sits to threshold. Pruned channels are scored
    on the voltage they would have unmasked (``shadow``), which is their regeneration criterion."""
    score, regrow = {}, {}
    for name, b in mon.blocks.items():
        keep = b.channel_mask > 0
        crit = mon.mean(name, "crit")
        ref = crit[keep].mean() if bool(keep.any()) else crit.mean()
        ref = ref if float(ref) > 0 else torch.tensor(1.0, dtype=crit.dtype)
        score[name] = crit / ref
        d = mon.sums[name]
        shadow = d["shadow"] / d["shadow_count"] if "shadow" in d else torch.zeros_like(crit)
        regrow[name] = shadow / ref
    return score, regrow


def l1_scores(blocks: dict[str, SpikingBlock]) -> dict:
    """Filter L1 norm (Li et al. 2017, arXiv:1608.08710, sec. 3.1), of the weight times the BN scale
    (the current the filter actually produces), per output channel."""
    out = {}
    for name, b in blocks.items():
        w = b.masked_weight().detach().abs().flatten(1).sum(1).double()
        if b.bn is not None:
            w = w * (b.bn.weight / torch.sqrt(b.bn.running_var + b.bn.eps)).detach().abs().double()
        out[name] = _normalise(w, b.channel_mask > 0)
    return out


def random_scores(blocks: dict[str, SpikingBlock], generator: torch.Generator) -> dict:
    """Uniform random scores (the baseline); the generator is seeded identically on every rank."""
    return {
        name: torch.rand(b.out_channels, generator=generator, dtype=torch.float64)
        for name, b in blocks.items()
    }


# -- channel selection -----------------------------------------------------------------------------
def select_channels(
    masks: dict[str, torch.Tensor],
    score: dict[str, torch.Tensor],
    n_pruned: int,
    regrow: dict[str, torch.Tensor] | None = None,
    n_regen: int = 0,
    min_keep: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]]]:
    """New channel masks with exactly ``n_pruned`` channels pruned in total (when ``min_keep``
    allows).

    First the ``n_regen`` pruned channels with the highest positive ``regrow`` signal come back;
    then the active channels (not the ones just regenerated) with the lowest ``score`` are pruned
    until the total reaches ``n_pruned``. Ties break by layer order and channel index, so the result
    is deterministic. Returns (masks, regenerated ``(layer, channel)`` pairs in order).
    """
    order = {name: i for i, name in enumerate(masks)}
    new = {k: (m > 0).clone() for k, m in masks.items()}
    revived: list[tuple[str, int]] = []
    if regrow is not None and n_regen > 0:
        cands = [
            (-float(regrow[k][i]), order[k], i, k)
            for k, m in new.items()
            for i in torch.nonzero(~m).flatten().tolist()
            if float(regrow[k][i]) > 0
        ]
        for _, _, i, k in sorted(cands)[:n_regen]:
            new[k][i] = True
            revived.append((k, i))
    pruned = sum(int((~m).sum()) for m in new.values())
    need = n_pruned - pruned
    if need > 0:
        kept = {k: int(m.sum()) for k, m in new.items()}
        floor = min_keep or {k: 1 for k in new}
        cands = [
            (float(score[k][i]), order[k], i, k)
            for k, m in new.items()
            for i in torch.nonzero(m).flatten().tolist()
            if (k, i) not in revived
        ]
        for _, _, i, k in sorted(cands):
            if need == 0:
                break
            if kept[k] <= floor[k]:
                continue
            new[k][i] = False
            kept[k] -= 1
            need -= 1
    return {k: m.to(masks[k].dtype) for k, m in new.items()}, revived


def allocate(n_pruned: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split ``n_pruned`` over layers in proportion to their widths (largest remainder), so every
    layer loses the same fraction and the total is exact. A global ranking instead can empty one
    layer of a small net while another keeps most channels (we measured: 7/24 vs 21/32 at 50%),
    which costs accuracy."""
    total = sum(sizes.values())
    if total == 0:
        return {k: 0 for k in sizes}
    exact = {k: n_pruned * c / total for k, c in sizes.items()}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    rest = n_pruned - sum(out.values())
    for k in sorted(sizes, key=lambda k: (-(exact[k] - out[k]), list(sizes).index(k)))[:rest]:
        out[k] += 1
    return out


def select_channels_per_layer(
    masks: dict[str, torch.Tensor],
    score: dict[str, torch.Tensor],
    n_pruned: int,
    regrow: dict[str, torch.Tensor] | None = None,
    regen_fraction: float = 0.0,
    min_keep: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]]]:
    """:func:`select_channels` layer by layer, with ``n_pruned`` split by :func:`allocate` and, per
    layer, ``floor(regen_fraction * pruned)`` regenerations. Returns (masks, regenerated pairs)."""
    quota = allocate(n_pruned, {k: m.numel() for k, m in masks.items()})
    new, revived = {}, []
    for k, m in masks.items():
        n_regen = int(math.floor(regen_fraction * int((m == 0).sum())))
        sub, rev = select_channels(
            {k: m},
            {k: score[k]},
            quota[k],
            None if regrow is None else {k: regrow[k]},
            n_regen,
            None if min_keep is None else {k: min_keep[k]},
        )
        new[k] = sub[k]
        revived += rev
    return new, revived


# -- NNrelief --------------------------------------------------------------------------------------
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
