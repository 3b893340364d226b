"""The intermediate representation: a graph of frozen node dataclasses holding numpy arrays.

Semantics (the same in float and in fixed point): every synaptic node (Conv, Dense, Pool) adds one step
of latency (docs/loihi2.md §2.5); a node's ``neuron`` is a CUBA-LIF population (``snnc.nn.neuron``),
or in a fixed-point graph read from lava-dl a sigma-delta population (:class:`SigmaDelta`, graded
spikes: integer payloads that the next synapse multiplies by its weights, §2.7); a synaptic node
with ``neuron=None`` is a synapse only and must feed an ``Add``, whose neuron sums every
incoming current (Lava sums all OutPorts connected to one InPort, §2.5). ``Flatten`` is (C, H, W) ->
C*H*W in PyTorch order and adds no latency. Shapes are PyTorch order: ``(C, H, W)`` or ``(F,)``.

Precision: ``graph.meta["precision"]`` is ``"float"`` (trained values) or ``"fixed"`` (after ``quantize``:
weights are integer mantissas with effective value ``weight * 2**weight_exp``; thresholds, biases are
integer mantissas: ``vth`` and ``bias`` of Lava's LIF, both used ``<< 6``). Nodes are immutable: passes edit
them with :func:`dataclasses.replace`; analysis results live in ``node.meta`` under named keys
(``"shape"``, ``"spike_rate"``, ``"cores"``, ...).

Each node kind owns its behaviour: :meth:`Node.out_shape` (shape inference, used by
:meth:`Graph.shapes`) and :meth:`Node.to_dict` / :meth:`Node.from_dict` (its entry in
``graph.safetensors``, :mod:`snnc.ir.serialize`). Backends dispatch on ``node.kind`` through
:class:`snnc.ir.NodeVisitor`. A new kind: a dataclass here with those methods, an entry in
:data:`NODE_KINDS`, and a ``visit_<kind>`` in each backend that should run it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snnc.errors import SnncError
from snnc.ir.fixed import DECAY_UNITY


class GraphError(SnncError):
    """An ill-formed graph (shape mismatch, dangling edge, ...)."""


def _arr(x, dtype=None) -> np.ndarray:
    a = np.array(x, dtype=dtype, copy=True)
    a.setflags(write=False)
    return a


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    t = tuple(int(i) for i in v)
    if len(t) != 2:
        raise GraphError(f"expected an int or a pair (y, x), got {v!r}")
    return t


def jsonable(obj: Any) -> Any:
    """JSON-able copy of ``obj``; values JSON cannot hold are dropped (analysis caches in ``meta``)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            try:
                out[str(k)] = jsonable(v)
            except TypeError:
                continue
        return out
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(type(obj).__name__)


#: The arrays of a serialized graph, by name (``"<node>.<field>"``): safetensors' tensors.
Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class CubaLIF:
    """CUBA-LIF population parameters (NIR's name). ``bias``: per output channel ``(C,)`` or ``None``.

    Float graphs: ``threshold`` and ``bias`` in weight units. Fixed graphs: integer mantissas
    (Lava ``vth``, ``bias_mant`` with ``bias_exp=6``). Decays are 12-bit integers in both.
    """

    threshold: float
    current_decay: int
    voltage_decay: int
    bias: np.ndarray | None = None

    kind = "cuba"
    graded = False

    def __post_init__(self) -> None:
        if self.bias is not None:
            object.__setattr__(self, "bias", _arr(self.bias, np.float64))
        for name in ("current_decay", "voltage_decay"):
            v = getattr(self, name)
            if int(v) != v or not 0 <= v <= DECAY_UNITY:
                raise GraphError(f"{name} must be an integer in [0, {DECAY_UNITY}], got {v}")
            object.__setattr__(self, name, int(v))

    def to_dict(self, prefix: str, tensors: Tensors) -> dict:
        """The JSON entry of this neuron; ``bias`` goes to ``tensors["<prefix>.bias"]``."""
        if self.bias is not None:
            tensors[f"{prefix}.bias"] = np.ascontiguousarray(self.bias, dtype=np.float64)
        return {
            "threshold": float(self.threshold),
            "current_decay": self.current_decay,
            "voltage_decay": self.voltage_decay,
            "bias": self.bias is not None,
        }

    @classmethod
    def from_dict(cls, d: dict, prefix: str, tensors: Tensors) -> CubaLIF:
        """Inverse of :meth:`to_dict`; an integral threshold comes back as an ``int`` (a mantissa)."""
        bias = tensors[f"{prefix}.bias"] if d.get("bias") else None
        thr = d["threshold"]
        return cls(
            threshold=int(thr) if float(thr).is_integer() else float(thr),
            current_decay=d["current_decay"],
            voltage_decay=d["voltage_decay"],
            bias=bias,
        )


#: The three roles of Lava's sigma-delta neurons (``lava.proc.sdn``): ``"delta"`` (``Delta``, netx's
#: SDNN input layer), ``"sigma_delta"`` (``SigmaDelta``, every other SDNN layer), ``"sigma"``
#: (``Sigma``, a layer whose neuron group has ``sigma_output``).
SDNN_MODES = ("delta", "sigma_delta", "sigma")
#: ``SigmaDelta``'s activations (Lava's ``ActivationMode``: ``UNIT`` and ``RELU``).
SDNN_ACTIVATIONS = ("relu", "unit")


@dataclass(frozen=True)
class SigmaDelta:
    """A population of Lava's fixed-point sigma-delta neurons (lava-dl's SDNN, docs/loihi2.md §2.4,
    §2.7), fixed-point graphs only. Its output is *graded*: each step every neuron sends an integer
    payload (0 is no message), and the synapses after it multiply the payload by their weights.

    ``threshold``: netx's ``vThMant`` (Lava's ``vth`` is ``threshold << (spike_exp + state_exp)``);
    ``bias``: per output channel ``(C,)`` mantissas (``<< (spike_exp + state_exp)``) or ``None``;
    ``mode``: one of :data:`SDNN_MODES`; ``activation``: one of :data:`SDNN_ACTIVATIONS`
    (``sigma_delta`` only); ``cum_error``: Lava's accumulated-error spike condition; ``spike_exp``,
    ``state_exp``: the payload's and the state's binary points (netx: 6 and 6).
    """

    threshold: int = 0
    bias: np.ndarray | None = None
    mode: str = "sigma_delta"
    activation: str = "relu"
    spike_exp: int = 6
    state_exp: int = 6
    cum_error: bool = False

    kind = "sdnn"
    graded = True

    def __post_init__(self) -> None:
        if self.bias is not None:
            object.__setattr__(self, "bias", _arr(self.bias, np.float64))
        if self.mode not in SDNN_MODES:
            raise GraphError(f"sigma-delta mode must be one of {', '.join(SDNN_MODES)}, got {self.mode!r}")
        if self.activation not in SDNN_ACTIVATIONS:
            choices = ", ".join(SDNN_ACTIVATIONS)
            raise GraphError(f"sigma-delta activation must be one of {choices}, got {self.activation!r}")
        for name in ("threshold", "spike_exp", "state_exp"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v:
                raise GraphError(f"sigma-delta {name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.threshold < 0:
            raise GraphError(f"sigma-delta threshold must be >= 0, got {self.threshold}")
        for name in ("spike_exp", "state_exp"):
            if not 0 <= getattr(self, name) <= 16:
                raise GraphError(f"sigma-delta {name} must be in [0, 16], got {getattr(self, name)}")
        object.__setattr__(self, "cum_error", bool(self.cum_error))
        if self.bias is not None and self.mode != "sigma_delta":
            raise GraphError(f"a sigma-delta neuron in mode {self.mode!r} has no bias")

    def to_dict(self, prefix: str, tensors: Tensors) -> dict:
        """The JSON entry (``"type": "sdnn"``); ``bias`` goes to ``tensors["<prefix>.bias"]``."""
        if self.bias is not None:
            tensors[f"{prefix}.bias"] = np.ascontiguousarray(self.bias, dtype=np.float64)
        return {
            "type": self.kind,
            "threshold": self.threshold,
            "mode": self.mode,
            "activation": self.activation,
            "spike_exp": self.spike_exp,
            "state_exp": self.state_exp,
            "cum_error": self.cum_error,
            "bias": self.bias is not None,
        }

    @classmethod
    def from_dict(cls, d: dict, prefix: str, tensors: Tensors) -> SigmaDelta:
        return cls(
            threshold=d["threshold"],
            bias=tensors[f"{prefix}.bias"] if d.get("bias") else None,
            mode=d["mode"],
            activation=d.get("activation", "relu"),
            spike_exp=d.get("spike_exp", 6),
            state_exp=d.get("state_exp", 6),
            cum_error=bool(d.get("cum_error", False)),
        )


#: A node's neuron population: CUBA-LIF (binary spikes) or sigma-delta (graded spikes).
Neuron = CubaLIF | SigmaDelta


def is_graded(neuron) -> bool:
    """Does a population of ``neuron`` send graded spikes (integer payloads) instead of 0/1?"""
    return bool(getattr(neuron, "graded", False))


@dataclass(frozen=True)
class BatchNorm:
    """Batch-norm whose shift goes into the voltage bias (``snnc.nn.blocks.VoltageBiasBatchNorm``)."""

    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in self.ARRAYS:
            object.__setattr__(self, name, _arr(getattr(self, name), np.float64))

    ARRAYS = ("weight", "bias", "running_mean", "running_var")

    def to_tensors(self, prefix: str, tensors: Tensors) -> float:
        """Store the four arrays as ``tensors["<prefix>.<array>"]``; returns ``eps`` (the JSON part)."""
        for f in self.ARRAYS:
            tensors[f"{prefix}.{f}"] = np.ascontiguousarray(getattr(self, f))
        return float(self.eps)

    @classmethod
    def from_tensors(cls, prefix: str, tensors: Tensors, eps: float) -> BatchNorm:
        return cls(*(tensors[f"{prefix}.{f}"] for f in cls.ARRAYS), eps=float(eps))


@dataclass(frozen=True)
class Node:
    """A node of the graph. Each kind (a subclass) owns its behaviour: shape inference
    (:meth:`out_shape`) and its entry in ``graph.safetensors`` (:meth:`to_dict`,
    :meth:`from_dict`); backends dispatch on :attr:`kind` through :class:`snnc.ir.NodeVisitor`.
    """

    name: str
    meta: dict = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    kind = "node"
    #: Input edges: 0 (``Input``), 1, or ``None`` for one or more of the same shape (``Add``).
    n_inputs = 1

    @property
    def is_synapse(self) -> bool:
        return False

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        """The output shape for the input shape ``in_shape`` (node ``src``'s output, named in
        errors). Raises :class:`GraphError` when the input does not fit."""
        raise GraphError(f"{self.name}: unknown node kind {type(self).__name__}")

    # -- graph.safetensors ---------------------------------------------------------------------
    def to_dict(self, tensors: Tensors) -> dict:
        """This node's JSON entry in ``graph.safetensors``: ``name``, ``kind``, the JSON-able part
        of ``meta``, then the kind's fields (:meth:`fields_to_dict`). Arrays go into ``tensors`` as
        ``"<name>.<field>"``."""
        d = {"name": self.name, "kind": self.kind, "meta": jsonable(self.meta)}
        d.update(self.fields_to_dict(tensors))
        return d

    @classmethod
    def from_dict(cls, d: dict, tensors: Tensors) -> Node:
        """Inverse of :meth:`to_dict` (call it on the class named by ``d["kind"]``). A missing or
        malformed field raises ``KeyError``, ``TypeError`` or ``ValueError``; the node's own checks
        raise :class:`GraphError`."""
        meta = dict(d.get("meta") or {})
        return cls(d["name"], meta=meta, **cls.fields_from_dict(d, tensors))

    def fields_to_dict(self, tensors: Tensors) -> dict:
        """The kind's own fields as JSON (arrays into ``tensors``); none for the base."""
        return {}

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        """Constructor keywords of the kind's own fields, read from ``d`` and ``tensors``."""
        return {}


@dataclass(frozen=True)
class Input(Node):
    """The network input. With a ``neuron`` (a netx input layer with a neuron, docs/loihi2.md §1.7)
    each input value enters that population's current directly, weight 1 and no synapse delay
    (``u += x << 6``), and the node's value is the population's spikes."""

    shape: tuple[int, ...] = ()
    neuron: Neuron | None = None
    kind = "input"
    n_inputs = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def out_shape(self, in_shape: tuple[int, ...] = (), src: str = "") -> tuple[int, ...]:
        return self.shape

    def fields_to_dict(self, tensors: Tensors) -> dict:
        return {"shape": list(self.shape), **_neuron_to_dict(self, tensors)}

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        return {"shape": tuple(int(s) for s in d["shape"]), **_neuron_from_dict(d, tensors)}


@dataclass(frozen=True)
class Output(Node):
    kind = "output"

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        return in_shape


@dataclass(frozen=True)
class Flatten(Node):
    kind = "flatten"

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        return (math.prod(in_shape),)  # Python ints: np.prod wraps a crafted shape around int64


@dataclass(frozen=True)
class Conv(Node):
    """``weight`` ``(C_out, C_in/groups, kH, kW)``, PyTorch correlation on (C, H, W)."""

    weight: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    neuron: Neuron | None = None
    bn: BatchNorm | None = None
    weight_exp: int = 0
    kind = "conv"

    def __post_init__(self) -> None:
        w = _arr(self.weight, np.float64)
        if w.ndim != 4:
            raise GraphError(f"{self.name}: conv weight must be 4-D (C_out, C_in/g, kH, kW), got {w.shape}")
        object.__setattr__(self, "weight", w)
        for k in ("stride", "padding", "dilation"):
            object.__setattr__(self, k, _pair(getattr(self, k)))
        object.__setattr__(self, "groups", int(self.groups))
        _check_geometry(self, stride=self.stride, dilation=self.dilation, groups=(self.groups,))
        if min(self.padding) < 0:
            raise GraphError(f"{self.name}: padding {self.padding} must be >= 0")
        if w.shape[0] % self.groups:
            raise GraphError(f"{self.name}: {w.shape[0]} out channels do not split in {self.groups} groups")

    @property
    def is_synapse(self) -> bool:
        return True

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        c, h, w = _image(self, in_shape, src)
        cin = self.weight.shape[1] * self.groups
        if c != cin:
            raise GraphError(f"{src}.output {in_shape} -> {self.name}.input: expected {cin} channels")
        ky, kx = self.weight.shape[2:]
        out = (
            self.weight.shape[0],
            _conv_out(h, ky, self.stride[0], self.padding[0], self.dilation[0]),
            _conv_out(w, kx, self.stride[1], self.padding[1], self.dilation[1]),
        )
        return _nonempty(self, out, in_shape)

    def fields_to_dict(self, tensors: Tensors) -> dict:
        return {
            **_synapse_to_dict(self, tensors),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            **_neuron_to_dict(self, tensors),
        }

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        return {
            **_synapse_from_dict(d, tensors),
            "stride": tuple(d["stride"]),
            "padding": tuple(d["padding"]),
            "dilation": tuple(d["dilation"]),
            "groups": int(d["groups"]),
            **_neuron_from_dict(d, tensors),
        }


@dataclass(frozen=True)
class Dense(Node):
    """``weight`` ``(out, in)``."""

    weight: np.ndarray = None
    neuron: Neuron | None = None
    bn: BatchNorm | None = None
    weight_exp: int = 0
    kind = "dense"

    def __post_init__(self) -> None:
        w = _arr(self.weight, np.float64)
        if w.ndim != 2:
            raise GraphError(f"{self.name}: dense weight must be 2-D (out, in), got {w.shape}")
        object.__setattr__(self, "weight", w)

    @property
    def is_synapse(self) -> bool:
        return True

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        n_in = self.weight.shape[1]
        if in_shape != (n_in,):
            raise GraphError(f"{src}.output {in_shape} -> {self.name}.input {n_in}: expected {(n_in,)}")
        return (self.weight.shape[0],)

    def fields_to_dict(self, tensors: Tensors) -> dict:
        return {**_synapse_to_dict(self, tensors), **_neuron_to_dict(self, tensors)}

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        return {**_synapse_from_dict(d, tensors), **_neuron_from_dict(d, tensors)}


@dataclass(frozen=True)
class Pool(Node):
    """Per-channel sum-pool: every tap has weight ``weight``; no padding. Emitted as a grouped conv."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    weight: float = 1.0
    neuron: Neuron | None = None
    kind = "pool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))
        _check_geometry(self, kernel=self.kernel, stride=self.stride)

    @property
    def is_synapse(self) -> bool:
        return True

    def conv_weight(self, channels: int) -> np.ndarray:
        """The grouped-conv weight this pool is (and is emitted as): ``(channels, 1, kH, kW)``, every
        tap ``weight``."""
        return np.full((channels, 1, *self.kernel), float(self.weight))

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        c, h, w = _image(self, in_shape, src)
        (ky, kx), (sy, sx) = self.kernel, self.stride
        return _nonempty(self, (c, _conv_out(h, ky, sy, 0, 1), _conv_out(w, kx, sx, 0, 1)), in_shape)

    def fields_to_dict(self, tensors: Tensors) -> dict:
        return {
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "weight": float(self.weight),
            **_neuron_to_dict(self, tensors),
        }

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        return {
            "kernel": tuple(d["kernel"]),
            "stride": tuple(d["stride"]),
            "weight": float(d["weight"]),
            **_neuron_from_dict(d, tensors),
        }


@dataclass(frozen=True)
class Add(Node):
    """Sums the currents of its (synapse-only) inputs into one neuron population."""

    neuron: Neuron | None = None
    kind = "add"
    n_inputs = None

    def out_shape(self, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
        return in_shape

    def fields_to_dict(self, tensors: Tensors) -> dict:
        return _neuron_to_dict(self, tensors)

    @classmethod
    def fields_from_dict(cls, d: dict, tensors: Tensors) -> dict:
        return _neuron_from_dict(d, tensors)


NODE_KINDS = {c.kind: c for c in (Input, Output, Flatten, Conv, Dense, Pool, Add)}


# -- what the node kinds share -------------------------------------------------------------------
def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check_geometry(node: Node, **pairs: tuple[int, ...]) -> None:
    """Strides, dilations, kernel sizes and groups are >= 1 (a stride of 0 would divide by zero)."""
    for what, v in pairs.items():
        if min(v) < 1:
            raise GraphError(f"{node.name}: {what} {v} must be >= 1")


def _image(node: Node, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
    if len(in_shape) != 3:
        raise GraphError(f"{src}.output {in_shape} -> {node.name}.input: expected (C, H, W)")
    return in_shape


def _nonempty(node: Node, out: tuple[int, ...], in_shape: tuple[int, ...]) -> tuple[int, ...]:
    if min(out) < 1:
        raise GraphError(f"{node.name}: output shape {out} is empty for input {in_shape}")
    return out


def _synapse_to_dict(node: Conv | Dense, tensors: Tensors) -> dict:
    """``weight`` (a tensor), ``weight_exp``, and the batch-norm's tensors and ``bn_eps`` if it has one."""
    tensors[f"{node.name}.weight"] = np.ascontiguousarray(node.weight, dtype=np.float64)
    d: dict = {"weight_exp": int(node.weight_exp)}
    if node.bn is not None:
        d["bn_eps"] = node.bn.to_tensors(f"{node.name}.bn", tensors)
    return d


def _synapse_from_dict(d: dict, tensors: Tensors) -> dict:
    name = d["name"]
    kw: dict = {"weight": tensors[f"{name}.weight"], "weight_exp": int(d.get("weight_exp", 0))}
    if "bn_eps" in d:
        kw["bn"] = BatchNorm.from_tensors(f"{name}.bn", tensors, d["bn_eps"])
    return kw


def _neuron_to_dict(node: Input | Conv | Dense | Pool | Add, tensors: Tensors) -> dict:
    n = node.neuron
    return {"neuron": None if n is None else n.to_dict(f"{node.name}.neuron", tensors)}


def _neuron_from_dict(d: dict, tensors: Tensors) -> dict:
    n = d.get("neuron")
    if n is None:
        return {}
    cls = SigmaDelta if n.get("type") == SigmaDelta.kind else CubaLIF  # no "type": CUBA-LIF (version 1)
    return {"neuron": cls.from_dict(n, f"{d['name']}.neuron", tensors)}


@dataclass(frozen=True)
class Graph:
    """``nodes`` in topological order (dict order), ``edges`` as ``(src, dst)`` name pairs."""

    nodes: dict[str, Node]
    edges: tuple[tuple[str, str], ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple((str(a), str(b)) for a, b in self.edges))

    @classmethod
    def from_list(cls, nodes: list[Node], meta: dict | None = None) -> Graph:
        """A sequential graph: each node feeds the next."""
        edges = [(a.name, b.name) for a, b in zip(nodes[:-1], nodes[1:], strict=False)]
        return cls({n.name: n for n in nodes}, tuple(edges), dict(meta or {}))

    # -- structure ---------------------------------------------------------------------------
    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def successors(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    @property
    def input(self) -> Input:
        ins = [n for n in self.nodes.values() if isinstance(n, Input)]
        if len(ins) != 1:
            raise GraphError(f"graph must have exactly one Input node, found {len(ins)}")
        return ins[0]

    @property
    def output(self) -> Output:
        outs = [n for n in self.nodes.values() if isinstance(n, Output)]
        if len(outs) != 1:
            raise GraphError(f"graph must have exactly one Output node, found {len(outs)}")
        return outs[0]

    def is_sequential(self) -> bool:
        """True when every node has at most one predecessor and one successor (netx can express it)."""
        return all(len(self.predecessors(n)) <= 1 and len(self.successors(n)) <= 1 for n in self.nodes)

    def replace(self, **nodes: Node) -> Graph:
        """A new graph with the named nodes swapped (same edges)."""
        new = dict(self.nodes)
        new.update(nodes)
        return Graph(new, self.edges, dict(self.meta))

    def with_meta(self, **meta: Any) -> Graph:
        return Graph(dict(self.nodes), self.edges, {**self.meta, **meta})

    @property
    def precision(self) -> str:
        return self.meta.get("precision", "float")

    # -- shapes and checks -------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape of every node (PyTorch order), each from its node's :meth:`Node.out_shape`.
        Raises :class:`GraphError` on a mismatch."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, node in self.nodes.items():
            preds = self.predecessors(name)
            if node.n_inputs == 0:
                if preds:
                    raise GraphError(f"{name}: {type(node).__name__} cannot have predecessors")
                shapes[name] = node.out_shape((), "")
                continue
            if not preds:
                raise GraphError(f"{name}: has no input edge")
            for p in preds:
                if p not in shapes:
                    raise GraphError(f"{name}: input {p} is not defined before it (order or name)")
            if node.n_inputs is None:  # any number of inputs, all of one shape
                ins = {p: shapes[p] for p in preds}
                if len(set(ins.values())) != 1:
                    desc = ", ".join(f"{p} {s}" for p, s in ins.items())
                    raise GraphError(f"{name}: {type(node).__name__} inputs have different shapes: {desc}")
            elif len(preds) != 1:
                raise GraphError(f"{name}: {node.kind} takes one input, has {len(preds)}")
            src = preds[0]
            shapes[name] = node.out_shape(shapes[src], src)
        return shapes

    def verify(self) -> Graph:
        """Check names, edges, shapes and synapse-only rules; returns self for chaining."""
        names = set(self.nodes)
        for key, node in self.nodes.items():
            if key != node.name:
                raise GraphError(f"node key {key!r} differs from its name {node.name!r}")
        for a, b in self.edges:
            if a not in names or b not in names:
                raise GraphError(f"edge {a} -> {b} names a node that does not exist")
        self.input, self.output  # noqa: B018 - exactly one each
        self.shapes()
        for name, node in self.nodes.items():
            if getattr(node, "is_synapse", False) and getattr(node, "neuron", 0) is None:
                succ = self.successors(name)
                if not succ or not all(isinstance(self.nodes[s], Add) for s in succ):
                    raise GraphError(f"{name}: a synapse without neuron must feed an Add node")
            if isinstance(node, Add):
                for p in self.predecessors(name):
                    pn = self.nodes[p]
                    if not (pn.is_synapse and getattr(pn, "neuron", 0) is None):
                        raise GraphError(f"{name}: Add input {p} must be a synapse without neuron")
                if node.neuron is None:
                    raise GraphError(f"{name}: Add needs a neuron")
        return self

    def summary(self) -> list[dict]:
        """One row per node: name, kind, output shape, parameter count, neuron."""
        shapes = self.shapes()
        rows = []
        for name, node in self.nodes.items():
            w = getattr(node, "weight", None)
            params = int(np.size(w)) if isinstance(w, np.ndarray) else 0
            rows.append({"name": name, "kind": node.kind, "shape": list(shapes[name]), "params": params})
        return rows


def out_shape(node: Node, in_shape: tuple[int, ...], src: str) -> tuple[int, ...]:
    """``node.out_shape(in_shape, src)``: the output shape of ``node`` fed ``in_shape`` by ``src``."""
    return node.out_shape(in_shape, src)


def replace(node: Node, **changes: Any) -> Node:
    """``dataclasses.replace`` that keeps ``meta`` (copied)."""
    meta = dict(node.meta)
    meta.update(changes.pop("meta", {}))
    return dataclasses.replace(node, meta=meta, **changes)
