"""Synaptic operations, NeuroBench's definition (Yik et al. 2023, arXiv:2304.04640, sec. "SynOps"):
one operation per nonzero input spike and nonzero fan-out weight. Counted in torch from recorded
input spikes and the masked weights, per layer, averaged per sample (all ``T`` steps).

For a convolution, ``sum over outputs of conv(x, 1[W != 0])`` counts every (spike, nonzero weight)
pair that lands inside the output map, which is exactly the fan-out actually used (padding and
stride included).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from snnc import data as D
from snnc.nn.blocks import Conv, Dense, Pool, SpikingBlock
from snnc.nn.zoo import SpikingNet, named_blocks
from snnc.prune.masks import effective_weight_mask


def _fold(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w, t = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w)


def block_synops(block, x: torch.Tensor) -> float:
    """Total synaptic operations of ``block`` for input spikes ``x`` ``(N, C, [H, W,] T)``."""
    if isinstance(block, Conv):
        w = effective_weight_mask(block) * block.weight
        stride, pool = block.stride, getattr(block, "pool", 1)
        if pool > 1:  # conv + sum-pool of the current = one conv of stride ``pool``
            from snnc.nn.blocks import conv_pool_weight

            w, stride = torch.from_numpy(conv_pool_weight(w.detach().numpy(), pool)), pool
        nz = w.ne(0).to(x.dtype)
        y = F.conv2d(
            _fold(x),
            nz,
            stride=stride,
            padding=block.padding,
            dilation=block.dilation,
            groups=block.groups,
        )
        return float(y.sum())
    if isinstance(block, Dense):
        nz = (effective_weight_mask(block) * block.weight).ne(0).to(x.dtype)
        return float((x.sum(-1) * nz.sum(0)).sum())
    if isinstance(block, Pool):
        if block.weight == 0:
            return 0.0
        k = block.kernel_size
        ones = torch.ones(x.shape[1], 1, k, k, dtype=x.dtype)
        return float(F.conv2d(_fold(x), ones, stride=block.stride, groups=x.shape[1]).sum())
    return 0.0


def run_hooked(
    model: SpikingNet, hooks: list, x: np.ndarray, steps: int, encoding: str, seed: int, batch_size: int
):
    """Run ``model`` in eval mode on images ``x`` encoded as training does (the generator seeded by
    ``seed``), then remove the forward ``hooks`` that gather what the caller counts and restore the
    model's mode."""
    was = model.training
    model.eval()
    gen = torch.Generator()
    gen.manual_seed(seed)
    try:
        for xb, _ in D.batches(x, np.zeros(len(x), dtype=np.int64), batch_size, False, None):
            model(D.encode(xb, steps, encoding, generator=gen))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)


@torch.no_grad()
def measure(
    model: SpikingNet,
    x: np.ndarray,
    steps: int,
    encoding: str,
    seed: int = 0,
    batch_size: int = 128,
) -> dict:
    """Per-layer SynOps and spike rates per sample on images ``x`` ``(N, 1, H, W)``.

    Returns ``{"layers": {name: {"synops", "spike_rate"}}, "total": synops per sample,
    "total_without_pools": the same without the sum-pool layers}`` (NeuroBench's tool counts
    Linear/Conv layers only; tests/prune/test_synops_reference.py).
    """
    layers = [
        (n, b)
        for n, b in named_blocks(model)
        if isinstance(b, SpikingBlock | Pool)
        and (getattr(b, "neuron", None) is not None or isinstance(b, Pool))
    ]
    ops = {n: 0.0 for n, _ in layers}
    spikes = {n: 0.0 for n, _ in layers}
    elems = {n: 0.0 for n, _ in layers}
    chans: dict[str, torch.Tensor] = {}
    hooks = []
    for name, b in layers:

        def hook(mod, inp, out, name=name):
            ops[name] += block_synops(mod, inp[0])
            spikes[name] += float(out.sum())
            elems[name] += float(out.numel())
            per = out.transpose(0, 1).reshape(out.shape[1], -1).sum(1)
            chans[name] = chans.get(name, 0) + per

        hooks.append(b.register_forward_hook(hook))
    # Synapse-only convs of a residual block have no neuron but do synaptic work.
    for name, b in named_blocks(model):
        if isinstance(b, Conv) and b.neuron is None:
            ops[name] = 0.0

            def hook2(mod, inp, out, name=name):
                ops[name] += block_synops(mod, inp[0])

            hooks.append(b.register_forward_hook(hook2))
    run_hooked(model, hooks, x, steps, encoding, seed, batch_size)
    n = max(len(x), 1)
    out = {}
    for name in ops:
        out[name] = {
            "synops": ops[name] / n,
            "spike_rate": spikes[name] / elems[name] if elems.get(name) else None,
        }
        if name in chans:
            per_channel = elems[name] / chans[name].numel()
            out[name]["channel_rates"] = (chans[name] / per_channel).tolist()
    pools = {n for n, b in layers if isinstance(b, Pool)}
    return {
        "layers": out,
        "total": sum(v["synops"] for v in out.values()),
        # NeuroBench's tool counts Linear/Conv layers only; snnc's sum-pool is a synaptic layer of the
        # deployed net (a grouped conv on Loihi 2) and is in "total".
        "total_without_pools": sum(v["synops"] for n, v in out.items() if n not in pools),
    }
