"""Export an IR graph to NIR (Neuromorphic Intermediate Representation, Pedersen et al.,
"Neuromorphic intermediate representation: A unified instruction set for interoperable
brain-inspired computing", Nature Communications 15, 8122, 2024, arXiv:2311.14641) and import it
back.

Node mapping (docs/interop.md has the table, with snnTorch's reading of each node):
``Input``/``Output`` -> ``nir.Input``/``nir.Output``; ``Dense`` -> ``nir.Affine`` + ``nir.CubaLIF``;
``Conv`` -> ``nir.Conv2d`` + ``nir.CubaLIF``; ``Pool`` -> ``nir.AvgPool2d`` + ``nir.CubaLIF`` (the
sum is the mean times ``kH * kW``; that factor and the tap weight go into ``w_in``); ``Flatten`` ->
``nir.Flatten`` (``start_dim=0``: NIR shapes have no batch axis); ``Add`` -> a ``nir.CubaLIF`` with
several incoming edges (NIR sums the inputs of a node). The synapse node keeps the IR name, its
neuron is ``<name>.lif``. Reading accepts these, ``nir.SumPool2d``, ``nir.Linear`` and ``nir.LIF``
(a CUBA-LIF whose current decays completely each step).

Neuron mapping. NIR's CubaLIF is ``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) +
R I``, spike when ``v > v_threshold``, reset to ``v_reset``. Forward Euler with the time step
``dt = DT`` (1e-4 s, the step snnTorch assumes when it reads NIR) gives ``I[t] = (1 - dt/tau_syn)
I[t-1] + (dt/tau_syn) w_in S[t]`` and ``v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem)(v_leak + R
I[t])``. snnc's CUBA-LIF (docs/loihi2.md §2.1, snnc/nn/neuron.py) is ``u[t] = (1 - du/4096) u[t-1] +
a[t]``, ``v[t] = (1 - dv/4096) v[t-1] + u[t] + bias``, so: ``tau_syn = dt * 4096 / du``, ``w_in =
tap * tau_syn / dt``, ``tau_mem = dt * 4096 / dv``, ``R = tau_mem / dt``, ``v_threshold =
threshold``, ``v_reset = 0`` (v only). A decay of 0 (no leak) is ``tau = inf`` (then ``w_in`` holds
the gain ``tap``: the Euler form has no finite equivalent, and snnTorch cannot read it).

The bias. NIR's exact form of a constant drive of ``v`` is ``v_leak = bias * tau_mem / dt``, which
snnTorch refuses. So a neuron behind an ``Affine``/``Conv2d`` carries its bias as that node's bias,
scaled by ``du / 4096``: a constant current whose steady state in ``u`` is ``bias``. It reaches ``v``
as ``bias * (1 - (1 - du/4096)^(t+1))``: exact when ``du = 4096``, otherwise a transient of
``bias * (1 - du/4096)^(t+1)`` in the first steps. Neurons without such a node (``Add``, ``Pool``),
and ``du = 0``, use ``v_leak``. The neuron's metadata keeps snnc's own ``bias`` and ``tap`` so
that reading the file back gives the same graph. Loihi-specific facts NIR cannot state travel in the
graph metadata: one step of latency per synapse, ``u`` updated before ``v`` within a step, and for
fixed-point graphs ``precision: "fixed"`` (integer weight mantissas, ``vth``/``bias`` used ``<< 6``,
``weight_exp``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc import ir
from snnc.errors import SnncError
from snnc.ir.fixed import DECAY_UNITY
from snnc.targets.base import emit_dir, save_graph_file
from snnc.targets.loihi2.target import Loihi2Lowering

NIR_FILE = "network.nir"
DT = 1e-4  # the NIR time step of one snnc step: snnTorch's (snntorch.import_nir, export_nir)


def _tau(decay: int) -> float:
    return np.inf if decay == 0 else DT * DECAY_UNITY / decay


def _gain(tau: float) -> float:
    """``tau / dt``: the factor Euler's ``dt / tau`` takes back (1 for ``tau = inf``, no leak)."""
    return 1.0 if np.isinf(tau) else tau / DT


def _decay(tau: float) -> int:
    tau = float(np.asarray(tau).reshape(-1)[0])
    if np.isinf(tau):
        return 0
    d = DT * DECAY_UNITY / tau
    if abs(d - round(d)) > 1e-6 * max(1.0, d) or not 0 <= round(d) <= DECAY_UNITY:
        raise SnncError(f"NIR time constant {tau} is not on Loihi's 12-bit decay grid (4096/decay)")
    return int(round(d))


def _synapse_bias(neuron: ir.CubaLIF | None) -> np.ndarray | None:
    """The bias an ``Affine``/``Conv2d`` carries for ``neuron`` (``bias * du / 4096``, a current whose
    steady state in ``u`` is ``bias``), or ``None`` when the neuron keeps it in ``v_leak``."""
    if neuron is None or neuron.bias is None or neuron.current_decay == 0:
        return None
    return np.asarray(neuron.bias, np.float64).reshape(-1) * (neuron.current_decay / DECAY_UNITY)


def _lif(neuron: ir.CubaLIF, shape: tuple[int, ...], tap: float = 1.0, bias_in_synapse: bool = False):
    import nir

    full = np.ones(shape)
    ts, tm = _tau(neuron.current_decay), _tau(neuron.voltage_decay)
    bias = np.zeros(shape[0]) if neuron.bias is None else np.asarray(neuron.bias, np.float64).reshape(-1)
    leak = np.zeros(shape) if bias_in_synapse else bias.reshape((-1,) + (1,) * (len(shape) - 1)) * full
    meta: dict = {"has_bias": neuron.bias is not None, "tap": float(tap)}
    if neuron.bias is not None:
        meta["bias"] = bias
    return nir.CubaLIF(
        tau_syn=full * ts,
        tau_mem=full * tm,
        r=full * _gain(tm),
        v_leak=leak * _gain(tm),
        v_threshold=full * float(neuron.threshold),
        v_reset=np.zeros(shape),
        w_in=full * _gain(ts) * tap,
        metadata=meta,
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
        "dt": DT,
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
        if getattr(node, "neuron", None) is not None:
            raise SnncError(
                f"{node.name}: an input layer with a neuron has no NIR form here (NIR's Input holds "
                "no dynamics); compile it for loihi2 or sim"
            )
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
        bias = _synapse_bias(node.neuron)
        bias = np.zeros(w.shape[0]) if bias is None else bias
        self._synapse(node, self.nir.Affine(weight=w, bias=bias, metadata=_wmeta(node)))

    def visit_conv(self, node: ir.Conv) -> None:
        src = self.shapes[self.graph.predecessors(node.name)[0]]
        bias = _synapse_bias(node.neuron)
        conv = self.nir.Conv2d(
            input_shape=tuple(src[1:]),
            weight=node.weight,
            stride=node.stride,
            padding=node.padding,
            dilation=node.dilation,
            groups=node.groups,
            bias=np.zeros(node.weight.shape[0]) if bias is None else bias,
            metadata=_wmeta(node),
        )
        self._synapse(node, conv)

    def visit_pool(self, node: ir.Pool) -> None:
        pool = self.nir.AvgPool2d(
            kernel_size=np.array(node.kernel),
            stride=np.array(node.stride),
            padding=np.array((0, 0)),
        )
        area = node.kernel[0] * node.kernel[1]  # sum = mean * area; with the tap weight, into w_in
        self._synapse(node, pool, tap=float(node.weight) * area, tap_ir=float(node.weight))

    def _synapse(self, node, nir_node, tap: float = 1.0, tap_ir: float | None = None) -> None:
        """The synapse under the IR name, then its neuron ``<name>.lif`` (if it has one)."""
        name = node.name
        self._add(name, nir_node, self._ins(name))
        if node.neuron is None:
            self.tail[name] = name
            return
        lif = f"{name}.lif"
        carried = _synapse_bias(node.neuron) is not None and not isinstance(node, ir.Pool)
        neuron = _lif(node.neuron, self.shapes[name], tap, bias_in_synapse=carried)
        neuron.metadata["tap"] = tap if tap_ir is None else tap_ir
        self._add(lif, neuron, [name])
        self.tail[name] = lif


def _wmeta(node) -> dict:
    """The synapse's NIR metadata; refuses an unfolded batch-norm (NIR has no voltage bias BN)."""
    if getattr(node, "bn", None) is not None:
        raise SnncError(f"{node.name}: NIR has no voltage-bias batch-norm; run fold_bn before export")
    return {"weight_exp": int(getattr(node, "weight_exp", 0))}


def _scalar(a) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size and not np.all(a == a[0]):
        raise SnncError("per-neuron NIR parameters that differ within a layer are not supported")
    return float(a[0])


def _close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-9, atol=1e-12))


def _from_lif(n, syn_bias=None, area: int = 1) -> tuple[ir.CubaLIF, float]:
    """(neuron, tap weight) of a ``nir.CubaLIF`` or ``nir.LIF`` (a CUBA-LIF with ``du = 4096``);
    ``syn_bias``: the bias of the ``Affine``/``Conv2d`` before it (a current: ``bias * 4096 / du``
    in ``v``); ``area``: ``kH * kW`` of an ``AvgPool2d`` before it (a mean, not a sum)."""
    import nir

    meta = n.metadata or {}
    if isinstance(n, nir.LIF):
        cd, vd = DECAY_UNITY, _decay(_scalar(n.tau))
        w_in = _scalar(n.r) * DT / _tau(vd) if vd else _scalar(n.r)  # the LIF's input gain R dt/tau
    else:
        cd, vd = _decay(_scalar(n.tau_syn)), _decay(_scalar(n.tau_mem))
        w_in = _scalar(n.w_in) / _gain(_tau(cd))
        if not _close(_scalar(n.r), _gain(_tau(vd))):
            raise SnncError("NIR CubaLIF r differs from tau_mem / dt; only Loihi-style neurons are read")
    tap = w_in / area
    if "tap" in meta and _close(np.asarray(meta["tap"], np.float64), tap):
        tap = float(np.asarray(meta["tap"], np.float64))
    elif _close(tap, 1.0):  # tau / dt * dt / tau: unity gain, up to rounding
        tap = 1.0
    lk = np.asarray(n.v_leak, np.float64)
    bias = (lk.reshape(lk.shape[0], -1)[:, 0] if lk.ndim > 1 else lk.reshape(-1)) / _gain(_tau(vd))
    if syn_bias is not None and np.any(np.asarray(syn_bias) != 0):
        if cd == 0:
            raise SnncError("NIR synapse bias into a neuron without current decay has no snnc form")
        bias = bias + np.asarray(syn_bias, np.float64).reshape(-1) * (DECAY_UNITY / cd)
    if "bias" in meta and _close(np.asarray(meta["bias"], np.float64).reshape(-1), bias):
        bias = np.asarray(meta["bias"], np.float64).reshape(-1)
    has_bias = bool(np.asarray(meta.get("has_bias", np.any(bias != 0))))
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
            isinstance(g.nodes[b], nir.CubaLIF | nir.LIF)
            and len(preds[b]) == 1
            and not isinstance(g.nodes[a], nir.CubaLIF | nir.LIF | nir.Input | nir.Flatten)
        ):
            lif_of[a] = b
    owner = {}  # NIR node name -> IR node name whose output leaves from it
    nodes: list[ir.Node] = []
    edges: list[tuple[str, str]] = []
    order = _topo(g)
    for name in order:
        n = g.nodes[name]
        src = [owner[p] for p in preds.get(name, [])]
        if isinstance(n, nir.CubaLIF | nir.LIF):
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
        elif isinstance(n, nir.Affine | nir.Linear | nir.Conv2d | nir.SumPool2d | nir.AvgPool2d):
            syn_bias = np.asarray(n.bias, np.float64) if isinstance(n, nir.Affine | nir.Conv2d) else None
            if syn_bias is not None and not np.any(syn_bias != 0):
                syn_bias = None
            if syn_bias is not None and name not in lif_of:
                raise SnncError(f"NIR node {name}: a bias without a neuron after it is not supported")
            area = int(np.prod(_pair(n.kernel_size))) if isinstance(n, nir.AvgPool2d) else 1
            neuron, tap = (None, 1.0)
            if name in lif_of:
                neuron, tap = _from_lif(g.nodes[lif_of[name]], syn_bias, area)
            elif area != 1:
                raise SnncError(f"NIR node {name}: AvgPool2d without a neuron after it is not supported")
            wexp = int(np.asarray((n.metadata or {}).get("weight_exp", 0)))
            gain = 1.0 if isinstance(n, nir.SumPool2d | nir.AvgPool2d) else tap  # Dense/Conv: into weights
            if isinstance(n, nir.Affine | nir.Linear):
                w = n.weight if gain == 1.0 else np.asarray(n.weight, np.float64)
                node = ir.Dense(name, weight=w if gain == 1.0 else w * gain, neuron=neuron, weight_exp=wexp)
            elif isinstance(n, nir.Conv2d):
                if isinstance(n.padding, str):
                    raise SnncError(f"NIR node {name}: string padding {n.padding!r} not supported")
                w = n.weight if gain == 1.0 else np.asarray(n.weight, np.float64)
                node = ir.Conv(
                    name,
                    weight=w if gain == 1.0 else w * gain,
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
            raise SnncError(
                f"NIR node {name}: type {type(n).__name__} is not supported by snnc (it reads Affine, "
                "Linear, Conv2d, SumPool2d, AvgPool2d, Flatten, LIF, CubaLIF)"
            )
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
            raise SnncError("the NIR graph has a cycle; recurrent graphs are not supported")
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
    except Exception as e:  # nir.read parses with asserts and constructors: any failure is a bad file
        raise SnncError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None
    return from_nir(g)


def emit_nir(graph: ir.Graph, out_dir: str | os.PathLike) -> list[str]:
    """Write ``network.nir`` into ``out_dir``; returns the file names written."""
    write_nir(graph, Path(out_dir) / NIR_FILE)
    return [NIR_FILE]


class NirTarget(Loihi2Lowering):
    """``nir``: ``network.nir`` and ``graph.safetensors`` (no runtime of its own). It exports the float
    graph (after the generic passes: batch-norm folded, dead channels removed), in the units NIR and
    snnTorch read; it has no fixed-point format (the report still sizes the net on Loihi 2's cores)."""

    name = "nir"
    spec = None

    def lower(self, graph: ir.Graph, log=None, limits=None) -> ir.Graph:
        """``map_cores`` only (for the report); the graph stays float."""
        import functools

        from snnc.compile.passes import run_passes
        from snnc.targets.loihi2.map_cores import map_cores

        return run_passes(graph, [functools.partial(map_cores, limits=limits or self.limits)], log)

    def emit(self, graph: ir.Graph, out_dir: Path) -> list[str]:
        out = emit_dir(graph, out_dir)
        return [*emit_nir(graph, out), save_graph_file(graph, out)]


TARGET = NirTarget()
