"""Every non-LFS trained net lava-dl ships, through snnc: ``inspect``, ``simulate`` (``sim`` and
``--backend lava``, bit-exact), the emitted runner ``run_loihi2.py`` and ``compile --target loihi2``.

A short random input: 0/1 spikes for the CUBA nets, integers for the sigma-delta (SDNN) ones. The
CUBA nets with an input neuron (tiny, PilotNet LIF, bootstrap MNIST) were trained for a graded drive
through that neuron's bias; binary spikes barely move it (docs/loihi2.md §1.7), so their comparison
records a layer whose state moves (``--record LAYER:v``). The measured status of every net and stage
is the table in docs/loihi2.md §9.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from lavadl import NETS
from snnc.cli import cli
from snnc.sim import simulate, trace_layers
from snnc.targets.loihi2 import read_netx
from snnc.targets.loihi2.target import RUNNER_FILE, runner_script

CUBA = ("tiny", "pilotnet_lif", "bootstrap_mnist", "netx_mnist", "oxford")
SDNN = ("netx_pilotnet_sdnn", "slayer_pilotnet")
#: what ``simulate --record`` writes for the Lava comparison: a layer whose voltage moves on random
#: spikes (the readout where it does)
RECORD = {
    "tiny": "conv2:v",
    "pilotnet_lif": "v",
    "bootstrap_mnist": "input:v",
    "netx_mnist": "v",
    "oxford": "dense0:v",
}
STEPS = 8
LAYERS = {  # layers in the file (input and flatten included), as lava-dl wrote them
    "tiny": 3,
    "pilotnet_lif": 11,
    "bootstrap_mnist": 4,
    "netx_mnist": 3,
    "oxford": 2,
    "netx_pilotnet_sdnn": 11,
    "slayer_pilotnet": 10,
}


def _param(name: str, *marks):
    return pytest.param(name, id=name, marks=marks)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _input(name: str, graph) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (1, *graph.input.shape, STEPS if name in CUBA else 4)
    if name in SDNN:
        return rng.integers(0, 256, shape).astype(np.int32)
    return (rng.random(shape) < 0.3).astype(np.int8)


# -- inspect -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NETS))
def test_inspect(name):
    """One row per layer of the file (``flatten`` included, the ``input`` layer not), the input shape
    as the file gives it (the input layer's ``shape``, else the first dense layer's fan-in)."""
    res = _invoke("inspect", NETS[name], "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    with h5py.File(NETS[name]) as f:
        layers = [f[f"layer/{i}"] for i in range(len(f["layer"]))]
        kinds = [bytes(np.asarray(g["type"][()]).reshape(-1)[0]).decode() for g in layers]
        if kinds[0] == "input":
            shape = [int(s) for s in layers[0]["shape"][()]]
        else:
            shape = [int(layers[0]["weight"].shape[1])]
    assert out["input_shape"] == shape
    assert [r["kind"] for r in out["layers"]] == [k for k in kinds if k != "input"]
    assert len(kinds) == LAYERS[name]


# -- sim vs Lava -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", [*(_param(n) for n in CUBA), *(_param(n) for n in SDNN)])
def test_simulate_sim_equals_lava(name, tmp_path):
    """One Lava run per net: the recorded layer's ``v`` (CUBA) or the output (SDNN) bit-exact."""
    graph = read_netx(NETS[name])
    x = _input(name, graph)
    np.save(tmp_path / "x.npy", x)
    record = ["--record", RECORD[name]] if name in RECORD else []
    args = ["simulate", NETS[name], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"]
    res = _invoke(*args, "--backend", "lava", "--json", *record)
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["mismatches_vs_sim"] == 0
    y = np.load(tmp_path / "y.npy")
    if record:
        layer = out["record"]["layer"]
        want = trace_layers(graph, x, layers=(layer,))[layer].v
        assert np.count_nonzero(want) > 0, "the recorded voltage must move for the check to mean something"
    else:
        want = simulate(graph, x).output
        assert np.count_nonzero(want) > 0, "the output must move for the check to mean something"
    np.testing.assert_array_equal(y, want)


# -- the emitted runner -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", [*(_param(n) for n in CUBA), *(_param(n) for n in SDNN)])
def test_runner_equals_sim(name, tmp_path, monkeypatch):
    """``run_loihi2.py`` beside the lava-dl file (as ``compile`` places it beside ``network.net``),
    its ``main()`` run in this process (a fresh interpreter would add ~15 s of imports per net)."""
    graph = read_netx(NETS[name])
    x = _input(name, graph)
    shutil.copy(NETS[name], tmp_path / "network.net")
    (tmp_path / RUNNER_FILE).write_text(runner_script())
    np.save(tmp_path / "x.npy", x)
    spec = importlib.util.spec_from_file_location(f"run_loihi2_{name}", tmp_path / RUNNER_FILE)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    monkeypatch.setattr(
        sys, "argv", [RUNNER_FILE, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    )
    runner.main()
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(graph, x).output)


# -- compile -----------------------------------------------------------------------------------------
#: neurocores Intel's compiler gives lava-dl's PilotNet SNN (DESIGN.md: snnc's map must not use more)
INTEL_PILOTNET_SNN_CORES = 74


@pytest.mark.parametrize(
    "name",
    [
        _param("tiny"),
        _param("netx_mnist"),
        _param("oxford"),
        _param("pilotnet_lif"),
        *(_param(n) for n in SDNN),
    ],
)
def test_compile_loihi2_fits_one_chip(name, tmp_path):
    res = _invoke("compile", NETS[name], "--target", "loihi2", "-o", tmp_path / "build", "--quiet")
    assert res.exit_code == 0, res.stderr
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert 1 <= report["totals"]["cores"] <= 128
    if name == "pilotnet_lif":
        assert report["totals"]["cores"] <= INTEL_PILOTNET_SNN_CORES
    graph = read_netx(tmp_path / "build" / "network.net")
    x = _input(name, graph)
    np.testing.assert_array_equal(simulate(graph, x).output, simulate(read_netx(NETS[name]), x).output)


def test_compile_bootstrap_mnist_deploys_its_readout_threshold_in_17_bits(tmp_path):
    """The bootstrap MNIST readout has no ``neuron`` group: netx gives it ``vThMant = 1 << 17``
    (§1.4), one above the chip's 17-bit field and above every 24-bit voltage (a non-spiking
    readout). ``compile`` deploys the largest legal mantissa, says so, and the build passes
    ``snnc check`` (a driven readout: tests/targets/loihi2/test_quantize.py)."""
    out = tmp_path / "build"
    res = _invoke("compile", NETS["bootstrap_mnist"], "--target", "loihi2", "-o", out, "--quiet")
    assert res.exit_code == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    (line,) = [n for n in report["notes"] if "threshold mantissa 131072" in n]
    assert "dense3" in line and "deployed as 131071" in line
    assert _invoke("check", out).exit_code == 0
    built, source = read_netx(out / "network.net"), read_netx(NETS["bootstrap_mnist"])
    assert built.nodes["dense3"].neuron.threshold == 131071
    x = _input("bootstrap_mnist", source)
    np.testing.assert_array_equal(simulate(built, x).output, simulate(source, x).output)
