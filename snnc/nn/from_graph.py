"""An IR graph (a lava-dl netx network, a NIR graph, an snnc build) as a trainable :class:`SpikingNet`.

:func:`graph_to_model` turns a :class:`~snnc.ir.Graph` of ``Input``, ``Dense``, ``Conv``, ``Pool``,
``Flatten``, ``Add`` and ``Output`` nodes (what ``snnc.targets.loihi2.netx.read_netx`` and
``snnc.targets.nir.read_nir`` produce) into a network of ``snnc.nn`` blocks whose architecture is
the zoo's :data:`~snnc.nn.zoo.LAYERS` entry: the model file records the layer list, so every later
command rebuilds it without the source file. ``snnc prune NET.net|NET.nir`` fine-tunes and prunes
it; ``snnc compile`` takes the result back to any target.

Units. Each layer's weights, bias and threshold are divided by one power of two ``2**k`` (``k`` the
rounded ``log2`` of its threshold, so thresholds come out in [0.7, 1.4]: the range the surrogate
gradient and the learning rate are tuned for). A layer's spikes do not change under a common
positive scaling of its weights, bias and threshold (the dynamics are linear in ``u`` and ``v``),
and a power of two is exact in floating point, so the scaling changes no value the model computes
beyond its units. A fixed-point graph's weights enter as their effective integers ``weight *
2**weight_exp``; its thresholds and biases as their mantissas (Lava scales all of them by ``<< 6``
alike, docs/loihi2.md §2.1).

Exactness (measured in ``tests/nn/test_from_graph.py``):

- against the **float** interpretation of the same graph (``snnc.sim.simulate`` of a float graph;
  a fixed graph relabelled ``precision="float"``): the same equations in the same order, so the
  model in float64 (``model.double()``) gives **identical spikes** (the sums of integer weights are
  exact; float weights may differ in the last bit by summation order). In float32 the weights and
  states round to float32.
- against the **fixed-point** simulation of a netx file (what Lava computes): not exact. Lava rounds
  ``u`` and ``v`` toward zero after each decay (at 1/64 of a weight unit), wraps ``u`` at 24 bits,
  saturates ``v`` and floors a dense layer's sum when its ``weight_exp`` is negative; the float
  model does none of these. The difference is below 1/64 of a weight unit per step, so spikes
  differ only where ``v`` passes within that of the threshold: on lava-dl's Oxford network 99.98%
  of the output spikes agree (see the test).

Not representable (a one-line :class:`~snnc.errors.SnncError`): an input layer with a neuron (no
block computes it), a pool with a bias or a non-square window, an ``Add`` that is not a residual
block (a main branch of Conv/Dense layers ending in a synapse-only layer, plus a single
synapse-only shortcut), a zero threshold, and an output that is not flat ``(F,)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from snnc import ir
from snnc.errors import SnncError
from snnc.nn import blocks as B
from snnc.nn.zoo import LAYERS, SpikingNet, build

_BN_EPS = 1e-5  # VoltageBiasBatchNorm's eps: the only one a rebuilt model has


def _check_neuron(neuron, name: str) -> None:
    """Only CUBA-LIF populations have a trainable block (not, e.g., lava-dl's sigma-delta ones)."""
    if neuron is not None and not isinstance(neuron, ir.CubaLIF):
        kind = getattr(neuron, "kind", type(neuron).__name__)
        raise SnncError(
            f"{name}: {kind!r} neurons have no trainable snnc block; snnc trains CUBA-LIF networks only"
        )


def _scale(threshold: float, name: str) -> float:
    """The power of two a layer's weights, bias and threshold are divided by."""
    if not threshold > 0 or not math.isfinite(threshold):
        raise SnncError(
            f"{name}: threshold {threshold} cannot be trained (the surrogate gradient divides by it)"
        )
    return 2.0 ** round(math.log2(threshold))


def _neuron_spec(neuron: ir.CubaLIF, s: float) -> dict:
    return {
        "threshold": float(neuron.threshold) / s,
        "current_decay": int(neuron.current_decay),
        "voltage_decay": int(neuron.voltage_decay),
    }


def _effective(node: ir.Dense | ir.Conv) -> np.ndarray:
    return np.asarray(node.weight, dtype=np.float64) * 2.0 ** int(node.weight_exp)


class _Layer:
    """One block's spec (its entry in the ``layers`` config) and how to fill its tensors."""

    def __init__(self, spec: dict, fill) -> None:
        self.spec, self.fill = spec, fill


def _synapse(node: ir.Dense | ir.Conv, s: float) -> _Layer:
    """A Dense or Conv node (its neuron's scale ``s``; a synapse-only node takes its Add's)."""
    neuron = node.neuron
    _check_neuron(neuron, node.name)
    w = _effective(node)
    bias = None if neuron is None or neuron.bias is None else np.asarray(neuron.bias, np.float64)
    bn = node.bn
    if bn is not None and abs(bn.eps - _BN_EPS) > 1e-12:
        raise SnncError(f"{node.name}: batch-norm eps {bn.eps} differs from snnc's {_BN_EPS}; fold it first")
    spec: dict = {"bias": bias is not None, "bn": bn is not None}
    if isinstance(node, ir.Dense):
        spec.update(kind="dense", **{"in": int(w.shape[1]), "out": int(w.shape[0])})
    else:
        spec.update(
            kind="conv",
            **{"in": int(w.shape[1] * node.groups), "out": int(w.shape[0])},
            kernel=[int(w.shape[2]), int(w.shape[3])],
            stride=list(node.stride),
            padding=list(node.padding),
            dilation=list(node.dilation),
            groups=int(node.groups),
        )
    spec["neuron"] = None if neuron is None else _neuron_spec(neuron, s)

    def fill(block: B.SpikingBlock) -> None:
        # with batch-norm the current is scaled by gamma / s (the weights stay); else the weights
        block.weight.copy_(torch.from_numpy(w if bn is not None else w / s))
        if bias is not None:
            block.bias.copy_(torch.from_numpy(bias / s))
        if bn is not None:
            block.bn.weight.copy_(torch.from_numpy(bn.weight / s))
            block.bn.bias.copy_(torch.from_numpy(bn.bias / s))
            block.bn.running_mean.copy_(torch.from_numpy(bn.running_mean))
            block.bn.running_var.copy_(torch.from_numpy(bn.running_var))

    return _Layer(spec, fill)


def _pool(node: ir.Pool) -> _Layer:
    _check_neuron(node.neuron, node.name)
    (ky, kx), (sy, sx) = node.kernel, node.stride
    if ky != kx or sy != sx:
        raise SnncError(
            f"{node.name}: pool window {node.kernel} / stride {node.stride} is not square; "
            "snnc's Pool block needs square ones"
        )
    if node.neuron.bias is not None and np.any(np.asarray(node.neuron.bias) != 0):
        raise SnncError(f"{node.name}: a pool neuron with a bias has no snnc block; remove the bias")
    s = _scale(node.neuron.threshold, node.name)
    spec = {
        "kind": "pool",
        "kernel": int(ky),
        "stride": int(sy),
        "weight": float(node.weight) / s,
        "neuron": _neuron_spec(node.neuron, s),
    }
    return _Layer(spec, lambda block: None)


def _residual(graph: ir.Graph, start: str) -> tuple[_Layer, str]:
    """The residual block that leaves ``start`` on two branches and meets at an Add; returns it
    and the Add's name."""

    def branch(first: str) -> list[str]:
        path = [first]
        while not isinstance(graph.nodes[path[-1]], ir.Add):
            succ = graph.successors(path[-1])
            if len(succ) != 1:
                raise SnncError(f"{path[-1]}: branches inside a residual branch have no snnc block")
            path.append(succ[0])
        return path

    succ = graph.successors(start)
    paths = [branch(s) for s in succ]
    adds = {p[-1] for p in paths}
    if len(succ) != 2 or len(adds) != 1:
        raise SnncError(
            f"{start}: fans out to {len(succ)} branches; only residual blocks (two branches meeting at "
            "one Add) have an snnc block"
        )
    add = graph.nodes[adds.pop()]
    if len(graph.predecessors(add.name)) != 2:
        raise SnncError(f"{add.name}: an Add of {len(graph.predecessors(add.name))} inputs has no snnc block")
    paths.sort(key=len, reverse=True)  # the longer branch is the main one; a 1-layer one, the shortcut
    main, short = paths[0][:-1], paths[1][:-1]
    if len(short) != 1:
        raise SnncError(f"{add.name}: the residual shortcut must be a single synapse-only layer")
    _check_neuron(add.neuron, add.name)
    s = _scale(add.neuron.threshold, add.name)
    layers = []
    for name in [*main, *short]:
        node = graph.nodes[name]
        if not isinstance(node, ir.Dense | ir.Conv):
            raise SnncError(f"{name}: a {node.kind} inside a residual branch has no snnc block")
        own = s if node.neuron is None else _scale(node.neuron.threshold, name)
        layers.append(_synapse(node, own))
    spec = {
        "kind": "residual",
        "main": [lay.spec for lay in layers[:-1]],
        "shortcut": layers[-1].spec,
        "neuron": _neuron_spec(add.neuron, s),
    }
    add_bias = None if add.neuron.bias is None else np.asarray(add.neuron.bias, np.float64)

    def fill(block: B.Residual) -> None:
        for sub, lay in zip([*block.main, block.shortcut], layers, strict=True):
            lay.fill(sub)
        block.bias.copy_(
            torch.from_numpy(add_bias / s) if add_bias is not None else torch.zeros_like(block.bias)
        )

    return _Layer(spec, fill), add.name


def graph_layers(graph: ir.Graph) -> list[_Layer]:
    """The blocks of ``graph``, input to output (see the module docstring for what is refused)."""
    graph.verify()
    if graph.input.neuron is not None:
        raise SnncError(
            "the network's input layer has a neuron, which no snnc block computes; "
            "train it without the input neuron"
        )
    out: list[_Layer] = []
    cur = graph.input.name
    while True:
        succ = graph.successors(cur)
        if len(succ) > 1:
            layer, cur = _residual(graph, cur)
            out.append(layer)
            continue
        node = graph.nodes[succ[0]]
        if isinstance(node, ir.Output):
            break
        _check_neuron(getattr(node, "neuron", None), node.name)
        if isinstance(node, ir.Flatten):
            out.append(_Layer({"kind": "flatten"}, lambda block: None))
        elif isinstance(node, ir.Pool):
            out.append(_pool(node))
        elif isinstance(node, ir.Dense | ir.Conv):
            if node.neuron is None:
                raise SnncError(f"{node.name}: a synapse-only layer outside a residual block")
            out.append(_synapse(node, _scale(node.neuron.threshold, node.name)))
        else:
            raise SnncError(f"{node.name}: a {node.kind} node here has no snnc block")
        cur = node.name
    return out


def graph_to_model(graph: ir.Graph) -> SpikingNet:
    """A trainable :class:`SpikingNet` (architecture :data:`~snnc.nn.zoo.LAYERS`) computing what
    ``graph`` computes (exactness: the module docstring), in eval mode, float32."""
    layers = graph_layers(graph)
    out_shape = graph.shapes()[graph.output.name]
    if len(out_shape) != 1:
        raise SnncError(
            f"the network's output is {out_shape}, not flat (F,); snnc trains classifiers read out by "
            "spike counts per output neuron"
        )
    config = {
        "input_shape": [int(v) for v in graph.input.shape],
        "num_classes": int(out_shape[0]),
        "layers": [lay.spec for lay in layers],
    }
    model = build(LAYERS, config)
    with torch.no_grad():
        for block, lay in zip(model.blocks, layers, strict=True):
            lay.fill(block)
    return model.eval()
