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

import numpy as np

from snnc import ir
from snnc.errors import SnncError
from snnc.ir.fixed import DECAY_UNITY

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


def _scalar(a, what: str = "parameter") -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size and not np.all(a == a[0]):
        raise SnncError(
            f"NIR {what}: per-neuron values that differ within a layer are not supported "
            "(Loihi 2 shares neuron parameters per layer); export equal values per layer"
        )
    return float(a[0])


def _close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-9, atol=1e-12))


_SYNAPSES = ("Affine", "Linear", "Conv2d")
_NEURONS = ("CubaLIF", "LIF", "IF")


def _kind(n) -> str:
    return type(n).__name__


class _Reader:
    """One NIR graph's reading: the time step and the approximations made on the way (``notes``)."""

    def __init__(self, dt: float) -> None:
        if not (np.isfinite(dt) and dt > 0):
            raise SnncError(f"NIR time step must be a positive number of seconds, got {dt}")
        self.dt = float(dt)
        self.notes: list[str] = []

    def decay(self, tau: float, where: str) -> int:
        """``4096 * dt / tau`` on Loihi's 12-bit grid: exact when it is an integer, else rounded to the
        nearest one (noted); refused when ``tau < dt`` (Euler's step would overshoot)."""
        if np.isinf(tau):
            return 0
        if not tau > 0:
            raise SnncError(f"NIR node {where}: time constant {tau} must be positive")
        d = self.dt * DECAY_UNITY / tau
        if d > DECAY_UNITY * (1 + 1e-9):
            raise SnncError(
                f"NIR node {where}: time constant {tau:g} s is shorter than the time step {self.dt:g} s; "
                "write the exporter's time step into the graph's metadata as 'dt' (docs/interop.md)"
            )
        r = int(round(d))
        if abs(d - r) > 1e-6 * max(1.0, d):
            self.notes.append(
                f"{where}: decay {d:.4f}/4096 per step (tau {tau:g} s, dt {self.dt:g} s) rounded to "
                f"{r}/4096 (Loihi's 12-bit grid; factor per step {1 - d / DECAY_UNITY:.6f} -> "
                f"{1 - r / DECAY_UNITY:.6f})"
            )
        return r

    def gain(self, tau: float) -> float:
        """``tau / dt``: the factor Euler's ``dt / tau`` takes back (1 for ``tau = inf``, no leak)."""
        return 1.0 if np.isinf(tau) else tau / self.dt

    def neuron(self, n, where: str, syn_bias=None, area: int = 1) -> tuple[ir.CubaLIF, float]:
        """(neuron, tap weight) of a ``nir.CubaLIF``, ``nir.LIF`` or ``nir.IF``.

        Euler at ``dt``: CubaLIF ``I += dt/ts (w_in S - I)``, ``v += dt/tm (v_leak - v + R I)`` is
        snnc's ``u``/``v`` with ``u = R dt/tm I``: decays ``4096 dt/ts`` and ``4096 dt/tm``, tap
        ``w_in dt/ts * R dt/tm``, bias ``v_leak dt/tm``. LIF: the same with the current forgotten each
        step (``du = 4096``, tap ``R dt/tm``). IF: ``v += R I`` per step (the reading snnTorch, Norse
        and Sinabs give it; ``du = 4096``, ``dv = 0``, tap ``R``). ``syn_bias``: the bias of the
        ``Affine``/``Conv2d`` before it (a current: ``bias * 4096 / du`` in ``v``); ``area``:
        ``kH * kW`` of an ``AvgPool2d`` before it (a mean, not a sum).
        """
        import nir

        meta = n.metadata or {}
        if not np.all(np.asarray(n.v_reset, np.float64) == 0):
            raise SnncError(
                f"NIR node {where}: v_reset {_scalar(n.v_reset, where + '.v_reset'):g} is not 0; "
                "Loihi 2's CUBA-LIF resets the voltage to 0"
            )
        if isinstance(n, nir.IF):
            cd, vd, bias = DECAY_UNITY, 0, np.zeros(1)
            w_in = _scalar(n.r, where + ".r")
        else:
            if isinstance(n, nir.LIF):
                tm = _scalar(n.tau, where + ".tau")
                cd, vd = DECAY_UNITY, self.decay(tm, where + ".tau")
                w_in = _scalar(n.r, where + ".r") / self.gain(tm)
            else:
                ts, tm = _scalar(n.tau_syn, where + ".tau_syn"), _scalar(n.tau_mem, where + ".tau_mem")
                cd, vd = self.decay(ts, where + ".tau_syn"), self.decay(tm, where + ".tau_mem")
                w_in = _scalar(n.w_in, where + ".w_in") / self.gain(ts)
                w_in *= _scalar(n.r, where + ".r") / self.gain(tm)
            lk = np.asarray(n.v_leak, np.float64)
            bias = (lk.reshape(lk.shape[0], -1)[:, 0] if lk.ndim > 1 else lk.reshape(-1)) / self.gain(tm)
            if lk.ndim > 1 and not np.all(
                lk == lk.reshape(lk.shape[0], -1)[:, :1].reshape((-1,) + (1,) * (lk.ndim - 1))
            ):
                raise SnncError(
                    f"NIR node {where}: v_leak differs within a channel; snnc has one bias per channel"
                )
        tap = w_in / area
        if "tap" in meta and _close(np.asarray(meta["tap"], np.float64), tap):
            tap = float(np.asarray(meta["tap"], np.float64))
        elif _close(tap, 1.0):  # tau / dt * dt / tau: unity gain, up to rounding
            tap = 1.0
        if syn_bias is not None and np.any(np.asarray(syn_bias) != 0):
            if cd == 0:
                raise SnncError(
                    f"NIR node {where}: a synapse bias into a neuron without current decay has no snnc form"
                )
            bias = bias + np.asarray(syn_bias, np.float64).reshape(-1) * (DECAY_UNITY / cd)
        if "bias" in meta and _close(np.asarray(meta["bias"], np.float64).reshape(-1), bias):
            bias = np.asarray(meta["bias"], np.float64).reshape(-1)
        has_bias = bool(np.asarray(meta.get("has_bias", np.any(bias != 0))))
        thr = _scalar(n.v_threshold, where + ".v_threshold")
        if not thr > 0:
            raise SnncError(f"NIR node {where}: v_threshold {thr:g} must be positive on Loihi 2")
        neuron = ir.CubaLIF(
            threshold=thr, current_decay=cd, voltage_decay=vd, bias=bias if has_bias else None
        )
        return neuron, tap


def _fold_scales(nodes: dict, edges: list[tuple[str, str]]) -> tuple[dict, list[tuple[str, str]]]:
    """Fold every ``nir.Scale`` into the synapse before it (per output) or into the synapses after it
    (per input), exactly: a scale is linear and a synapse's weights take it."""
    import dataclasses

    nodes = dict(nodes)
    for name in [k for k, v in nodes.items() if _kind(v) == "Scale"]:
        preds = [a for a, b in edges if b == name]
        succs = [b for a, b in edges if a == name]
        scale = np.asarray(nodes[name].scale, np.float64)
        p = nodes[preds[0]] if len(preds) == 1 else None
        p_succs = [b for a, b in edges if preds and a == preds[0]]
        if p is not None and _kind(p) in _SYNAPSES and p_succs == [name]:
            o = np.asarray(p.weight).shape[0]
            per = _per_channel(scale, o, name)
            w = np.asarray(p.weight, np.float64) * per.reshape((o,) + (1,) * (np.asarray(p.weight).ndim - 1))
            changes = {"weight": w}
            if getattr(p, "bias", None) is not None:
                changes["bias"] = np.asarray(p.bias, np.float64) * per
            nodes[preds[0]] = dataclasses.replace(p, **changes)
        elif succs and all(_kind(nodes[s]) in _SYNAPSES for s in succs):
            for s in succs:
                q = nodes[s]
                w = np.asarray(q.weight, np.float64)
                if _kind(q) == "Conv2d":
                    if int(q.groups) != 1 and scale.size != 1:
                        raise SnncError(
                            f"NIR node {name}: a per-channel Scale into a grouped Conv2d is not supported"
                        )
                    c = w.shape[1]
                    w = w * (
                        _per_channel(scale, c, name).reshape(1, c, 1, 1)
                        if scale.size != 1
                        else scale.reshape(-1)[0]
                    )
                else:
                    w = w * (scale.reshape(1, -1) if scale.size != 1 else scale.reshape(-1)[0])
                nodes[s] = dataclasses.replace(q, weight=w)
        else:
            raise SnncError(
                f"NIR node {name}: a Scale is read only next to an Affine, Linear or Conv2d "
                "(folded into its weights)"
            )
        edges = [(a, b) for a, b in edges if name not in (a, b)] + [(a, s) for a in preds for s in succs]
        del nodes[name]
    return nodes, edges


def _per_channel(scale: np.ndarray, channels: int, where: str) -> np.ndarray:
    """A Scale's factor per channel: a scalar, ``(C,)``, or ``(C, H, W)`` constant over space."""
    if scale.size == 1:
        return np.full(channels, float(scale.reshape(-1)[0]))
    flat = scale.reshape(channels, -1) if scale.size % channels == 0 and scale.shape[0] == channels else None
    if flat is None or not np.all(flat == flat[:, :1]):
        raise SnncError(
            f"NIR node {where}: Scale of shape {scale.shape} is not per channel ({channels} channels)"
        )
    return flat[:, 0]


def from_nir(g, dt: float | None = None) -> ir.Graph:
    """An IR graph from a NIR graph (docs/interop.md, "NIR in").

    ``dt``: the time step, in seconds, one snnc step stands for: the graph's own ``dt`` metadata
    (snnc writes it) if ``None``, else :data:`DT` (snnTorch's). Decays off Loihi's 12-bit grid are
    rounded to it; each such approximation is listed in the graph's ``meta["nir_notes"]``.
    """
    import nir

    meta = dict(g.metadata or {})
    precision = str(meta.get("precision", "float"))
    if isinstance(precision, bytes):
        precision = precision.decode()
    if dt is None:
        dt = float(np.asarray(meta["dt"])) if "dt" in meta else DT
    reader = _Reader(dt)
    for name, n in g.nodes.items():
        if n is None:
            raise SnncError(f"NIR node {name}: the exporter wrote no node (a module it could not export)")
        if _kind(n) == "LI":
            raise SnncError(
                f"NIR node {name}: LI (a non-spiking leaky integrator) has no form on Loihi 2's spiking "
                "CUBA-LIF; export the network without its LI readout and read the last layer's voltage"
            )
    nodes, edges0 = _fold_scales(dict(g.nodes), [tuple(e) for e in g.edges])
    preds: dict[str, list[str]] = {}
    for a, b in edges0:
        preds.setdefault(b, []).append(a)
    neuron_types = nir.CubaLIF | nir.LIF | nir.IF
    lif_of = {}  # synapse NIR node -> its neuron
    for a, b in edges0:
        if (
            isinstance(nodes[b], neuron_types)
            and len(preds[b]) == 1
            and not isinstance(nodes[a], neuron_types | nir.Input | nir.Flatten)
        ):
            lif_of[a] = b
    owner = {}  # NIR node name -> IR node name whose output leaves from it
    out: list[ir.Node] = []
    edges: list[tuple[str, str]] = []
    for name in _topo(nodes, edges0):
        n = nodes[name]
        src = [owner[p] for p in preds.get(name, [])]
        if isinstance(n, neuron_types):
            if name in lif_of.values():
                continue  # folded into its synapse node
            base = name[: -len(".lif")] if name.endswith(".lif") else name
            neuron, tap = reader.neuron(n, name)
            if not _close(tap, 1.0):
                raise SnncError(
                    f"NIR node {name}: a neuron without a synapse before it needs unit input gain, "
                    f"got {tap:g}"
                )
            out.append(ir.Add(base, neuron=neuron))
            edges += [(s, base) for s in src]
            owner[name] = base
            continue
        if isinstance(n, nir.Input):
            shape = tuple(int(v) for v in np.asarray(n.input_type["input"]).reshape(-1))
            if len(shape) in (2, 4) and shape[0] == 1:  # an exporter that kept the batch axis (Norse)
                reader.notes.append(
                    f"{name}: input shape {shape} read as {shape[1:]} (a batch axis of 1 dropped)"
                )
                shape = shape[1:]
            out.append(ir.Input(name, shape=shape))
        elif isinstance(n, nir.Output):
            out.append(ir.Output(name))
        elif isinstance(n, nir.Flatten):
            out.append(ir.Flatten(name))
        elif isinstance(n, nir.Affine | nir.Linear | nir.Conv2d | nir.SumPool2d | nir.AvgPool2d):
            out.append(_synapse_node(reader, name, n, nodes.get(lif_of.get(name)), lif_of.get(name)))
        else:
            raise SnncError(
                f"NIR node {name}: type {type(n).__name__} is not supported by snnc (it reads Affine, "
                "Linear, Conv2d, SumPool2d, AvgPool2d, Flatten, Scale, IF, LIF, CubaLIF)"
            )
        edges += [(s, out[-1].name) for s in src]
        owner[name] = out[-1].name
        if name in lif_of:
            owner[lif_of[name]] = out[-1].name
    gmeta = {"precision": precision, "source": "nir"}
    if reader.notes:
        gmeta["nir_notes"] = list(reader.notes)
    graph = ir.Graph({n.name: n for n in out}, tuple(edges), gmeta)
    return graph.verify()


def _synapse_node(reader: _Reader, name: str, n, lif, lif_name: str | None) -> ir.Node:
    """The IR node of a NIR synapse node ``n`` with the neuron ``lif`` after it (or none)."""
    import nir

    syn_bias = np.asarray(n.bias, np.float64) if isinstance(n, nir.Affine | nir.Conv2d) else None
    if syn_bias is not None and not np.any(syn_bias != 0):
        syn_bias = None
    if syn_bias is not None and lif is None:
        raise SnncError(f"NIR node {name}: a bias without a neuron after it is not supported")
    area = int(np.prod(_pair(n.kernel_size))) if isinstance(n, nir.AvgPool2d) else 1
    neuron, tap = (None, 1.0)
    if lif is not None:
        neuron, tap = reader.neuron(lif, lif_name, syn_bias, area)
    elif area != 1:
        raise SnncError(f"NIR node {name}: AvgPool2d without a neuron after it is not supported")
    wexp = int(np.asarray((n.metadata or {}).get("weight_exp", 0)))
    gain = 1.0 if isinstance(n, nir.SumPool2d | nir.AvgPool2d) else tap  # Dense/Conv: into weights
    if isinstance(n, nir.Affine | nir.Linear | nir.Conv2d):
        w = n.weight if gain == 1.0 else np.asarray(n.weight, np.float64) * gain
    if isinstance(n, nir.Affine | nir.Linear):
        return ir.Dense(name, weight=w, neuron=neuron, weight_exp=wexp)
    if isinstance(n, nir.Conv2d):
        if isinstance(n.padding, str):
            raise SnncError(f"NIR node {name}: string padding {n.padding!r} not supported")
        return ir.Conv(
            name,
            weight=w,
            stride=_pair(n.stride),
            padding=_pair(n.padding),
            dilation=_pair(n.dilation),
            groups=int(n.groups),
            neuron=neuron,
            weight_exp=wexp,
        )
    if np.any(np.asarray(getattr(n, "padding", 0)) != 0):
        raise SnncError(f"NIR node {name}: pooling with padding is not supported")
    return ir.Pool(name, kernel=_pair(n.kernel_size), stride=_pair(n.stride), weight=tap, neuron=neuron)


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).reshape(-1)
    return (int(a[0]), int(a[-1]))


def _topo(nodes: dict, edges) -> list[str]:
    preds: dict[str, set] = {n: set() for n in nodes}
    for a, b in edges:
        preds[b].add(a)
    order, done = [], set()
    names = list(nodes)
    while len(order) < len(names):
        progressed = False
        for n in names:
            if n not in done and preds[n] <= done:
                order.append(n)
                done.add(n)
                progressed = True
        if not progressed:
            raise SnncError(
                "the NIR graph has a cycle: recurrent graphs are not supported by snnc's targets "
                "(Loihi 2 recurrence through netx is not implemented)"
            )
    return order


def write_nir(graph: ir.Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` as a NIR HDF5 file (``nir.write``)."""
    import nir

    nir.write(str(path), to_nir(graph))


def read_nir(path: str | os.PathLike, dt: float | None = None) -> ir.Graph:
    """Read a NIR file (:func:`from_nir`; ``dt`` as there)."""
    import nir

    try:
        g = nir.read(str(path))
    except Exception as e:  # nir.read parses with asserts and constructors: any failure is a bad file
        raise SnncError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from None
    return from_nir(g, dt)
