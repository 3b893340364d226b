"""Model -> IR: read a zoo :class:`~snnc.nn.zoo.SpikingNet` (with its masks) once into a float
:class:`Graph`.

The traced graph has exactly the model's (eval-mode) semantics (``snnc.nn.blocks``):

- ``weight_mask`` is multiplied into the weights;
- a block's ``channel_mask`` zeroes that channel's incoming weights, its bias and its batch-norm
  effect (BN ``weight`` and ``bias`` set to 0, so the folded scale and shift are 0), and is kept as
  ``node.meta["channel_mask"]`` (``(C,)`` 0/1) so ``remove_dead`` knows which channels were pruned;
- a block's ``VoltageBiasBatchNorm`` stays as ``node.bn`` (scale on the current, shift into the
  voltage bias) for ``fold_bn`` to fold;
- a ``Residual`` becomes its main-branch nodes, a synapse-only 1x1 shortcut node and an ``Add``
  node named after the residual module (fan-in edges from the last main node and the shortcut). The
  residual's ``channel_mask`` zeroes the corresponding output channels of every synapse feeding the
  ``Add``.

Node names are the module names (``blocks.2.main.0``, ``blocks.2.shortcut``, ``blocks.2`` for the
Add).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snnc import ir
from snnc.errors import SnncError
from snnc.nn import blocks as B
from snnc.nn.neuron import NeuronParams
from snnc.nn.zoo import SpikingNet


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _lif(params: NeuronParams, bias: np.ndarray | None) -> ir.CubaLIF:
    return ir.CubaLIF(
        threshold=float(params.threshold),
        current_decay=int(params.current_decay),
        voltage_decay=int(params.voltage_decay),
        bias=bias,
    )


def _channel_view(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask.reshape((-1,) + (1,) * (ndim - 1))


def _synaptic(name: str, block: B.SpikingBlock, extra_mask: np.ndarray | None = None) -> ir.Node:
    """One Dense/Conv block -> one IR node; ``extra_mask`` is an Add's channel mask for a
    synapse-only node."""
    mask = _np(block.channel_mask)
    if extra_mask is not None:
        mask = mask * extra_mask
    weight = _np(block.masked_weight())
    weight = weight * _channel_view(mask, weight.ndim)
    neuron = None
    bn = None
    if block.neuron is not None:
        bias = None if block.bias is None else _np(block.bias) * mask
        neuron = _lif(block.neuron, bias)
        if block.bn is not None:
            m = block.bn
            bn = ir.BatchNorm(
                weight=_np(m.weight) * mask,
                bias=_np(m.bias) * mask,
                running_mean=_np(m.running_mean),
                running_var=_np(m.running_var),
                eps=float(m.eps),
            )
    meta = {"channel_mask": mask.astype(np.int8), "module": type(block).__name__}
    if isinstance(block, B.Dense):
        return ir.Dense(name, weight=weight, neuron=neuron, bn=bn, meta=meta)
    if isinstance(block, B.Conv):
        stride = block.stride
        if block.pool > 1:
            # conv + sum-pool of the current is one conv of kernel k + pool - 1, stride pool (exact).
            weight = B.conv_pool_weight(weight, block.pool)
            stride = block.pool
        return ir.Conv(
            name,
            weight=weight,
            stride=stride,
            padding=block.padding,
            dilation=block.dilation,
            groups=block.groups,
            neuron=neuron,
            bn=bn,
            meta=meta,
        )
    raise SnncError(f"{name}: cannot trace block type {type(block).__name__}")


def _pool(name: str, block: B.Pool) -> ir.Pool:
    k, s = block.kernel_size, block.stride
    neuron = _lif(block.neuron, None)
    return ir.Pool(name, kernel=(k, k), stride=(s, s), weight=float(block.weight), neuron=neuron)


def _residual(name: str, block: B.Residual, prev: str, add) -> str:
    """A Residual fed by ``prev``: its main-branch nodes, the synapse-only shortcut and the Add
    (named ``name``) whose neurons sum the two; returns the Add's name."""
    add_mask = _np(block.channel_mask)
    h = prev
    for j, sub in enumerate(block.main):
        sub_name = f"{name}.main.{j}"
        if not isinstance(sub, B.SpikingBlock):
            raise SnncError(f"{sub_name}: residual main blocks must be Conv or Dense")
        last = j == len(block.main) - 1
        h = add(_synaptic(sub_name, sub, add_mask if last else None), h)
    short = add(_synaptic(f"{name}.shortcut", block.shortcut, add_mask), prev)
    bias = _np(block.bias) * add_mask
    node = ir.Add(
        name,
        neuron=_lif(block.neuron, bias),
        meta={"channel_mask": add_mask.astype(np.int8), "module": "Residual"},
    )
    return add(node, h, short)


def trace(model: SpikingNet) -> ir.Graph:
    """Turn a zoo model into a float :class:`~snnc.ir.Graph` (verified).

    The graph reproduces the model in eval mode (batch-norm with running statistics): simulated with
    ``snnc.sim.simulate`` it gives the model's output spikes ``(N, classes, T)``.
    """
    if not isinstance(model, SpikingNet):
        raise SnncError(f"trace needs a SpikingNet from the model zoo, got {type(model).__name__}")
    nodes: list[ir.Node] = [ir.Input("input", shape=tuple(model.input_shape))]
    edges: list[tuple[str, str]] = []
    prev = "input"

    def add(node: ir.Node, *srcs: str) -> str:
        nodes.append(node)
        edges.extend((s, node.name) for s in srcs)
        return node.name

    for i, block in enumerate(model.blocks):
        name = f"blocks.{i}"
        if isinstance(block, B.Flatten):
            prev = add(ir.Flatten(name), prev)
        elif isinstance(block, B.Pool):
            prev = add(_pool(name, block), prev)
        elif isinstance(block, B.SpikingBlock):
            if block.neuron is None:
                raise SnncError(f"{name}: a synapse-only block outside a residual cannot be traced")
            prev = add(_synaptic(name, block), prev)
        elif isinstance(block, B.Residual):
            prev = _residual(name, block, prev, add)
        elif isinstance(block, nn.Module):
            raise SnncError(f"{name}: cannot trace block type {type(block).__name__}")
    add(ir.Output("output"), prev)
    graph = ir.Graph(
        {n.name: n for n in nodes},
        tuple(edges),
        {"precision": "float", "arch": model.arch, "source": "trace"},
    )
    return graph.verify()
