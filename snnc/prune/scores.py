"""What the channel methods share: score normalisation, the regrowth budget and channel selection.
Higher score = keep.

Each method's own scores live with it in ``snnc/prune/methods/`` and cite their source in
docs/methods.md. Channel scores are ``{layer: (C,)}`` float tensors. Selection (:func:`select`) has
two allocations (docs/methods.md, "Allocation"):

- ``uniform``: every layer loses the same share of its channels (:func:`allocate`), ranked within
  the layer; the scale of a layer's scores does not matter;
- ``global``: one ranking of all layers' channels, after each layer's scores are made comparable
  (:func:`comparable`: by default each divided by the mean over the layer's active channels; the
  z-score is the measured alternative), with a per-layer floor so that no layer empties.

With a cost objective (``synops`` or ``cores``) the ranking key is score per unit of deployed cost
(:func:`cost_keys`). Regrowth comes first and is global in both allocations: the ``n_regen`` pruned
channels with the highest positive ``regrow`` signal come back (:func:`regen_budget`).
"""

from __future__ import annotations

import math

import torch

ALLOCATIONS = ("uniform", "global")
OBJECTIVES = ("accuracy", "synops", "cores")
COMPARABLE = ("mean", "zscore")


def normalise(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x / mean(x[keep])`` (the mean over the layer's active channels; over all if none is
    active; ``x`` unchanged when that mean is not positive)."""
    ref = x[keep].mean() if bool(keep.any()) else x.mean()
    return x / ref if float(ref) > 0 else x.clone()


def _active(mask: torch.Tensor) -> torch.Tensor:
    keep = mask > 0
    return keep if bool(keep.any()) else torch.ones_like(keep)


def comparable(
    score: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], how: str = "mean"
) -> dict[str, torch.Tensor]:
    """Scores on one scale across layers, each layer by the statistics of its active channels.

    ``mean`` (default): ``x / mean`` after shifting a layer with negative scores to a minimum of 0:
    the ratio to the layer's typical channel, so a layer whose method scores run higher (wider
    fan-in, denser activity) does not keep more channels for that alone. ``zscore``:
    ``(x - mean) / std`` (std 0: ``x - mean``), also shift-free; it lost more on digits
    (docs/methods.md, "Allocation"). Float64 out."""
    if how not in COMPARABLE:
        raise ValueError(f"unknown score comparison {how!r}; choose {' or '.join(COMPARABLE)}")
    out = {}
    for k, s in score.items():
        x = s.detach().double().flatten()
        keep = _active(masks[k].flatten())
        if how == "zscore":
            mu = x[keep].mean()
            sd = x[keep].std(unbiased=False) if int(keep.sum()) > 1 else torch.zeros((), dtype=x.dtype)
            out[k] = (x - mu) / sd if float(sd) > 0 else x - mu
        else:
            lo = float(x[keep].min())
            if lo < 0:
                x = x - lo
            out[k] = normalise(x, keep)
    return out


def cost_keys(
    score: dict[str, torch.Tensor], cost: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Score per unit of cost, the ranking key of a cost objective (lowest = pruned first).

    ``score`` is made non-negative and layer-comparable by :func:`comparable` (``mean``); ``cost``
    (per channel, in one unit for all layers: SynOps per sample or neurocores) is divided by its
    mean over all active channels, and floored at 1e-6 of it, so a channel that costs nothing is
    kept unless it also scores 0."""
    s = comparable(score, masks, "mean")
    active = [cost[k].double().flatten()[_active(masks[k].flatten())] for k in masks]
    ref = float(torch.cat(active).mean()) if active else 1.0
    ref = ref if ref > 0 else 1.0
    return {k: s[k] / (cost[k].double().flatten() / ref).clamp_min(1e-6) for k in masks}


def regen_budget(pruned: int, fraction: float) -> int:
    """Units that may come back at an event: ``max(1, floor(fraction * pruned))`` of the ``pruned``
    units of all layers together, when ``fraction > 0`` and something is pruned; else 0."""
    if fraction <= 0 or pruned <= 0:
        return 0
    return min(pruned, max(1, math.floor(fraction * pruned)))


def allocate(n_pruned: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split ``n_pruned`` over layers in proportion to their widths (largest remainder), so every
    layer loses the same fraction and the total is exact (the ``uniform`` allocation)."""
    total = sum(sizes.values())
    if total == 0:
        return {k: 0 for k in sizes}
    exact = {k: n_pruned * c / total for k, c in sizes.items()}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    rest = n_pruned - sum(out.values())
    for k in sorted(sizes, key=lambda k: (-(exact[k] - out[k]), list(sizes).index(k)))[:rest]:
        out[k] += 1
    return out


def floors(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Per-layer floor: ``max(1, ceil(fraction * C))`` channels always kept."""
    return {k: max(1, math.ceil(fraction * c)) for k, c in sizes.items()}


# -- channel selection -----------------------------------------------------------------------------
def _revive(
    new: dict[str, torch.Tensor], regrow: dict[str, torch.Tensor] | None, n_regen: int
) -> list[tuple[str, int]]:
    """Switch back on the ``n_regen`` pruned channels with the highest positive ``regrow`` (ties by
    layer order, then index). Returns them in order."""
    if regrow is None or n_regen <= 0:
        return []
    order = {name: i for i, name in enumerate(new)}
    cands = [
        (-float(regrow[k][i]), order[k], i, k)
        for k, m in new.items()
        for i in torch.nonzero(~m).flatten().tolist()
        if float(regrow[k][i]) > 0
    ]
    revived = []
    for _, _, i, k in sorted(cands)[:n_regen]:
        new[k][i] = True
        revived.append((k, i))
    return revived


def _prune_lowest(
    new: dict[str, torch.Tensor],
    key: dict[str, torch.Tensor],
    need: dict[str | None, int],
    floor: dict[str, int],
    protected: set[tuple[str, int]],
) -> None:
    """Prune active channels in increasing ``key`` (ties by layer order, then index), skipping
    ``protected`` and layers at their floor, until ``need`` is met: ``{None: n}`` counts all layers
    together, ``{layer: n}`` each layer on its own."""
    order = {name: i for i, name in enumerate(new)}
    kept = {k: int(m.sum()) for k, m in new.items()}
    cands = sorted(
        (float(key[k][i]), order[k], i, k)
        for k, m in new.items()
        for i in torch.nonzero(m).flatten().tolist()
        if (k, i) not in protected
    )
    for _, _, i, k in cands:
        slot = None if None in need else k
        if need.get(slot, 0) <= 0 or kept[k] <= floor[k]:
            continue
        new[k][i] = False
        kept[k] -= 1
        need[slot] -= 1


def select(
    masks: dict[str, torch.Tensor],
    score: dict[str, torch.Tensor],
    n_pruned: int,
    allocation: str = "global",
    regrow: dict[str, torch.Tensor] | None = None,
    n_regen: int = 0,
    min_keep: dict[str, int] | None = None,
    cost: dict[str, torch.Tensor] | None = None,
    compare: str = "mean",
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]]]:
    """New channel masks with ``n_pruned`` channels pruned in total (fewer only where the floors
    ``min_keep`` forbid more).

    First the ``n_regen`` pruned channels with the highest positive ``regrow`` come back (all
    layers together); then active channels, not the ones just regenerated, are pruned lowest key
    first: ``global``, one ranking of :func:`comparable` scores (``compare``) (or :func:`cost_keys` with a
    ``cost``); ``uniform``, each layer to its :func:`allocate` share, ranked within the layer.
    Deterministic (ties by layer order and index). Returns (masks, regenerated ``(layer, channel)``
    pairs in order)."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocation!r}; choose {' or '.join(ALLOCATIONS)}")
    new = {k: (m > 0).clone() for k, m in masks.items()}
    revived = _revive(new, regrow, n_regen)
    floor = min_keep or {k: 1 for k in new}
    if cost is not None:
        key = cost_keys(score, cost, masks)
    elif allocation == "global":
        key = comparable(score, masks, compare)
    else:
        key = {k: s.detach().double().flatten() for k, s in score.items()}
    if allocation == "global":
        need: dict[str | None, int] = {None: n_pruned - sum(int((~m).sum()) for m in new.values())}
    else:
        quota = allocate(n_pruned, {k: m.numel() for k, m in masks.items()})
        need = {k: quota[k] - int((~m).sum()) for k, m in new.items()}
    _prune_lowest(new, key, need, floor, set(revived))
    return {k: m.to(masks[k].dtype) for k, m in new.items()}, revived


def select_channels(
    masks: dict[str, torch.Tensor],
    score: dict[str, torch.Tensor],
    n_pruned: int,
    regrow: dict[str, torch.Tensor] | None = None,
    n_regen: int = 0,
    min_keep: dict[str, int] | None = None,
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int]]]:
    """One ranking of the scores *as given* (no per-layer normalisation) over all layers, after
    ``n_regen`` regenerations: :func:`select` for scores already on one scale."""
    new = {k: (m > 0).clone() for k, m in masks.items()}
    revived = _revive(new, regrow, n_regen)
    key = {k: s.detach().double().flatten() for k, s in score.items()}
    need: dict[str | None, int] = {None: n_pruned - sum(int((~m).sum()) for m in new.values())}
    _prune_lowest(new, key, need, min_keep or {k: 1 for k in new}, set(revived))
    return {k: m.to(masks[k].dtype) for k, m in new.items()}, revived
