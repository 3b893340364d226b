#!/usr/bin/env python3
"""Run this build on Lava: Loihi 2 hardware when Intel's Loihi stack is installed, else the CPU
simulator.

Usage: python run_loihi2.py --input X.npy --output Y.npy
X: (N, *input_shape, T) 0/1 spikes, input_shape in PyTorch order (C, H, W) or (F,); graded int32
values when the input layer's neuron is sigma-delta (SDNN: they drive its Delta's a_in).
Y: (N, *output_shape, T) spikes of the last layer as recorded at net.out (each synaptic layer adds
one step of latency): int8, or int32 payloads when the last layer is sigma-delta.
Needs lava-nc 0.10 and lava-dl 0.6 (netx); a graph with residual Add nodes (no network.net) also
needs snnc installed, whose process builder wires Lava Dense/Sparse/Conv/LIF (and sigma-delta)
processes.

Sparse synapses: a dense layer whose ``synapse`` key is ``sparse`` (snnc's choice where pruning made
that smaller) runs as a Lava ``Sparse`` process. netx's switch for it, ``sparse_fc_layer=True``,
applies to every dense layer, so it is passed when all are sparse; a file mixing both has each layer
built by netx's own ``create_dense`` with the layer's choice.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_config():
    try:  # Intel's Loihi stack (lava-loihi) provides the hardware compiler
        import lava.magma.compiler.subcompilers.nc  # noqa: F401
        from lava.magma.core.run_configs import Loihi2HwCfg

        return Loihi2HwCfg()
    except ImportError:
        from lava.magma.core.run_configs import Loihi2SimCfg

        return Loihi2SimCfg(select_tag="fixed_pt")


def _sparse_layers(path):
    """Per dense layer, in file order: whether its ``synapse`` key says ``sparse``."""
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        for i in sorted(int(k) for k in f["layer"].keys()):
            g = f["layer"][str(i)]
            if bytes(np.asarray(g["type"][()]).reshape(-1)[0]).rstrip(b"\0") == b"dense":
                out.append(_marked_sparse(g))
    return out


def _sdnn_ends(path):
    """(input layer is SDNN, last layer is SDNN) for a netx file: graded input / graded output."""
    import h5py

    def sdnn(g):
        if "neuron" not in g or "type" not in g["neuron"]:
            return False
        v = np.asarray(g["neuron"]["type"][()]).reshape(-1)[0]
        return (v.decode() if isinstance(v, bytes) else str(v)).strip("\0 ") == "SDNN"

    with h5py.File(path, "r") as f:
        idx = sorted(int(k) for k in f["layer"].keys())
        return sdnn(f["layer"][str(idx[0])]), sdnn(f["layer"][str(idx[-1])])


def graded_ends():
    """(graded input, graded output) of this build."""
    if (HERE / "network.net").exists():
        return _sdnn_ends(HERE / "network.net")
    from snnc.ir import is_graded
    from snnc.ir.serialize import load_graph
    from snnc.sim import graded_output

    graph = load_graph(HERE / "graph.safetensors")
    return is_graded(graph.input.neuron), graded_output(graph)


def _marked_sparse(group):
    key = np.asarray(group["synapse"][()]).reshape(-1)[0] if "synapse" in group else b""
    return bytes(key).rstrip(b"\0") == b"sparse"


def netx_network(path):
    """netx's Network with each dense layer's synapse (Dense or Sparse) as the file says."""
    from lava.lib.dl import netx

    sparse = _sparse_layers(path)
    if not any(sparse):
        return netx.hdf5.Network(net_config=str(path))
    if all(sparse):
        return netx.hdf5.Network(net_config=str(path), sparse_fc_layer=True)

    class PerLayerSynapseNetwork(netx.hdf5.Network):
        @staticmethod
        def create_dense(layer_config, *args, **kwargs):
            kwargs["sparse_synapse"] = _marked_sparse(layer_config.f)
            return netx.hdf5.Network.create_dense(layer_config, *args, **kwargs)

    net = PerLayerSynapseNetwork(net_config=str(path))
    net.__class__ = netx.hdf5.Network  # Lava finds the model of a process by its class
    return net


def run_sample(sample):
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc import io

    steps = sample.shape[-1]
    data = sample.transpose(2, 1, 0, 3) if sample.ndim == 4 else sample  # CHW -> Lava WHC
    if (HERE / "network.net").exists():
        net = netx_network(HERE / "network.net")
        # an input layer with a neuron (netx Input block): net.inp is not wired to it; drive its a_in
        in_port = net.in_layer.neuron.a_in if type(net.in_layer).__name__ == "Input" else net.inp
        if len(in_port.shape) == 1 and sample.ndim == 4:  # input layer then flatten: C.H.W order
            data = sample.reshape(-1, steps)
        src = io.source.RingBuffer(data=data.astype(np.int32))
        sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
        src.s_out.connect(in_port)
        net.out.connect(sink.a_in)
        runner = net
    else:
        from snnc.ir.serialize import load_graph
        from snnc.targets.loihi2.lava import build_processes, connect_source

        procs, in_ports, last = build_processes(load_graph(HERE / "graph.safetensors"))
        src = io.source.RingBuffer(data=data.astype(np.int32))
        connect_source(src, in_ports, data.ndim)
        sink = io.sink.RingBuffer(shape=last.shape, buffer=steps)
        last.connect(sink.a_in)
        runner = src
    try:
        runner.run(condition=RunSteps(num_steps=steps), run_cfg=run_config())
        y = np.asarray(sink.data.get())
    finally:
        runner.stop()
    return y.transpose(2, 1, 0, 3) if y.ndim == 4 else y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    a = p.parse_args()
    graded_in, graded_out = graded_ends()
    x = read_spikes(a.input, graded_in)
    out = Path(a.output)
    if out.exists() and out.resolve() == Path(a.input).resolve():
        sys.exit("error: --output is the --input file; choose another output path")
    y = np.stack([run_sample(s) for s in x]).astype(np.int32 if graded_out else np.int8)
    tmp = out.with_name(f".{out.name}.tmp.npy")
    try:
        np.save(tmp, y)
        tmp.replace(out)  # whole or not at all
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{a.output}: {y.shape}, {int(np.count_nonzero(y))} spikes")


def read_spikes(path, graded=False):
    """X.npy as (N, *input_shape, T) 0/1 int8 (bool bytes normalised: any nonzero byte is a spike;
    integers 0/1; floats exactly 0.0/1.0), or with ``graded`` int32 integers; else exit with one
    line."""
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises many kinds on a damaged file
        sys.exit(f"error: cannot read {path} ({type(e).__name__}); save spikes with numpy.save")
    if not isinstance(x, np.ndarray) or x.ndim < 3 or x.shape[0] == 0 or x.shape[-1] == 0:
        sys.exit("error: input must be (N, *input_shape, T) 0/1 spikes with N, T >= 1")
    if x.dtype == np.bool_:
        return (x.view(np.uint8) != 0).astype(np.int8)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        sys.exit(f"error: input dtype {x.dtype} is not numeric; give 0/1 spikes")
    if graded:
        if not np.all(np.isfinite(x)) or np.any(x != np.round(x)) or x.min() < -(2**31) or x.max() >= 2**31:
            sys.exit("error: graded input must be int32 integers (N, *input_shape, T)")
        return x.astype(np.int32)
    if not np.all((x == 0) | (x == 1)):
        sys.exit("error: input must be (N, *input_shape, T) 0/1 spikes")
    return x.astype(np.int8)


if __name__ == "__main__":
    main()
