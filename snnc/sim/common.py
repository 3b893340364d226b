"""What the numpy interpreter and the compiled kernels share: operand checks and caches, the
neurocore count, and the records that cross between them.

Both :mod:`snnc.sim.interpreter` and :mod:`snnc.sim.kernels` import this module; neither imports
the other's internals (the interpreter hands fixed-point chunks to :func:`snnc.sim.kernels.run`,
which returns a :class:`ChunkResult` as the interpreter's own chunks do).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from snnc.errors import SnncError, UsageError
from snnc.ir import Conv, CubaLIF, Graph, GraphError, Pool, is_graded
from snnc.ir.fixed import ACTIVATION_SHIFT


class ChunkResult(NamedTuple):
    """One chunk of samples through the simulator, in the meaning of :class:`snnc.sim.SimResult`'s
    fields: ``output`` ``(N, *out_shape, T)`` int8 (int32 for a graded output); per neuron layer
    ``spikes`` (total over the chunk), ``neurons`` and ``cores``; per synaptic layer ``synops`` (an
    ``Add`` owns its inputs'); ``layers`` (recorded spikes ``(N, *shape, T)`` int8, int32 for a graded
    layer, empty unless recording)."""

    output: np.ndarray
    spikes: dict[str, int]
    synops: dict[str, int]
    neurons: dict[str, int]
    cores: dict[str, int]
    layers: dict[str, np.ndarray]


class ConvSpec(NamedTuple):
    """A Conv, or a Pool as the grouped convolution it is emitted as (``docs/loihi2.md §1.6``).
    ``weight`` ``(C_out, C_in/groups, kH, kW)``; ``weight_exp`` is the Conv's (0 for a Pool)."""

    weight: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    weight_exp: int

    @classmethod
    def of_conv(cls, node: Conv, fixed: bool) -> ConvSpec:
        """In a fixed-point graph the exponent is folded into integer weights, as they reach Lava
        (whose Conv has no exponent of its own, docs/loihi2.md §2.3); a float Conv keeps it."""
        w, e = node.weight, int(node.weight_exp)
        if fixed and e:
            w = np.asarray(w, dtype=np.float64) * 2.0**e
            if not np.all(w == np.round(w)):
                raise GraphError(
                    f"{node.name}: conv weights are not integers after weight_exp {e}; Lava's Conv "
                    "has no exponent, so a negative one must divide every weight"
                )
            w, e = w.astype(np.int64), 0
        return cls(w, node.stride, node.padding, node.dilation, node.groups, e)

    @classmethod
    def of_pool(cls, node: Pool, channels: int) -> ConvSpec:
        """``channels``: the pool's input (and output) channels, one group each."""
        return cls(node.conv_weight(channels), node.stride, (0, 0), (1, 1), channels, 0)


def check_spikes(x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` ``(N, *shape, T)`` of 0/1 spikes as a C-contiguous uint8 array, else a one-line
    :class:`UsageError`.

    bool arrays are normalised by value (numpy's bool storage can hold any byte, and a raw byte
    of 2 or 255 would index past the kernels' tables: any non-zero byte is a spike); integer
    arrays must hold only 0 and 1; float arrays only exactly 0.0 and 1.0. ``shape``: the network's
    input shape, or ``None`` to check only the values. N = 0 or T = 0 is refused.
    """
    x = np.asarray(x)
    if shape is not None:
        want = f"(N, {', '.join(map(str, shape))}, T)"
        if x.ndim != len(shape) + 2:
            raise UsageError(
                f"input has rank {x.ndim} {tuple(x.shape)}; expected {want} spikes "
                "(input_shape in PyTorch order)"
            )
        if tuple(x.shape[1:-1]) != tuple(shape):
            raise UsageError(
                f"input shape {tuple(x.shape)} does not match the network input; expected {want}"
            )
    if x.ndim < 2:
        raise UsageError(f"input has rank {x.ndim}; expected (N, *input_shape, T) spikes")
    if x.shape[0] == 0 or x.shape[-1] == 0:
        raise UsageError(f"input shape {tuple(x.shape)} holds no samples or no time steps; give N, T >= 1")
    if x.dtype == np.bool_:
        u = np.ascontiguousarray(x).view(np.uint8)
        return (u != 0).view(np.uint8) if u.max() > 1 else u  # a copy only when a byte is not 0/1
    if np.issubdtype(x.dtype, np.integer):
        if x.dtype.itemsize == 1:  # one pass, no copy: as uint8, a negative int8 reads as >= 128
            u = np.ascontiguousarray(x).view(np.uint8)
            if u.max() > 1:
                raise UsageError("input holds non-binary values (not 0 or 1); spikes must be 0 or 1")
            return u
        if x.min() < 0 or x.max() > 1:
            raise UsageError("input holds non-binary values (not 0 or 1); spikes must be 0 or 1")
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all((x == 0) | (x == 1)):
            kind = "non-integer" if np.any(x != np.round(x)) else "non-binary"
            raise UsageError(f"input holds {kind} values (not 0.0 or 1.0); spikes must be 0 or 1")
    else:
        raise UsageError(f"input dtype {x.dtype} is not numeric; give 0/1 integer spikes")
    return np.ascontiguousarray(x, dtype=np.uint8)


def has_graded(graph: Graph) -> bool:
    """Does any population of ``graph`` send graded spikes (sigma-delta neurons, docs/loihi2.md §2.7)?"""
    return any(is_graded(getattr(n, "neuron", None)) for n in graph.nodes.values())


def graded_output(graph: Graph) -> bool:
    """Does ``graph``'s output carry graded spikes (its last population is sigma-delta)? Then the
    simulator's and Lava's outputs are int32 payloads instead of int8 0/1 spikes."""
    name = graph.output.name
    while True:
        node = graph.nodes[name]
        if hasattr(node, "neuron") or not graph.predecessors(name):
            return is_graded(getattr(node, "neuron", None))
        name = graph.predecessors(name)[0]


def check_graded(x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` ``(N, *shape, T)`` of graded input (the ``a_in`` of a sigma-delta input layer, which
    Lava's source sends as int32) as a C-contiguous int32 array, else a one-line :class:`UsageError`:
    integers (any integer dtype, bool, or floats holding integers) in the int32 range."""
    x = np.asarray(x)
    if shape is not None:
        want = f"(N, {', '.join(map(str, shape))}, T)"
        if x.ndim != len(shape) + 2 or tuple(x.shape[1:-1]) != tuple(shape):
            raise UsageError(
                f"input shape {tuple(x.shape)} does not match the network input; expected {want} "
                "graded values (input_shape in PyTorch order)"
            )
    if x.ndim < 2 or x.shape[0] == 0 or x.shape[-1] == 0:
        raise UsageError(f"input shape {tuple(x.shape)} holds no samples or no time steps; give N, T >= 1")
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x.view(np.uint8) != 0, dtype=np.int32)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
            raise UsageError("input holds non-integer values; graded input must be integers (int32)")
    elif not np.issubdtype(x.dtype, np.integer):
        raise UsageError(f"input dtype {x.dtype} is not numeric; give integer graded input")
    if x.size and (x.min() < -(1 << 31) or x.max() > (1 << 31) - 1):
        raise UsageError("input holds values outside int32; graded input is sent as int32")
    return np.ascontiguousarray(x, dtype=np.int32)


def check_kernel_input(s_in: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The compiled kernels' preconditions on their input, checked (the kernels index memory
    with each spike value, so a byte above 1 or a wrong shape is an out-of-bounds access, not a
    wrong result): ``s_in`` uint8 ``(N, *shape, T)``, N, T >= 1, values 0/1. Returns it
    C-contiguous (a copy only when it was not). Cost: one pass over the bytes."""
    if not isinstance(s_in, np.ndarray) or s_in.dtype not in (np.uint8, np.bool_):
        raise SnncError(f"kernel input must be a uint8 array, got {getattr(s_in, 'dtype', type(s_in))}")
    if s_in.ndim != len(shape) + 2 or tuple(s_in.shape[1:-1]) != tuple(shape):
        raise SnncError(f"kernel input shape {s_in.shape} does not match the network input {tuple(shape)}")
    if s_in.shape[0] == 0 or s_in.shape[-1] == 0:
        raise SnncError(f"kernel input shape {s_in.shape} holds no samples or no time steps")
    s_in = np.ascontiguousarray(s_in).view(np.uint8)
    if s_in.max() > 1:
        raise SnncError("kernel input holds values other than 0 and 1; normalise spikes with check_spikes")
    return s_in


def check_integer(name: str, a) -> None:
    """Raise unless every value of ``a`` is an integer (a fixed-point graph's weights)."""
    a = np.asarray(a)
    if a.size and not np.all(a == np.round(a)):
        raise SnncError(f"{name}: a fixed-point graph needs integer weights; run quantize first")


def fixed_threshold(name: str, neuron: CubaLIF) -> int:
    """``vth`` as the LIF compares it: the integer threshold mantissa ``<< 6`` (docs/loihi2.md §2.1)."""
    thr = neuron.threshold
    if thr != int(thr):
        raise SnncError(f"{name}: fixed-point threshold {thr} is not an integer mantissa")
    return int(thr) << ACTIVATION_SHIFT


def node_cores(node) -> int:
    """The neurocores the compiler's mapping gave a node (``meta["cores"]``), 1 when unmapped."""
    c = node.meta.get("cores", 1)
    return int(c) if isinstance(c, int | np.integer) and c > 0 else 1


_PREPARED: dict[tuple, tuple] = {}  # (id(key), tag) -> (weakref to key, prepared operands)


def prepared(key, tag: str, make):
    """Per-object cache of derived operands (transposed/cast weights, fan-outs, checks, a graph's
    kernel plan): ``make()`` once per live ``key`` object and ``tag``; dropped with the object."""
    slot = (id(key), tag)
    hit = _PREPARED.get(slot)
    if hit is not None and hit[0]() is key:
        return hit[1]
    value = make()
    # Bind the dict itself: at interpreter exit the module global may already be None.
    _PREPARED[slot] = (weakref.ref(key, lambda _r, k=slot, d=_PREPARED: d.pop(k, None)), value)
    return value
