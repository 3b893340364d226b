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

from snnc.errors import SnncError
from snnc.ir import Conv, CubaLIF, Pool
from snnc.ir.fixed import ACTIVATION_SHIFT


class ChunkResult(NamedTuple):
    """One chunk of samples through the simulator, in the meaning of :class:`snnc.sim.SimResult`'s
    fields: ``output`` ``(N, *out_shape, T)`` int8; per neuron layer ``spikes`` (total over the
    chunk), ``neurons`` and ``cores``; per synaptic layer ``synops`` (an ``Add`` owns its inputs');
    ``layers`` (recorded spikes ``(N, *shape, T)`` int8, empty unless recording)."""

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
    def of_conv(cls, node: Conv) -> ConvSpec:
        return cls(node.weight, node.stride, node.padding, node.dilation, node.groups, node.weight_exp)

    @classmethod
    def of_pool(cls, node: Pool, channels: int) -> ConvSpec:
        """``channels``: the pool's input (and output) channels, one group each."""
        return cls(node.conv_weight(channels), node.stride, (0, 0), (1, 1), channels, 0)


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
