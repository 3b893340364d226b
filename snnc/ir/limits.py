"""Checks of a graph read from a file someone else wrote (``graph.safetensors``, a netx HDF5): sizes
a CPU can hold, finite values, and for fixed-point graphs the integer ranges the simulator's kernels
compute in. :meth:`Graph.verify` checks structure; :func:`check_graph` checks that the numbers in
it are ones snnc can run, before anything is allocated for them.

The bounds are far above any network a Loihi 2 chip holds (128 neurocores of 8192 neurons, 8-bit
weights, 17-bit threshold and 13-bit bias mantissas, ``docs/loihi2.md``) and far below what would
overflow the kernels' int64 arithmetic or exhaust memory.
"""

from __future__ import annotations

import math

import numpy as np

from snnc.ir.graph import Conv, Dense, Graph, GraphError, Pool

MAX_LAYER_NEURONS = 1 << 22  # neurons (or inputs) of one node: 4 M (a Loihi 2 chip holds 1 M)
MAX_NEURONS = 1 << 24  # all nodes together
MAX_WEIGHTS = 1 << 24  # stored weights of all synaptic nodes together (a chip holds ~16 M)
MAX_WEIGHT_MANTISSA = 1 << 24  # |weight| of a fixed graph (Loihi 2: 8 bits)
MAX_STATE_MANTISSA = 1 << 31  # |threshold|, |bias| of a fixed graph (Loihi 2: 17 and 13 bits)
MAX_WEIGHT_EXP = 64


def check_graph(graph: Graph) -> Graph:
    """Raise :class:`GraphError` (one line, naming the node) unless every size and value of
    ``graph`` is in the bounds above; returns ``graph``. Verifies the structure first."""
    graph.verify()
    fixed = graph.meta.get("precision") == "fixed"
    total_neurons = total_weights = 0
    for name, shape in graph.shapes().items():  # Python ints: no wrap-around of a crafted shape
        size = math.prod(shape)
        if size > MAX_LAYER_NEURONS:
            raise GraphError(
                f"{name}: shape {tuple(shape)} has {size} neurons, more than {MAX_LAYER_NEURONS}"
            )
        total_neurons += size
    if total_neurons > MAX_NEURONS:
        raise GraphError(f"the graph has {total_neurons} neurons, more than {MAX_NEURONS}")
    shapes = graph.shapes()
    for name, node in graph.nodes.items():
        channels = shapes[name][0] if shapes[name] else 1
        w = getattr(node, "weight", None)
        if isinstance(node, Conv | Dense):
            total_weights += w.size
            _check_values(name, "weight", w, fixed, MAX_WEIGHT_MANTISSA)
            if not (isinstance(node.weight_exp, int | np.integer) and abs(node.weight_exp) <= MAX_WEIGHT_EXP):
                raise GraphError(
                    f"{name}: weight_exp {node.weight_exp!r} is not an integer in ±{MAX_WEIGHT_EXP}"
                )
            if node.bn is not None:
                for f in node.bn.ARRAYS:
                    _check_shape(name, f"bn.{f}", getattr(node.bn, f), channels)
                    _check_values(name, f"bn.{f}", getattr(node.bn, f), False, 0)
                if not math.isfinite(node.bn.eps):
                    raise GraphError(f"{name}: bn.eps {node.bn.eps} is not finite")
        elif isinstance(node, Pool):
            _check_values(name, "weight", np.asarray([w]), fixed, MAX_WEIGHT_MANTISSA)
        neuron = getattr(node, "neuron", None)
        if neuron is not None:
            _check_values(
                name, "threshold", np.asarray([neuron.threshold], np.float64), fixed, MAX_STATE_MANTISSA
            )
            if neuron.bias is not None:
                _check_shape(name, "bias", neuron.bias, channels)
                _check_values(name, "bias", neuron.bias, fixed, MAX_STATE_MANTISSA)
    if total_weights > MAX_WEIGHTS:
        raise GraphError(f"the graph stores {total_weights} weights, more than {MAX_WEIGHTS}")
    return graph


def _check_shape(name: str, what: str, a: np.ndarray, channels: int) -> None:
    """One value per output channel: ``(C,)``."""
    if np.shape(a) != (channels,):
        raise GraphError(f"{name}: {what} has shape {np.shape(a)}; expected one per channel ({channels},)")


def _check_values(name: str, what: str, a: np.ndarray, fixed: bool, bound: int) -> None:
    """Finite; for a fixed graph also integers of magnitude below ``bound``."""
    a = np.asarray(a)
    if not a.size:
        return
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise GraphError(f"{name}: {what} holds NaN or infinite values")
    if fixed and a.dtype.kind in "fiu":
        big = float(np.abs(a).max())
        if big >= bound:
            raise GraphError(
                f"{name}: {what} magnitude {big:g} is out of range (fixed point needs < {bound})"
            )
        if a.dtype.kind == "f" and not np.all(a == np.round(a)):
            raise GraphError(f"{name}: {what} of a fixed-point graph must be integer mantissas")
