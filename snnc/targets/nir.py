"""Export an IR graph to NIR (Neuromorphic Intermediate Representation, Pedersen et al.,
"Neuromorphic intermediate representation: A unified instruction set for interoperable
brain-inspired computing", Nature Communications 15, 8122, 2024, arXiv:2311.14641) and import it
back.

Node mapping: ``Input``/``Output`` -> ``nir.Input``/``nir.Output``; ``Dense`` -> ``nir.Affine``
(zero bias) + ``nir.CubaLIF``; ``Conv`` -> ``nir.Conv2d`` (zero bias) + ``nir.CubaLIF``; ``Pool`` ->
``nir.SumPool2d`` + ``nir.CubaLIF`` (the tap weight goes into ``w_in``); ``Flatten`` ->
``nir.Flatten`` (``start_dim=0``: NIR shapes have no batch axis); ``Add`` -> a ``nir.CubaLIF`` with
several incoming edges (NIR sums the inputs of a node). The synapse node keeps the IR name, its
neuron is ``<name>.lif``.

Neuron mapping. NIR's CubaLIF is ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) +
R I``, spike when ``v > v_threshold``, reset to ``v_reset``. Discretized with forward Euler at ``dt
= 1`` time step it reads ``I[t] = (1 - 1/tau_syn) I[t-1] + (w_in/tau_syn) S[t]`` and
``v[t] = (1 - 1/tau_mem) v[t-1] + (v_leak + R I)/tau_mem``. Loihi's CUBA-LIF (docs/loihi2.md §2.1) is
``u[t] = (1 - current_decay/4096) u[t-1] + a[t]``, ``v[t] = (1 - voltage_decay/4096) v[t-1] + u[t]
+ bias``, so: ``tau_syn = 4096 / current_decay``, ``w_in = tau_syn * tap``, ``tau_mem = 4096 /
voltage_decay``, ``R = tau_mem``, ``v_leak = bias * tau_mem``, ``v_threshold = threshold``,
``v_reset = 0``; a decay of 0 (no leak) is ``tau = inf`` and then ``w_in``/``R`` hold the gain 1
and ``v_leak`` the bias (the Euler form has no finite equivalent; the graph metadata says ``"dt":
1``). Loihi-specific facts NIR cannot state travel in metadata: one step of latency per synapse,
``u`` updated before ``v`` within a step, and for fixed-point graphs ``precision: "fixed"``
(integer weight mantissas, ``vth``/``bias`` used ``<< 6``, ``weight_exp``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc import ir
from snnc.errors import SnncError, UsageError
from snnc.ir.fixed import DECAY_UNITY
from snnc.targets.base import emit_dir, save_graph_file
from snnc.targets.loihi2.target import Loihi2Lowering

NIR_FILE = "network.nir"


def _tau(decay: int) -> float:
    return np.inf if decay == 0 else float(DECAY_UNITY) / decay


def _decay(tau: float) -> int:
    tau = float(np.asarray(tau).reshape(-1)[0])
    if np.isinf(tau):
        return 0
    d = float(DECAY_UNITY) / tau
    if abs(d - round(d)) > 1e-6 * max(1.0, d) or not 0 <= round(d) <= DECAY_UNITY:
        raise UsageError(f"NIR time constant {tau} is not on Loihi's 12-bit decay grid (4096/decay)")
    return int(round(d))


def _lif(neuron: ir.CubaLIF, shape: tuple[int, ...], tap: float = 1.0):
    import nir

    full = np.ones(shape)
    ts, tm = _tau(neuron.current_decay), _tau(neuron.voltage_decay)
    bias = np.zeros(shape[0]) if neuron.bias is None else np.asarray(neuron.bias, np.float64)
    b = bias.reshape((-1,) + (1,) * (len(shape) - 1)) * full
    gain_s = 1.0 if np.isinf(ts) else ts
    gain_m = 1.0 if np.isinf(tm) else tm
    return nir.CubaLIF(
        tau_syn=full * ts,
        tau_mem=full * tm,
        r=full * gain_m,
        v_leak=b * gain_m,
        v_threshold=full * float(neuron.threshold),
        v_reset=np.zeros(shape),
        w_in=full * gain_s * tap,
        metadata={"has_bias": neuron.bias is not None},
    )


def to_nir(graph: ir.Graph):
    """The NIR graph of ``graph`` (either precision; batch-norm must be folded)."""
    import nir

    graph.verify()
    export = _NirExport(graph)
    for node in graph.nodes.values():
        export.visit(node)
    meta = {
        "producer": "snnc",
        "precision": graph.precision,
        "dt": 1,
        "synapse_latency_steps": 1,
        "update_order": "u then v (Loihi 2 CUBA-LIF)",
    }
    return nir.NIRGraph(nodes=export.nodes, edges=export.edges, metadata=meta)


class _NirExport(ir.NodeVisitor):
    """One visit per IR node, in graph order: its NIR nodes and their incoming edges.

    ``tail``: IR node -> the NIR node its spikes (or, synapse-only, its current) leave from.
    """

    backend = "NIR export"

    def __init__(self, graph: ir.Graph) -> None:
        import nir

        self.nir = nir
        self.graph = graph
        self.shapes = graph.shapes()
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.tail: dict[str, str] = {}

    def generic_visit(self, node):
        raise SnncError(f"{node.name}: no NIR mapping for node kind {node.kind}")

    def _ins(self, name: str) -> list[str]:
        return [self.tail[p] for p in self.graph.predecessors(name)]

    def _add(self, key: str, nir_node, ins: list[str]) -> None:
        self.nodes[key] = nir_node
        self.edges += [(i, key) for i in ins]

    def visit_input(self, node: ir.Input) -> None:
        self.nodes[node.name] = self.nir.Input(input_type={"input": np.array(node.shape)})
        self.tail[node.name] = node.name

    def visit_output(self, node: ir.Output) -> None:
        out = self.nir.Output(output_type={"output": np.array(self.shapes[node.name])})
        self._add(node.name, out, self._ins(node.name))

    def visit_flatten(self, node: ir.Flatten) -> None:
        src = self.shapes[self.graph.predecessors(node.name)[0]]
        self._add(
            node.name,
            self.nir.Flatten(input_type={"input": np.array(src)}, start_dim=0),
            self._ins(node.name),
        )
        self.tail[node.name] = node.name

    def visit_add(self, node: ir.Add) -> None:
        lif = f"{node.name}.lif"
        self._add(lif, _lif(node.neuron, self.shapes[node.name]), self._ins(node.name))
        self.tail[node.name] = lif

    def visit_dense(self, node: ir.Dense) -> None:
        w = node.weight
        self._synapse(node, self.nir.Affine(weight=w, bias=np.zeros(w.shape[0]), metadata=_wmeta(node)))

    def visit_conv(self, node: ir.Conv) -> None:
        src = self.shapes[self.graph.predecessors(node.name)[0]]
        conv = self.nir.Conv2d(
            input_shape=tuple(src[1:]),
            weight=node.weight,
            stride=node.stride,
            padding=node.padding,
            dilation=node.dilation,
            groups=node.groups,
            bias=np.zeros(node.weight.shape[0]),
            metadata=_wmeta(node),
        )
        self._synapse(node, conv)

    def visit_pool(self, node: ir.Pool) -> None:
        pool = self.nir.SumPool2d(
            kernel_size=np.array(node.kernel),
            stride=np.array(node.stride),
            padding=np.array((0, 0)),
        )
        self._synapse(node, pool, tap=float(node.weight))  # the tap weight goes into w_in

    def _synapse(self, node, nir_node, tap: float = 1.0) -> None:
        """The synapse under the IR name, then its neuron ``<name>.lif`` (if it has one)."""
        name = node.name
        self._add(name, nir_node, self._ins(name))
        if node.neuron is None:
            self.tail[name] = name
            return
        lif = f"{name}.lif"
        self._add(lif, _lif(node.neuron, self.shapes[name], tap), [name])
        self.tail[name] = lif


def _wmeta(node) -> dict:
    """The synapse's NIR metadata; refuses an unfolded batch-norm (NIR has no voltage bias BN)."""
    if getattr(node, "bn", None) is not None:
        raise SnncError(f"{node.name}: NIR has no voltage-bias batch-norm; run fold_bn before export")
    return {"weight_exp": int(getattr(node, "weight_exp", 0))}


def _scalar(a) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size and not np.all(a == a[0]):
        raise UsageError("per-neuron NIR parameters that differ within a layer are not supported")
    return float(a[0])


def _from_lif(n) -> tuple[ir.CubaLIF, float]:
    """(neuron, tap weight) of a nir.CubaLIF written by :func:`to_nir` (per-channel bias kept)."""
    cd, vd = _decay(_scalar(n.tau_syn)), _decay(_scalar(n.tau_mem))
    ts, tm = _tau(cd), _tau(vd)
    gain_s = 1.0 if np.isinf(ts) else ts
    gain_m = 1.0 if np.isinf(tm) else tm
    tap = _scalar(n.w_in) / gain_s
    if abs(_scalar(n.r) - gain_m) > 1e-9 * gain_m:
        raise UsageError("NIR CubaLIF r differs from tau_mem; only Loihi-style neurons are supported")
    lk = np.asarray(n.v_leak, np.float64)
    bias = (lk.reshape(lk.shape[0], -1)[:, 0] if lk.ndim > 1 else lk) / gain_m
    has_bias = bool(np.asarray((n.metadata or {}).get("has_bias", np.any(bias != 0))))
    thr = _scalar(n.v_threshold)
    return ir.CubaLIF(threshold=thr, current_decay=cd, voltage_decay=vd, bias=bias if has_bias else None), tap


def from_nir(g) -> ir.Graph:
    """An IR graph from a NIR graph in the form :func:`to_nir` writes (Loihi-style CUBA-LIF)."""
    import nir

    meta = dict(g.metadata or {})
    precision = str(meta.get("precision", "float"))
    if isinstance(precision, bytes):
        precision = precision.decode()
    preds: dict[str, list[str]] = {}
    for a, b in g.edges:
        preds.setdefault(b, []).append(a)
    lif_of = {}  # synapse NIR node -> its neuron
    for a, b in g.edges:
        if (
            isinstance(g.nodes[b], nir.CubaLIF)
            and len(preds[b]) == 1
            and not isinstance(g.nodes[a], nir.CubaLIF | nir.Input | nir.Flatten)
        ):
            lif_of[a] = b
    owner = {}  # NIR node name -> IR node name whose output leaves from it
    nodes: list[ir.Node] = []
    edges: list[tuple[str, str]] = []
    order = _topo(g)
    for name in order:
        n = g.nodes[name]
        src = [owner[p] for p in preds.get(name, [])]
        if isinstance(n, nir.CubaLIF):
            if name in lif_of.values():
                continue  # folded into its synapse node
            base = name[: -len(".lif")] if name.endswith(".lif") else name
            neuron, _ = _from_lif(n)
            nodes.append(ir.Add(base, neuron=neuron))
            edges += [(s, base) for s in src]
            owner[name] = base
            continue
        if isinstance(n, nir.Input):
            shape = tuple(int(v) for v in np.asarray(n.input_type["input"]).reshape(-1))
            nodes.append(ir.Input(name, shape=shape))
        elif isinstance(n, nir.Output):
            nodes.append(ir.Output(name))
        elif isinstance(n, nir.Flatten):
            nodes.append(ir.Flatten(name))
        elif isinstance(n, nir.Affine | nir.Linear | nir.Conv2d | nir.SumPool2d):
            neuron, tap = (None, 1.0)
            if name in lif_of:
                neuron, tap = _from_lif(g.nodes[lif_of[name]])
            wexp = int(np.asarray((n.metadata or {}).get("weight_exp", 0)))
            if isinstance(n, nir.Affine | nir.Linear):
                if isinstance(n, nir.Affine) and np.any(np.asarray(n.bias) != 0):
                    raise UsageError(f"NIR node {name}: Affine bias is not supported (use v_leak)")
                node = ir.Dense(name, weight=n.weight, neuron=neuron, weight_exp=wexp)
            elif isinstance(n, nir.Conv2d):
                if np.any(np.asarray(n.bias) != 0):
                    raise UsageError(f"NIR node {name}: Conv2d bias is not supported (use v_leak)")
                if isinstance(n.padding, str):
                    raise UsageError(f"NIR node {name}: string padding {n.padding!r} not supported")
                node = ir.Conv(
                    name,
                    weight=n.weight,
                    stride=_pair(n.stride),
                    padding=_pair(n.padding),
                    dilation=_pair(n.dilation),
                    groups=int(n.groups),
                    neuron=neuron,
                    weight_exp=wexp,
                )
            else:
                node = ir.Pool(
                    name,
                    kernel=_pair(n.kernel_size),
                    stride=_pair(n.stride),
                    weight=tap,
                    neuron=neuron,
                )
            nodes.append(node)
        else:
            raise UsageError(f"NIR node {name}: type {type(n).__name__} is not supported by snnc")
        edges += [(s, nodes[-1].name) for s in src]
        owner[name] = nodes[-1].name
        if name in lif_of:
            owner[lif_of[name]] = nodes[-1].name
    graph = ir.Graph({n.name: n for n in nodes}, tuple(edges), {"precision": precision, "source": "nir"})
    return graph.verify()


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).reshape(-1)
    return (int(a[0]), int(a[-1]))


def _topo(g) -> list[str]:
    preds: dict[str, set] = {n: set() for n in g.nodes}
    for a, b in g.edges:
        preds[b].add(a)
    order, done = [], set()
    names = list(g.nodes)
    while len(order) < len(names):
        progressed = False
        for n in names:
            if n not in done and preds[n] <= done:
                order.append(n)
                done.add(n)
                progressed = True
        if not progressed:
            raise UsageError("the NIR graph has a cycle; recurrent graphs are not supported")
    return order


def write_nir(graph: ir.Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` as a NIR HDF5 file (``nir.write``)."""
    import nir

    nir.write(str(path), to_nir(graph))


def read_nir(path: str | os.PathLike) -> ir.Graph:
    """Read a NIR file written by :func:`write_nir` (or any NIR graph of the same node kinds)."""
    import nir

    try:
        g = nir.read(str(path))
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None
    return from_nir(g)


def emit_nir(graph: ir.Graph, out_dir: str | os.PathLike) -> list[str]:
    """Write ``network.nir`` into ``out_dir``; returns the file names written."""
    write_nir(graph, Path(out_dir) / NIR_FILE)
    return [NIR_FILE]


class NirTarget(Loihi2Lowering):
    """``nir``: ``network.nir`` and ``graph.safetensors`` (no runtime of its own). It exports the
    Loihi 2 fixed-point graph, so it lowers as Loihi 2 does."""

    name = "nir"

    def emit(self, graph: ir.Graph, out_dir: Path) -> list[str]:
        out = emit_dir(graph, out_dir)
        return [*emit_nir(graph, out), save_graph_file(graph, out)]


TARGET = NirTarget()
