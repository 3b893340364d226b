"""Which units each method may prune, and keeping pruned parameters exactly where the masks put
them.

Masks are the blocks' buffers (snnc/nn/blocks.py): ``channel_mask`` ``(C_out,)`` gates a channel's
current, BN shift and spikes; ``weight_mask`` (weight shape) removes connections. Pruned connections
are held at exactly 0; the weights of a pruned *channel* are frozen (not zeroed), so a regenerated
channel resumes from what it had learnt. Either way their gradients and optimizer moments are zeroed
at every step, so Adam's running moments cannot move them (a zero gradient with a stale ``exp_avg``
still moves a weight).
"""

from __future__ import annotations

import torch
from torch import nn

from snnc.nn.blocks import Conv, Dense, Residual, SpikingBlock
from snnc.nn.zoo import SpikingNet


def _inside_residual(model: SpikingNet) -> set[int]:
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, Residual):
            ids.update(id(x) for x in m.shortcut.modules())
            ids.update(id(x) for x in m.main[-1].modules())
    return ids


def channel_targets(model: SpikingNet) -> list[tuple[str, Conv]]:
    """Conv blocks whose output channels channel methods prune: every conv with its own neuron.

    Synapse-only convs feeding a residual Add and the Add's channels are not pruned (an Add channel
    is shared by both branches); the output layer is never a conv in the zoo, and dense neurons are
    kept.
    """
    skip = _inside_residual(model)
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, Conv) and m.neuron is not None and id(m) not in skip
    ]


def connection_targets(
    model: SpikingNet, kinds: tuple[type, ...] = (Conv, Dense)
) -> list[tuple[str, SpikingBlock]]:
    """Blocks whose connections connection methods prune (conv and dense with a neuron)."""
    skip = _inside_residual(model)
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, kinds) and m.neuron is not None and id(m) not in skip
    ]


def effective_weight_mask(block: SpikingBlock) -> torch.Tensor:
    """Weight mask with the rows of masked output channels zeroed: the connections that exist."""
    view = (-1,) + (1,) * (block.weight.dim() - 1)
    return block.weight_mask * block.channel_mask.view(view)


@torch.no_grad()
def apply_masks(model: nn.Module) -> None:
    """Zero the weights of pruned connections (exactly)."""
    for m in model.modules():
        if isinstance(m, SpikingBlock):
            m.weight.mul_(m.weight_mask)


def _param_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(parameter, keep)`` pairs: keep is 0 where the parameter belongs to a pruned unit."""
    out = []
    for m in model.modules():
        if isinstance(m, SpikingBlock):
            keep = effective_weight_mask(m)
            out.append((m.weight, keep))
            cm = m.channel_mask
            if m.bias is not None:
                out.append((m.bias, cm))
            if m.bn is not None:
                out.append((m.bn.weight, cm))
                out.append((m.bn.bias, cm))
        elif isinstance(m, Residual):
            out.append((m.bias, m.channel_mask))
    return out


@torch.no_grad()
def mask_gradients(model: nn.Module) -> None:
    """Zero the gradients of pruned parameters (call between ``backward`` and ``step``)."""
    for p, keep in _param_masks(model):
        if p.grad is not None:
            p.grad.mul_(keep)


@torch.no_grad()
def mask_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Zero the optimizer moments (Adam ``exp_avg``/``exp_avg_sq``, SGD ``momentum_buffer``) of
    pruned parameters, so they neither move now nor carry stale momentum into a regenerated unit."""
    for p, keep in _param_masks(model):
        state = opt.state.get(p)
        if not state:
            continue
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"):
            buf = state.get(key)
            if isinstance(buf, torch.Tensor) and buf.shape == keep.shape:
                buf.mul_(keep)


def channel_counts(model: SpikingNet) -> tuple[int, int]:
    """(kept, total) output channels over :func:`channel_targets`."""
    kept = total = 0
    for _, b in channel_targets(model):
        kept += int(b.channel_mask.sum())
        total += b.out_channels
    return kept, total


def connection_counts(model: SpikingNet, kinds: tuple[type, ...] = (Conv, Dense)) -> tuple[int, int]:
    """(kept, total) weights over the conv/dense blocks (a masked channel's weights count as
    pruned)."""
    kept = total = 0
    for _, b in connection_targets(model, kinds):
        kept += int(effective_weight_mask(b).sum())
        total += b.weight.numel()
    return kept, total


def successor(model: SpikingNet, block: nn.Module) -> tuple[SpikingBlock | None, int]:
    """The next synaptic block of a sequential model after ``block`` and the fan-out width per
    channel of ``block`` in its input (1 through pools, H*W through a flatten). ``(None, 0)`` if
    there is none or the next one is a residual block."""
    blocks = list(model.blocks)
    if block not in blocks:
        return None, 0
    flat = False
    for nxt in blocks[blocks.index(block) + 1 :]:
        if isinstance(nxt, Residual):
            return None, 0
        if isinstance(nxt, SpikingBlock):
            if flat:
                return nxt, nxt.weight.shape[1] // block.out_channels
            return nxt, 1
        if getattr(nxt, "kind", "") == "flatten":
            flat = True
    return None, 0


@torch.no_grad()
def remove_orphans(model: SpikingNet) -> int:
    """Mask channels/neurons left with no outgoing connection (NNrelief: they are removed whole).

    Returns how many units were removed. The output layer has no successor and is never touched.
    """
    removed = 0
    for _, b in connection_targets(model):
        nxt, width = successor(model, b)
        if nxt is None:
            continue
        em = effective_weight_mask(nxt)
        if width == 1 and nxt.weight.dim() == b.weight.dim():
            fan = em.transpose(0, 1).reshape(b.out_channels, -1).sum(1)
        else:
            fan = em.sum(0).reshape(b.out_channels, width).sum(1)
        dead = (fan == 0) & (b.channel_mask > 0)
        removed += int(dead.sum())
        b.channel_mask[dead] = 0.0
    return removed
