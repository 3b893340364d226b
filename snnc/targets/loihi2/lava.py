"""The loihi2 target's Lava side: run a graph or netx file in Lava and build Lava processes.

``run_lava`` runs a graph or file in Lava ``Loihi2SimCfg(select_tag='fixed_pt')`` on CPU (``Loihi2HwCfg``
when Intel's Loihi stack is importable), one sample per network build, so no state carries over between
samples. Graphs netx cannot express (residual ``Add``) are built from Lava Dense/Sparse/Conv/LIF
processes connected by ports (:func:`build_processes`).

Sigma-delta (SDNN) layers run as Lava's ``Delta`` / ``SigmaDelta`` / ``Sigma`` processes, and a
synapse that reads one takes graded spikes (``num_message_bits = 16``, as netx gives it); the
output of such a net is int32 payloads (docs/loihi2.md §2.7).

Sparse synapses: a dense layer that ``map_cores`` marked ``node.meta["synapse"] == "sparse"`` becomes
a Lava ``Sparse`` process (a scipy CSR matrix; it computes the same integers as ``Dense``,
docs/loihi2.md §2.2, §7). netx's only switch is ``Network(..., sparse_fc_layer=True)``, which makes
*every* dense layer Sparse (§7.2), so :func:`netx_network` passes it when the file marks all dense
layers sparse and otherwise lets netx's own ``create_dense`` build each layer as its ``synapse`` key
says.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from pathlib import Path

import numpy as np

from snnc.errors import SnncError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, NodeVisitor, Output, Pool, SigmaDelta, is_graded
from snnc.targets.loihi2.netx import (
    SYNAPSE_KEY,
    effective_int,
    netx_optimize_weight_bits,
    netx_synapses,
    read_netx,
    write_netx,
)
from snnc.targets.loihi2.spec import BIAS_EXP


# -- running in Lava
# ---------------------------------------------------------------------------------
def _run_cfg():
    from lava.magma.core.run_configs import Loihi2SimCfg

    try:  # Intel's Loihi stack (INRC only) provides the hardware compiler
        import lava.magma.compiler.subcompilers.nc  # noqa: F401
        from lava.magma.core.run_configs import Loihi2HwCfg

        return Loihi2HwCfg()
    except ImportError:
        return Loihi2SimCfg(select_tag="fixed_pt")


def _to_lava(sample: np.ndarray) -> np.ndarray:
    """``(*shape, T)`` PyTorch order -> Lava ``(W, H, C, T)`` / ``(F, T)``."""
    return sample.transpose(2, 1, 0, 3) if sample.ndim == 4 else sample


def _from_lava(y: np.ndarray) -> np.ndarray:
    return y.transpose(2, 1, 0, 3) if y.ndim == 4 else y


@contextlib.contextmanager
def netx_file(graph_or_path):
    """A netx file for a graph (written to a temporary file, removed afterwards) or the path given."""
    if isinstance(graph_or_path, Graph):
        fd, tmp = tempfile.mkstemp(suffix=".net")
        os.close(fd)
        try:
            write_netx(graph_or_path, tmp)
            yield tmp
        finally:
            Path(tmp).unlink(missing_ok=True)
    else:
        yield str(graph_or_path)


def _import_netx():
    """Import lava-dl's netx with stdout silenced: importing lava.lib.dl prints a warning about an
    optional dataset toolbox to stdout, which would corrupt ``--json`` output."""
    import contextlib
    import io as _io

    with contextlib.redirect_stdout(_io.StringIO()):
        from lava.lib.dl import netx
    return netx


def netx_network(net_path: str | os.PathLike):
    """``netx.hdf5.Network`` for a netx file, each dense layer's synapse as the file's ``synapse``
    key says (Dense when absent): ``sparse_fc_layer=True`` when every dense layer is sparse (netx's
    switch, all layers or none, docs/loihi2.md §7.2), else netx's ``create_dense`` per layer."""
    netx = _import_netx()
    kinds = netx_synapses(net_path)
    if "sparse" not in kinds:
        return netx.hdf5.Network(net_config=str(net_path))
    if all(k == "sparse" for k in kinds):
        return netx.hdf5.Network(net_config=str(net_path), sparse_fc_layer=True)
    net = _per_layer_network(netx)(net_config=str(net_path))
    # Lava finds a process's model by its class (netx's PyNetworkModel implements Network,
    # hdf5.py:692-693); the subclass only changes how the layers are built, so the built network is
    # a plain Network
    net.__class__ = netx.hdf5.Network
    return net


@functools.cache
def _per_layer_network(netx):
    """A ``netx.hdf5.Network`` whose ``create_dense`` (a static method ``_create`` calls as
    ``self.create_dense(..., sparse_synapse=self.sparse_fc_layer)``, hdf5.py:643-650) takes
    ``sparse_synapse`` from the layer's own ``synapse`` key instead."""
    base = netx.hdf5.Network

    class PerLayerSynapseNetwork(base):
        @staticmethod
        def create_dense(layer_config, *args, **kwargs):
            group = layer_config.f
            key = np.asarray(group[SYNAPSE_KEY][()]).reshape(-1)[0] if SYNAPSE_KEY in group else b""
            kwargs["sparse_synapse"] = bytes(key).rstrip(b"\0") == b"sparse"
            return base.create_dense(layer_config, *args, **kwargs)

    return PerLayerSynapseNetwork


def _run_one_netx(net_path: str, sample: np.ndarray) -> np.ndarray:
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc import io

    t = sample.shape[-1]
    net = netx_network(net_path)
    # an input layer with a neuron: net.inp is not wired to it, the source drives the neuron's a_in
    # as lava-dl's own tests do (docs/loihi2.md §1.7)
    in_port = net.in_layer.neuron.a_in if type(net.in_layer).__name__ == "Input" else net.inp
    # a (C, H, W) input whose first layer is a flatten: netx's net.inp is the dense layer's (C*H*W,)
    # (a neuron-less input layer builds no block, §1.3), fed in PyTorch's C.H.W order
    flat = len(in_port.shape) == 1 and sample.ndim == 4
    data = sample.reshape(-1, t) if flat else _to_lava(sample)
    src = io.source.RingBuffer(data=data.astype(np.int32))
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=t)
    src.s_out.connect(in_port)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=t), run_cfg=_run_cfg())
        y = sink.data.get()
    finally:
        net.stop()
    return _from_lava(np.asarray(y))


def run_lava(graph_or_path: Graph | str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run in Lava, one sample per fresh network; ``x`` ``(N, *input_shape, T)`` -> ``(N,
    *out_shape, T)`` int8 (int32 when the last layer sends graded spikes: a sigma-delta net's
    payloads as the sink records them, docs/loihi2.md §2.7; its input may then be graded too).

    A sequential graph or a netx file runs through ``netx.hdf5.Network`` (a file with ``pool`` layers,
    which netx cannot load, as the graph read from it); a graph with ``Add`` nodes is built from Lava
    Dense/Conv/LIF processes connected by ports (:func:`build_processes`).
    """
    from snnc.sim import check_input, graded_output

    graph = graph_or_path if isinstance(graph_or_path, Graph) else read_netx(graph_or_path)
    if any(isinstance(n, Pool) for n in graph.nodes.values()):
        # a lava-dl file's 'pool' layer does not load in netx (NotImplementedError, docs/loihi2.md
        # §1.3): run the graph read from it, which write_netx writes with each pool as the grouped
        # conv that computes it (§1.6)
        graph_or_path = graph
    s = check_input(graph, x)
    outs = []
    if (
        isinstance(graph_or_path, Graph)
        and not graph.is_sequential()
        or any(isinstance(n, Add) for n in graph.nodes.values())
    ):
        for sample in s:
            outs.append(_run_one_processes(graph, sample))
    else:
        with netx_file(graph_or_path) as net_path:
            for sample in s:
                outs.append(_run_one_netx(net_path, sample))
    return np.stack(outs).astype(np.int32 if graded_output(graph) else np.int8)


def compare_with_lava(graph_or_path: Graph | str | os.PathLike, x: np.ndarray) -> dict:
    """Run ``x`` ``(N, *input_shape, T)`` through Lava and through ``sim``; count mismatched spikes.

    For ``make demo`` and users who want the check in one call: ``{"samples", "mismatches",
    "lava_spikes", "sim_spikes"}`` (``mismatches`` must be 0).
    """
    from snnc.sim import simulate

    graph = graph_or_path if isinstance(graph_or_path, Graph) else read_netx(graph_or_path)
    ours = simulate(graph, x).output
    theirs = run_lava(graph_or_path, x)
    return {
        "samples": int(ours.shape[0]),
        "mismatches": int(np.sum(ours != theirs)),
        "lava_spikes": int(theirs.sum(dtype=np.int64)),
        "sim_spikes": int(ours.sum(dtype=np.int64)),
    }


# -- direct process builder (graphs netx cannot express)
# ---------------------------------------------
def build_processes(graph: Graph) -> tuple[dict, object, object]:
    """Build Lava processes for ``graph`` (fixed): Dense/Sparse/Conv synapses, LIF neurons, ports
    connected (Sparse for a dense layer with ``node.meta["synapse"] == "sparse"``).

    Returns ``(procs, in_port, out_port)``: ``in_port`` list of synapse InPorts fed by the input
    spikes, ``out_port`` the last neuron's OutPort. Shapes on the Lava side are ``(W, H, C)`` /
    ``(F,)``.
    """
    if graph.precision != "fixed":
        raise SnncError("Lava runs fixed-point graphs only; run quantize (snnc compile) first")
    builder = _ProcessBuilder(graph)
    for node in graph.nodes.values():
        builder.visit(node)
    return builder.procs, builder.in_ports, _resolve(builder.outs, graph.output.name)


def _lava_shape(s) -> tuple[int, ...]:
    return tuple(s[::-1])


class _ProcessBuilder(NodeVisitor):
    """One visit per node, in graph order: its Lava processes go to ``procs``, the port that carries
    its spikes (or, synapse-only, its current) to ``outs``; ``Flatten``/``Output`` are
    ``("flat" | "same", source)`` references resolved when connecting."""

    backend = "Lava process builder"

    def __init__(self, graph: Graph) -> None:
        from lava.proc.conv.process import Conv as LavaConv
        from lava.proc.dense.process import Dense as LavaDense
        from lava.proc.lif.process import LIF
        from lava.proc.sdn.process import ActivationMode, Delta, Sigma
        from lava.proc.sdn.process import SigmaDelta as LavaSigmaDelta
        from lava.proc.sparse.process import Sparse as LavaSparse

        self.lava = {"conv": LavaConv, "dense": LavaDense, "sparse": LavaSparse, "lif": LIF}
        self.sdn = {"delta": Delta, "sigma_delta": LavaSigmaDelta, "sigma": Sigma, "modes": ActivationMode}
        self.graph = graph
        self.shapes = graph.shapes()
        self.procs: dict = {}
        self.outs: dict = {}  # node name -> OutPort that carries its spikes (or current)
        self.in_ports: list = []

    def visit_input(self, node: Input) -> None:
        lif = self._lif(node)
        if lif is None:
            self.outs[node.name] = None
            return
        self.in_ports.append((lif.a_in, False))  # the source drives the input neuron's a_in (§1.7)
        self.outs[node.name] = lif.s_out

    def visit_flatten(self, node: Flatten) -> None:
        self.outs[node.name] = ("flat", self.graph.predecessors(node.name)[0])

    def visit_output(self, node: Output) -> None:
        self.outs[node.name] = ("same", self.graph.predecessors(node.name)[0])

    def visit_add(self, node: Add) -> None:
        lif = self._lif(node)
        for p in self.graph.predecessors(node.name):
            self.procs[p].a_out.connect(lif.a_in)
        self.outs[node.name] = lif.s_out

    def visit_dense(self, node: Dense) -> None:
        lif = self._lif(node)
        # give Lava exactly what netx would (§1.5), so its own clip/truncate keeps every bit
        stored, nwb, exp = netx_optimize_weight_bits(effective_int(node, "dense"))
        weights = stored.astype(np.int32)
        if node.meta.get("synapse") == "sparse":  # as netx's sparse_synapse does (blocks/process.py:150-153)
            from scipy.sparse import csr_matrix

            bits = self._bits(node)
            syn = self.lava["sparse"](
                weights=csr_matrix(weights), weight_exp=exp, num_weight_bits=nwb, num_message_bits=bits
            )
        else:
            syn = self.lava["dense"](
                weights=weights, weight_exp=exp, num_weight_bits=nwb, num_message_bits=self._bits(node)
            )
        self._synapse(node, syn, lif)

    def visit_conv(self, node: Conv) -> None:
        lif = self._lif(node)
        w = effective_int(node, "conv")
        self._synapse(node, self._conv(node, w, node.stride, node.padding, node.dilation, node.groups), lif)

    def visit_pool(self, node: Pool) -> None:
        lif = self._lif(node)
        c = self.shapes[self.graph.predecessors(node.name)[0]][0]
        w = node.conv_weight(c)
        self._synapse(node, self._conv(node, w, node.stride, (0, 0), (1, 1), c), lif)

    def _bits(self, node) -> int:
        """The synapse's ``num_message_bits``: 16 (graded, netx's SDNN default) where the node it
        reads sends graded spikes (docs/loihi2.md §2.7), else 0 (binary)."""
        src = self.graph.predecessors(node.name)[0]
        while not hasattr(self.graph.nodes[src], "neuron") and self.graph.predecessors(src):
            src = self.graph.predecessors(src)[0]  # through Flatten
        return 16 if is_graded(getattr(self.graph.nodes[src], "neuron", None)) else 0

    def _lif(self, node):
        """The LIF (or sigma-delta) process of ``node``'s neuron (``None`` for a synapse-only node)."""
        neuron = node.neuron
        if neuron is None:
            return None
        shape = self.shapes[node.name]
        if neuron.bias is None:
            bias = np.zeros(shape)
        else:
            per_channel = np.asarray(neuron.bias).reshape((-1,) + (1,) * (len(shape) - 1))
            bias = np.broadcast_to(per_channel, shape)
        if isinstance(neuron, SigmaDelta):
            proc = self._sdnn(neuron, shape, bias)
            self.procs[node.name + ".neuron"] = proc
            return proc
        lif = self.lava["lif"](
            shape=_lava_shape(shape),
            du=int(neuron.current_decay) - 1,
            dv=int(neuron.voltage_decay),
            vth=int(neuron.threshold),
            bias_mant=np.ascontiguousarray(bias.T).astype(np.int32),
            bias_exp=BIAS_EXP,
        )
        self.procs[node.name + ".neuron"] = lif
        return lif

    def _sdnn(self, neuron: SigmaDelta, shape, bias: np.ndarray):
        """Lava's ``Delta`` / ``SigmaDelta`` / ``Sigma`` for a sigma-delta population, with the
        parameters netx gives them (docs/loihi2.md §1.4, §2.7)."""
        common = {"shape": _lava_shape(shape)}
        if neuron.mode == "sigma":
            return self.sdn["sigma"](**common)
        exps = {"spike_exp": neuron.spike_exp, "state_exp": neuron.state_exp, "cum_error": neuron.cum_error}
        if neuron.mode == "delta":
            return self.sdn["delta"](vth=int(neuron.threshold), **exps, **common)
        mode = self.sdn["modes"].RELU if neuron.activation == "relu" else self.sdn["modes"].UNIT
        return self.sdn["sigma_delta"](
            vth=int(neuron.threshold),
            bias=np.ascontiguousarray(bias.T).astype(np.int32),
            act_mode=mode,
            **exps,
            **common,
        )

    def _conv(self, node, w: np.ndarray, stride, pad, dil, groups):
        src_shape = self.shapes[self.graph.predecessors(node.name)[0]]
        lw = w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32)  # netx's layout (§1.4)
        return self.lava["conv"](
            weight=lw,
            input_shape=_lava_shape(src_shape),
            padding=pad[::-1],
            stride=stride[::-1],
            dilation=dil[::-1],
            groups=groups,
            num_message_bits=self._bits(node),
        )

    def _synapse(self, node, syn, lif) -> None:
        """Register ``syn``, connect its input, and its output to ``lif`` when there is one."""
        name = node.name
        self.procs[name] = syn
        src = self.graph.predecessors(name)[0]
        _connect_input(self.graph, src, self.outs, syn.s_in, self.in_ports)
        if lif is not None:
            syn.a_out.connect(lif.a_in)
            self.outs[name] = lif.s_out
        else:
            self.outs[name] = syn.a_out


def _resolve(outs: dict, name: str):
    o = outs[name]
    while isinstance(o, tuple):
        o = outs[o[1]]
    return o


def _connect_input(graph: Graph, src: str, outs: dict, in_port, in_ports: list) -> None:
    chain = []
    o = outs[src]
    while isinstance(o, tuple):
        chain.append(o[0])
        o = outs[o[1]]
    if o is None:  # the graph input
        in_ports.append((in_port, "flat" in chain))
        return
    if "flat" in chain:
        o.transpose([2, 1, 0]).flatten().connect(in_port)  # WHC -> CHW then flatten, as netx (§1.3)
    else:
        o.connect(in_port)


def connect_source(src, in_ports: list, ndim: int) -> None:
    """Connect a RingBuffer source to the input synapses from :func:`build_processes`."""
    for port, flat in in_ports:
        if flat and ndim == 4:
            src.s_out.transpose([2, 1, 0]).flatten().connect(port)  # WHC -> CHW, as netx (§1.3)
        else:
            src.s_out.connect(port)


def _run_one_processes(graph: Graph, sample: np.ndarray) -> np.ndarray:
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc import io

    t = sample.shape[-1]
    procs, in_ports, last = build_processes(graph)
    data = _to_lava(sample).astype(np.int32)
    src = io.source.RingBuffer(data=data)
    connect_source(src, in_ports, data.ndim)
    sink = io.sink.RingBuffer(shape=last.shape, buffer=t)
    last.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=t), run_cfg=_run_cfg())
        y = sink.data.get()
    finally:
        src.stop()
    return _from_lava(np.asarray(y))
