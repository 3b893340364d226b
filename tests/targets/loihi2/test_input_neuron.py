"""netx input layers with a neuron (lava-dl's tiny.net, PilotNet LIF, the bootstrap MNIST net):
the input drives the neuron's ``a_in`` directly, as lava-dl's tests do (docs/loihi2.md §1.7). Files
are built here with h5py; the reference is netx.hdf5.Network itself in Lava."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from snnc.cli import cli
from snnc.ir import Graph
from snnc.ir.serialize import load_graph, save_graph
from snnc.sim import simulate
from snnc.targets.loihi2 import read_netx, run_lava, write_netx

# the input neuron: slow current decay, threshold 64 (two close spikes make it fire)
IN_NEURON = {
    "neuron/type": "LOIHI",
    "neuron/iDecay": 1000,
    "neuron/vDecay": 500,
    "neuron/vThMant": 1,
    "neuron/refDelay": 1,
}
CUBA = {"neuron/type": "CUBA", "neuron/iDecay": 1024, "neuron/vDecay": 512, "neuron/vThMant": 80}
CONV = {"padding": [1, 1], "dilation": [1, 1], "stride": [1, 1], "groups": 1}


def _layer(f, i, kind, **data):
    g = f.create_group(f"layer/{i}")
    g.create_dataset("type", (1,), "S10", [kind.encode()])
    for k, v in data.items():
        g.create_dataset(k, data=v)


def _dense_net(path, rng):
    with h5py.File(path, "w") as f:
        # 'weight'/'bias' of an input layer: netx's unused transform (tiny.net has 36 and 34)
        _layer(f, 0, "input", shape=[6], weight=36.0, bias=34.0, **IN_NEURON)
        _layer(f, 1, "dense", weight=2.0 * rng.integers(-20, 80, (5, 6)), shape=[5], **CUBA)
        _layer(f, 2, "dense", weight=2.0 * rng.integers(-20, 80, (3, 5)), shape=[3], **CUBA)
    return path


def _conv_net(path, rng):
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", shape=[2, 5, 5], **IN_NEURON)
        w = 2.0 * rng.integers(-10, 40, (3, 2, 3, 3))
        _layer(f, 1, "conv", weight=w, shape=[3, 5, 5], **CONV, **CUBA)
        _layer(f, 2, "flatten", shape=[75, 1, 1])
        _layer(f, 3, "dense", weight=2.0 * rng.integers(-10, 40, (4, 75)), shape=[4], **CUBA)
    return path


NETS = {"dense": (_dense_net, (6,)), "conv": (_conv_net, (2, 5, 5))}


@pytest.mark.parametrize("kind", sorted(NETS))
def test_input_neuron_sim_equals_netx_in_lava(tmp_path, kind):
    rng = np.random.default_rng(7)
    make, shape = NETS[kind]
    path = make(tmp_path / f"{kind}.net", rng)
    graph = read_netx(path)
    assert graph.input.neuron is not None and graph.input.neuron.bias is None
    x = (rng.random((2, *shape, 16)) < 0.4).astype(np.int8)
    rec = simulate(graph, x, record=True)
    # every neuron layer fires (the input population included): the comparison means something
    assert set(rec.spikes) >= {"input"} and all(v > 0 for v in rec.spikes.values()), rec.spikes
    # and it is not the input passed through: some input spikes do not make the neuron fire
    assert not np.array_equal(rec.layers["input"], x)
    lava = run_lava(path, x)  # netx.hdf5.Network, the source on net.in_layer.neuron.a_in
    np.testing.assert_array_equal(lava, rec.output)
    if kind == "conv":  # the direct process builder drives its input LIF the same way
        np.testing.assert_array_equal(run_lava(graph, x), rec.output)


def test_input_neuron_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    graph = read_netx(_dense_net(tmp_path / "a.net", rng))
    write_netx(graph, tmp_path / "b.net")
    again = read_netx(tmp_path / "b.net")
    assert again.input.neuron == graph.input.neuron
    with h5py.File(tmp_path / "b.net") as f:  # written as netx reads it: transform kept, no bias key
        assert float(f["layer/0/weight"][()]) == 36.0 and float(f["layer/0/bias"][()]) == 34.0
        assert int(f["layer/0/neuron/iDecay"][()]) == 1000 and int(f["layer/0/neuron/vThMant"][()]) == 1
    save_graph(graph, tmp_path / "g.safetensors")
    loaded = load_graph(tmp_path / "g.safetensors")
    assert isinstance(loaded, Graph) and loaded.input.neuron == graph.input.neuron
    x = (rng.random((3, 6, 12)) < 0.5).astype(np.int8)
    want = simulate(graph, x, record=True)
    for g in (again, loaded):
        got = simulate(g, x, record=True)
        np.testing.assert_array_equal(got.output, want.output)
        np.testing.assert_array_equal(got.layers["input"], want.layers["input"])


def test_float_exporters_refuse_an_input_neuron_in_one_line(tmp_path):
    """NIR's Input and the ONNX step model hold no input dynamics: refused, not silently dropped."""
    from snnc.errors import SnncError
    from snnc.targets import TARGETS

    graph = read_netx(_dense_net(tmp_path / "a.net", np.random.default_rng(1)))
    for name in ("nir", "onnx"):
        out = tmp_path / name
        out.mkdir()
        with pytest.raises(SnncError, match="input"):
            TARGETS.get(name).emit(graph, out)


def test_snnc_simulate_on_input_neuron_file(tmp_path):
    rng = np.random.default_rng(2)
    path = _conv_net(tmp_path / "c.net", rng)
    x = (rng.random((2, 2, 5, 5, 10)) < 0.4).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    res = CliRunner().invoke(
        cli, ["simulate", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    )
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(read_netx(path), x).output)


def test_emitted_runner_drives_the_input_neuron(tmp_path):
    import subprocess
    import sys

    from snnc.targets import TARGETS

    rng = np.random.default_rng(4)
    graph = read_netx(_conv_net(tmp_path / "c.net", rng))
    out = tmp_path / "build"
    out.mkdir()
    files = TARGETS.get("loihi2").emit(graph, out)
    assert "run_loihi2.py" in files and "network.net" in files
    x = (rng.random((1, 2, 5, 5, 12)) < 0.4).astype(np.int8)
    np.save(out / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "run_loihi2.py", "--input", "x.npy", "--output", "y.npy"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = simulate(graph, x).output
    assert want.sum() > 0
    np.testing.assert_array_equal(np.load(out / "y.npy"), want)
