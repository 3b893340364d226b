"""Per-layer probes of a graph run in Lava: every neuron layer's spikes, and ``u``/``v`` where asked.

What the simulator's :func:`snnc.sim.trace_layers` computes, read from Lava
``Loihi2SimCfg(select_tag='fixed_pt')`` on CPU, so the two can be compared layer by layer and step by
step. A sequential graph runs through ``netx.hdf5.Network`` on the file :func:`write_netx` writes (one
netx block per neuron layer, in graph order, docs/loihi2.md §1.3); a graph with ``Add`` nodes (or
``via="processes"``) through the processes of :func:`build_processes`. Each neuron layer's output port
feeds a recorder process that stores what arrives in the spike phase, as ``io.sink.RingBuffer`` does;
``lif.u`` / ``lif.v`` are read after every step through a RefPort, as ``Monitor`` does (docs/loihi2.md
§3). The recorders write their buffers to files instead of handing them back through ``Var.get()``,
which moves one value per message (about 40 us each: 18 s for one sample of a 28x28 conv net, eight
times its run). Both sides record at the global time step, so a layer's spikes already carry one step
of latency per synapse before it (§2.5), exactly as the simulator's do: no shift is needed to align
them. One fresh network per sample, as :func:`run_lava` runs them.
"""

from __future__ import annotations

import contextlib
import functools
import io as _io
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from snnc.errors import UsageError
from snnc.ir import Add, Graph, is_graded
from snnc.targets.loihi2.lava import build_processes, connect_source, netx_file


@dataclass(frozen=True)
class LavaLayer:
    """One neuron layer as Lava ran it: ``spikes`` ``(N, *shape, T)`` int8; ``u``, ``v`` ``(N, *shape,
    T)`` int64 at the end of each step (``None`` unless the layer was named in ``state``). Shapes in
    PyTorch order."""

    spikes: np.ndarray
    u: np.ndarray | None
    v: np.ndarray | None


def neuron_layers(graph: Graph) -> list[str]:
    """The names of ``graph``'s nodes that own neurons, in graph order (netx's blocks, one each)."""
    return [n.name for n in graph.nodes.values() if getattr(n, "neuron", None) is not None]


def _from_lava(a: np.ndarray) -> np.ndarray:
    """Lava ``(W, H, C, T)`` / ``(F, T)`` -> PyTorch order ``(C, H, W, T)`` / ``(F, T)``."""
    return a.transpose(2, 1, 0, 3) if a.ndim == 4 else a


def probe_lava(
    graph: Graph,
    x: np.ndarray,
    state: tuple[str, ...] = (),
    via: str | None = None,
    net_path: str | os.PathLike | None = None,
) -> dict[str, LavaLayer]:
    """Run ``x`` ``(N, *input_shape, T)`` (0/1) through Lava, recording every neuron layer.

    ``state``: names of layers whose ``u`` and ``v`` are recorded too. ``via``: ``"netx"`` or
    ``"processes"``; by default netx for a sequential graph without ``Add``, processes otherwise.
    ``net_path``: the netx file ``graph`` was read from, run as it is instead of the file
    :func:`write_netx` writes for ``graph`` (netx only). Returns ``{layer name: LavaLayer}`` in graph order.
    """
    from snnc.sim import check_input

    layers = neuron_layers(graph)
    unknown = sorted(set(state) - set(layers))
    if unknown:
        raise UsageError(f"cannot probe the state of {', '.join(unknown)}: not neuron layers of the graph")
    if via is None:
        residual = not graph.is_sequential() or any(isinstance(n, Add) for n in graph.nodes.values())
        via = "processes" if residual else "netx"
    if via not in ("netx", "processes"):
        raise UsageError(f"via must be 'netx' or 'processes', got {via!r}")
    graded_state = [n for n in state if is_graded(graph.nodes[n].neuron)]
    if graded_state:
        raise UsageError(f"{', '.join(graded_state)}: sigma-delta layers have no u or v; record their spikes")
    s = check_input(graph, x)
    runs = []
    source = graph if net_path is None else net_path
    with netx_file(source) if via == "netx" else contextlib.nullcontext() as path:
        for sample in s:
            runs.append(_run_one(graph, layers, state, path, sample.astype(np.int32)))
    out = {}
    for name in layers:
        recs = [r[name] for r in runs]
        u = np.stack([r[1] for r in recs]) if name in state else None
        v = np.stack([r[2] for r in recs]) if name in state else None
        graded = is_graded(graph.nodes[name].neuron)  # sigma-delta: int32 payloads (docs/loihi2.md §2.7)
        out[name] = LavaLayer(np.stack([r[0] for r in recs]).astype(np.int32 if graded else np.int8), u, v)
    return out


def _run_one(graph: Graph, layers: list[str], state, path: str | None, sample: np.ndarray) -> dict:
    """One sample ``(*input_shape, T)`` -> ``{layer: (spikes, u, v)}`` in PyTorch order."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    spike_rec, var_rec, models = _recorders()
    t = sample.shape[-1]
    data = sample.transpose(2, 1, 0, 3) if sample.ndim == 4 else sample  # -> Lava (W, H, C, T)
    src = io.source.RingBuffer(data=data)
    if path is not None:
        with contextlib.redirect_stdout(_io.StringIO()):  # lava.lib.dl prints a warning on import
            from lava.lib.dl import netx
        net = netx.hdf5.Network(net_config=path)
        if len(net.layers) != len(layers):
            raise UsageError(f"netx built {len(net.layers)} blocks for {len(layers)} neuron layers")
        # an input layer with a neuron: net.inp is not wired to it, drive its a_in (docs/loihi2.md
        # §1.7); a flatten first: net.inp is the dense layer's (C*H*W,), fed in C.H.W order (§7.2)
        in_port = net.in_layer.neuron.a_in if type(net.in_layer).__name__ == "Input" else net.inp
        if len(in_port.shape) == 1 and sample.ndim == 4:
            src = io.source.RingBuffer(data=sample.reshape(-1, t))
        src.s_out.connect(in_port)
        lifs = {name: block.neuron for name, block in zip(layers, net.layers, strict=True)}
        ports = {name: block.out for name, block in zip(layers, net.layers, strict=True)}
    else:
        procs, in_ports, _ = build_processes(graph)
        connect_source(src, in_ports, data.ndim)
        lifs = {name: procs[name + ".neuron"] for name in layers}
        ports = {name: lif.s_out for name, lif in lifs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        files, recorders = {}, []
        for i, (name, port) in enumerate(ports.items()):
            files[name, "s"] = os.path.join(tmp, f"{i}.s.npy")
            recorders.append(spike_rec(shape=port.shape, steps=t, path=files[name, "s"]))
            port.connect(recorders[-1].a_in)
        for i, name in enumerate(state):
            for var in ("u", "v"):
                files[name, var] = os.path.join(tmp, f"{i}.{var}.npy")
                recorders.append(var_rec(var=getattr(lifs[name], var), steps=t, path=files[name, var]))
        try:
            # a map by process instance: Lava finds no model of a class defined in a function
            chosen = {r: models[type(r)] for r in recorders}
            cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=chosen)
            src.run(condition=RunSteps(num_steps=t), run_cfg=cfg)
        finally:
            src.stop()
        rec = {k: _from_lava(np.load(f)).astype(np.int64) for k, f in files.items()}
    return {name: (rec[name, "s"], rec.get((name, "u")), rec.get((name, "v"))) for name in layers}


@functools.cache
def _recorders():
    """Two Lava processes that keep what they record in their own memory and write it to ``path``
    (``.npy``, ``(*lava_shape, T)``) at the last step: reading a Var back (``sink.data.get()``,
    ``Monitor.get_data``) moves it one element per channel message, which took Lava ~40 us per
    value, far longer than running the network. ``SpikeRecorder`` takes an OutPort's values in the
    spike phase, as ``io.sink.RingBuffer`` does; ``VarRecorder`` reads a Var after every step, as
    ``Monitor`` and ``io.sink.Read`` do. Returns ``(SpikeRecorder, VarRecorder, model map)``.
    """
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyRefPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, RefPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class SpikeRecorder(AbstractProcess):
        def __init__(self, *, shape, steps: int, path: str) -> None:
            super().__init__(shape=shape, steps=steps, path=path)
            self.a_in = InPort(shape=shape)

    class VarRecorder(AbstractProcess):
        def __init__(self, *, var, steps: int, path: str) -> None:
            super().__init__(shape=var.shape, steps=steps, path=path)
            self.state = RefPort(var.shape)
            self.state.connect_var(var)

    class _Store(PyLoihiProcessModel):
        def __init__(self, proc_params) -> None:
            super().__init__(proc_params)
            p = self.proc_params
            self.buf = np.zeros((*p["shape"], p["steps"]), np.int64)

        def store(self, values) -> None:
            self.buf[..., self.time_step - 1] = values
            if self.time_step == self.proc_params["steps"]:
                np.save(self.proc_params["path"], self.buf)

    @implements(proc=SpikeRecorder, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class SpikeRecorderModel(_Store):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

        def run_spk(self) -> None:
            self.store(self.a_in.recv())

    @implements(proc=VarRecorder, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class VarRecorderModel(_Store):
        state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

        def post_guard(self) -> bool:
            return True

        def run_post_mgmt(self) -> None:
            self.store(self.state.read())

    return SpikeRecorder, VarRecorder, {SpikeRecorder: SpikeRecorderModel, VarRecorder: VarRecorderModel}
