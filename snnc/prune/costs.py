"""Deployed cost per pruning unit, for ``--objective synops`` (docs/methods.md, "Objective").

:func:`channel_synops` attributes the SynOps of one forward pass (NeuroBench's count, as
:mod:`snnc.prune.synops`: one operation per nonzero input spike and nonzero fan-out weight) to the
output channels of the channel targets. Pruning channel ``c`` of a conv removes

- its **incoming** operations: the (input spike, nonzero weight) pairs that land on channel ``c``'s
  outputs, and
- its **outgoing** operations: every operation its spikes cause downstream, through a pool and a
  flatten (which keep the channel apart) up to and including the next block that mixes channels
  (a conv or dense layer; both the main branch and the shortcut when that is a residual block).

So ``cost_c = incoming_c + outgoing_c``, per sample, on a batch of training data, in the eval mode
the deployed net computes in. The neurocore cost (``--objective cores``) needs the compiler and is
computed by the caller (``snnc.commands.prune``), which passes it to the trainer as a function with
the signature of :data:`UnitCost`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from snnc.nn.blocks import Conv, Dense, Flatten, Pool, Residual, SpikingBlock, conv_pool_weight
from snnc.nn.zoo import SpikingNet, named_blocks
from snnc.prune.masks import effective_weight_mask
from snnc.prune.synops import run_hooked

UnitCost = Callable[[SpikingNet, dict[str, SpikingBlock]], dict[str, torch.Tensor]]
"""``cost(model, blocks) -> {layer: (C,) float tensor}``: the deployed cost of each output channel
of each block in ``blocks`` (one unit for all layers)."""


def _fold(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w, t = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w)


def _conv_nonzero(block: Conv) -> tuple[torch.Tensor, int]:
    """The 0/1 kernel of the block's existing connections (with a fused sum-pool folded in, as
    :func:`snnc.prune.synops.block_synops`) and its stride."""
    w = effective_weight_mask(block) * block.weight.detach()
    stride = block.stride
    if getattr(block, "pool", 1) > 1:
        w, stride = torch.from_numpy(conv_pool_weight(w.numpy(), block.pool)), block.pool
    return w.ne(0).to(torch.float32), stride


def conv_incoming(block: Conv, x: torch.Tensor) -> torch.Tensor:
    """``(C_out,)`` operations landing on each output channel for input spikes ``x``."""
    nz, stride = _conv_nonzero(block)
    y = F.conv2d(
        _fold(x), nz, stride=stride, padding=block.padding, dilation=block.dilation, groups=block.groups
    )
    return y.transpose(0, 1).reshape(y.shape[1], -1).sum(1).double()


def conv_per_input(block: Conv, x: torch.Tensor) -> torch.Tensor:
    """``(C_in,)`` operations caused by each input channel's spikes: ``conv(x_i, sum_o nz[o, i])``
    summed, one depthwise conv."""
    nz, stride = _conv_nonzero(block)
    c_in, g = x.shape[1], block.groups
    per_group_out = nz.shape[0] // g
    kernel = torch.cat([nz[j * per_group_out : (j + 1) * per_group_out].sum(0) for j in range(g)])
    y = F.conv2d(
        _fold(x),
        kernel.unsqueeze(1),
        stride=stride,
        padding=block.padding,
        dilation=block.dilation,
        groups=c_in,
    )
    return y.transpose(0, 1).reshape(c_in, -1).sum(1).double()


def dense_per_input(block: Dense, x: torch.Tensor) -> torch.Tensor:
    """``(F,)`` operations caused by each input feature's spikes (spikes x nonzero fan-out)."""
    nz = effective_weight_mask(block) * block.weight.detach()
    return (x.sum(-1).sum(0).double() * nz.ne(0).sum(0).double()).flatten()


def pool_per_input(block: Pool, x: torch.Tensor) -> torch.Tensor:
    """``(C,)`` operations of a sum-pool per channel: one per spike per window it falls in."""
    if block.weight == 0:
        return torch.zeros(x.shape[1], dtype=torch.float64)
    c, k = x.shape[1], block.kernel_size
    y = F.conv2d(_fold(x), torch.ones(c, 1, k, k), stride=block.stride, groups=c)
    return y.transpose(0, 1).reshape(c, -1).sum(1).double()


def _per_input(block, x: torch.Tensor) -> torch.Tensor | None:
    if isinstance(block, Conv):
        return conv_per_input(block, x)
    if isinstance(block, Dense):
        return dense_per_input(block, x)
    if isinstance(block, Pool):
        return pool_per_input(block, x)
    return None


def consumers(model: SpikingNet, name: str) -> list[str]:
    """The blocks whose operations a channel of ``name`` causes: after it in execution order,
    through pools and flattens, up to the first conv/dense (a residual block: its first main block
    and its shortcut)."""
    order = list(named_blocks(model))
    names = [n for n, _ in order]
    out: list[str] = []
    for n, b in order[names.index(name) + 1 :]:
        if n.startswith(name + "."):
            continue  # a block's own parts
        if isinstance(b, Residual):
            main0 = next(iter(b.main))
            out += [f"{n}.main.0", f"{n}.shortcut"] if isinstance(main0, Conv | Dense) else []
            break
        if isinstance(b, Flatten):
            continue
        out.append(n)
        if not isinstance(b, Pool):
            break
    return out


@torch.no_grad()
def channel_synops(
    model: SpikingNet,
    blocks: dict[str, SpikingBlock],
    x: np.ndarray,
    steps: int,
    encoding: str,
    seed: int = 0,
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """``{layer: (C,)}`` SynOps per sample each output channel of ``blocks`` carries (incoming +
    outgoing, see the module docstring) on images ``x``."""
    chains = {name: consumers(model, name) for name in blocks}
    watch = set(blocks) | {c for chain in chains.values() for c in chain}
    incoming = {name: torch.zeros(b.out_channels, dtype=torch.float64) for name, b in blocks.items()}
    per_input: dict[str, torch.Tensor] = {}
    hooks = []
    for name, b in named_blocks(model):
        if name not in watch:
            continue

        def hook(mod, inp, out, name=name):
            if name in incoming and isinstance(mod, Conv):
                incoming[name] += conv_incoming(mod, inp[0])
            got = _per_input(mod, inp[0])
            if got is not None:
                per_input[name] = per_input.get(name, 0) + got

        hooks.append(b.register_forward_hook(hook))
    run_hooked(model, hooks, x, steps, encoding, seed, batch_size)
    n = max(len(x), 1)
    out = {}
    for name, b in blocks.items():
        cost = incoming[name].clone()
        for consumer in chains[name]:
            got = per_input.get(consumer)
            if got is not None:  # a flattened input: C * H * W features, channel-major
                cost += got.reshape(b.out_channels, -1).sum(1)
        out[name] = cost / n
    return out
