"""The intermediate representation: a graph of frozen node dataclasses holding numpy arrays.

Semantics (the same in float and in fixed point): every synaptic node (Conv, Dense, Pool) adds one step of
latency (LAVA_FACTS §2.5); a node's ``neuron`` is a CUBA-LIF population (``snnc.nn.neuron``); a synaptic node
with ``neuron=None`` is a synapse only and must feed an ``Add``, whose neuron sums every incoming current
(Lava sums all OutPorts connected to one InPort, §2.5). ``Flatten`` is (C, H, W) -> C*H*W in PyTorch order
and adds no latency. Shapes are PyTorch order: ``(C, H, W)`` or ``(F,)``.

Precision: ``graph.meta["precision"]`` is ``"float"`` (trained values) or ``"fixed"`` (after ``quantize``:
weights are integer mantissas with effective value ``weight * 2**weight_exp``; thresholds, biases are
integer mantissas: ``vth`` and ``bias`` of Lava's LIF, both used ``<< 6``). Nodes are immutable: passes edit
them with :func:`dataclasses.replace`; analysis results live in ``node.meta`` under named keys
(``"shape"``, ``"spike_rate"``, ``"cores"``, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snnc.errors import SnncError


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

    def __post_init__(self) -> None:
        if self.bias is not None:
            object.__setattr__(self, "bias", _arr(self.bias, np.float64))
        for name in ("current_decay", "voltage_decay"):
            v = getattr(self, name)
            if int(v) != v or not 0 <= v <= 4096:
                raise GraphError(f"{name} must be an integer in [0, 4096], got {v}")
            object.__setattr__(self, name, int(v))


@dataclass(frozen=True)
class BatchNorm:
    """Batch-norm whose shift goes into the voltage bias (``snnc.nn.blocks.VoltageBiasBatchNorm``)."""

    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            object.__setattr__(self, name, _arr(getattr(self, name), np.float64))


@dataclass(frozen=True)
class Node:
    name: str
    meta: dict = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    kind = "node"

    @property
    def is_synapse(self) -> bool:
        return False


@dataclass(frozen=True)
class Input(Node):
    shape: tuple[int, ...] = ()
    kind = "input"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))


@dataclass(frozen=True)
class Output(Node):
    kind = "output"


@dataclass(frozen=True)
class Flatten(Node):
    kind = "flatten"


@dataclass(frozen=True)
class Conv(Node):
    """``weight`` ``(C_out, C_in/groups, kH, kW)``, PyTorch correlation on (C, H, W)."""

    weight: np.ndarray = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    neuron: CubaLIF | None = None
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

    @property
    def is_synapse(self) -> bool:
        return True

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]


@dataclass(frozen=True)
class Dense(Node):
    """``weight`` ``(out, in)``."""

    weight: np.ndarray = None
    neuron: CubaLIF | None = None
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


@dataclass(frozen=True)
class Pool(Node):
    """Per-channel sum-pool: every tap has weight ``weight``; no padding. Emitted as a grouped conv."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    weight: float = 1.0
    neuron: CubaLIF | None = None
    kind = "pool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel))
        object.__setattr__(self, "stride", _pair(self.stride))

    @property
    def is_synapse(self) -> bool:
        return True

    def conv_weight(self, channels: int) -> np.ndarray:
        """The grouped-conv weight this pool is (and is emitted as): ``(channels, 1, kH, kW)``, every
        tap ``weight``."""
        return np.full((channels, 1, *self.kernel), float(self.weight))


@dataclass(frozen=True)
class Add(Node):
    """Sums the currents of its (synapse-only) inputs into one neuron population."""

    neuron: CubaLIF | None = None
    kind = "add"


NODE_KINDS = {c.kind: c for c in (Input, Output, Flatten, Conv, Dense, Pool, Add)}


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
        """Output shape of every node (PyTorch order). Raises :class:`GraphError` on a mismatch."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, node in self.nodes.items():
            preds = self.predecessors(name)
            if isinstance(node, Input):
                if preds:
                    raise GraphError(f"{name}: Input cannot have predecessors")
                shapes[name] = node.shape
                continue
            if not preds:
                raise GraphError(f"{name}: has no input edge")
            for p in preds:
                if p not in shapes:
                    raise GraphError(f"{name}: input {p} is not defined before it (order or name)")
            if isinstance(node, Add):
                ins = {p: shapes[p] for p in preds}
                if len(set(ins.values())) != 1:
                    desc = ", ".join(f"{p} {s}" for p, s in ins.items())
                    raise GraphError(f"{name}: Add inputs have different shapes: {desc}")
                shapes[name] = next(iter(ins.values()))
                continue
            if len(preds) != 1:
                raise GraphError(f"{name}: {node.kind} takes one input, has {len(preds)}")
            src = preds[0]
            s = shapes[src]
            shapes[name] = _out_shape(node, s, src)
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


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _out_shape(node: Node, s: tuple[int, ...], src: str) -> tuple[int, ...]:
    name = node.name
    if isinstance(node, (Output,)):
        return s
    if isinstance(node, Flatten):
        return (int(np.prod(s)),)
    if isinstance(node, Dense):
        if s != (node.weight.shape[1],):
            raise GraphError(
                f"{src}.output {s} -> {name}.input {node.weight.shape[1]}: "
                f"expected {(node.weight.shape[1],)}"
            )
        return (node.weight.shape[0],)
    if isinstance(node, (Conv, Pool)):
        if len(s) != 3:
            raise GraphError(f"{src}.output {s} -> {name}.input: expected (C, H, W)")
        c, h, w = s
        if isinstance(node, Pool):
            (ky, kx), (sy, sx) = node.kernel, node.stride
            out = (c, _conv_out(h, ky, sy, 0, 1), _conv_out(w, kx, sx, 0, 1))
        else:
            cin = node.weight.shape[1] * node.groups
            if c != cin:
                raise GraphError(f"{src}.output {s} -> {name}.input: expected {cin} channels")
            ky, kx = node.weight.shape[2:]
            out = (
                node.weight.shape[0],
                _conv_out(h, ky, node.stride[0], node.padding[0], node.dilation[0]),
                _conv_out(w, kx, node.stride[1], node.padding[1], node.dilation[1]),
            )
        if min(out) < 1:
            raise GraphError(f"{name}: output shape {out} is empty for input {s}")
        return out
    raise GraphError(f"{name}: unknown node kind {type(node).__name__}")


def replace(node: Node, **changes: Any) -> Node:
    """``dataclasses.replace`` that keeps ``meta`` (copied)."""
    meta = dict(node.meta)
    meta.update(changes.pop("meta", {}))
    return dataclasses.replace(node, meta=meta, **changes)
