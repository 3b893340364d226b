"""`snnc simulate` / `snnc evaluate`: results, JSON, one-line refusals of bad input, no Y file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from graph_helpers import digits_convnet, random_convnet, random_mlp, spikes

from snnc.cli import cli
from snnc.sim import simulate
from snnc.targets.loihi2 import write_netx
from snnc.targets.registry import TARGETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import assert_one_line_error, run_snnc  # noqa: E402


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res, *needles):
    assert res.exit_code != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


@pytest.fixture
def netx_file(tmp_path, rng):
    g = random_convnet(rng)
    path = tmp_path / "network.net"
    write_netx(g, path)
    return path, g


def test_simulate_writes_y_and_json(tmp_path, netx_file, rng):
    path, g = netx_file
    x = spikes(rng, g, 3, 15)
    np.save(tmp_path / "x.npy", x)
    res = invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    want = simulate(g, x)
    y = np.load(tmp_path / "y.npy", allow_pickle=False)
    assert y.shape == (3, 5, 15) and y.dtype == np.int8
    np.testing.assert_array_equal(y, want.output)
    assert [la["spikes"] for la in out["layers"]] == list(want.spikes.values())
    assert out["synops"] == sum(want.synops.values())
    assert out["energy_per_inference_j_loihi1_figures"] > 0
    assert out["latency_per_inference_s_loihi1_figures"] > 0
    res = invoke(
        "simulate",
        path,
        "--input",
        tmp_path / "x.npy",
        "--output",
        tmp_path / "y2.npy",
        "--backend",
        "onnx",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["mismatches_vs_sim"] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y2.npy"), want.output)


def _bad_inputs(tmp_path: Path) -> dict:
    d = {
        "rank": np.zeros((2, 2, 9, 9), np.int8),
        "shape": np.zeros((2, 2, 9, 8, 5), np.int8),
        "float": np.full((2, 2, 9, 9, 5), 0.5, np.float32),
        "complex": np.zeros((2, 2, 9, 9, 5), np.complex64),
        "values": np.full((2, 2, 9, 9, 5), 3, np.int8),
    }
    paths = {}
    for k, v in d.items():
        paths[k] = tmp_path / f"{k}.npy"
        np.save(paths[k], v)
    paths["object"] = tmp_path / "object.npy"
    np.save(paths["object"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    paths["garbage"] = tmp_path / "garbage.npy"
    paths["garbage"].write_bytes(b"\x93NUMPY garbage")
    return paths


@pytest.mark.parametrize(
    "case, needles",
    [
        ("rank", ["rank"]),
        ("shape", ["shape"]),
        ("float", ["non-integer"]),
        ("complex", ["dtype"]),
        ("values", ["non-binary"]),
        ("object", ["objects"]),
        ("garbage", ["not a valid .npy"]),
        ("missing", ["does not exist"]),
    ],
)
def test_simulate_rejects_bad_x_without_writing_y(tmp_path, netx_file, case, needles):
    path, _ = netx_file
    xp = _bad_inputs(tmp_path).get(case, tmp_path / "missing.npy")
    y = tmp_path / "y.npy"
    res = invoke("simulate", path, "--input", xp, "--output", y)
    one_line(res, *needles)
    assert res.exit_code == 2
    assert not y.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".y.npy")]


def test_simulate_accepts_exact_float_and_bool_spikes(tmp_path, netx_file, rng):
    """lava-dl's ground-truth arrays hold spikes as float 0.0/1.0: they run as the integers do."""
    path, g = netx_file
    x = spikes(rng, g, 2, 8)
    want = simulate(g, x).output
    for dtype in (np.float32, np.float64, np.bool_):
        np.save(tmp_path / "x.npy", x.astype(dtype))
        res = invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
        assert res.exit_code == 0, res.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)


def test_simulate_rejects_missing_or_corrupt_net(tmp_path, rng):
    g = random_mlp(rng)
    np.save(tmp_path / "x.npy", spikes(rng, g, 1, 5))
    y = tmp_path / "y.npy"
    corrupt = tmp_path / "corrupt.net"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # HDF5 signature, broken body
    for net, needle in (
        (tmp_path / "missing.net", "does not exist"),
        (corrupt, "not an HDF5"),
        (tmp_path, "neither"),
    ):
        res = invoke("simulate", net, "--input", tmp_path / "x.npy", "--output", y)
        one_line(res, needle)
        assert not y.exists()


def test_simulate_as_a_real_process(tmp_path, netx_file, rng):
    path, g = netx_file
    x = spikes(rng, g, 2, 8)
    np.save(tmp_path / "x.npy", x)
    proc = run_snnc(
        "simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(g, x).output)
    np.save(tmp_path / "bad.npy", x[:, :1])
    proc = run_snnc("simulate", path, "--input", tmp_path / "bad.npy", "--output", tmp_path / "z.npy")
    assert_one_line_error(proc, "shape")
    assert not (tmp_path / "z.npy").exists()


def test_evaluate_build_dir_uses_report_data(tmp_path, rng):
    # A fixed net on digits' (1, 8, 8) input; accuracy must equal the hand-made count over the same
    # spikes.
    from snnc import data as D

    g = digits_convnet(rng, 4)
    build = tmp_path / "build"
    build.mkdir()
    TARGETS.get("sim").emit(g, build)
    (build / "report.json").write_text(
        json.dumps({"data": {"dataset": "digits", "steps": 12, "encoding": "rate"}})
    )
    res = invoke("evaluate", build, "--limit", 50, "--seed", 3, "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["dataset"], out["steps"], out["encoding"], out["samples"]) == (
        "digits",
        12,
        "rate",
        50,
    )
    x, y = D.load("digits").test
    gen = torch.Generator()
    gen.manual_seed(3)
    s = D.encode(torch.from_numpy(x[:50]), 12, "rate", generator=gen).numpy().astype(np.uint8)
    want = float((simulate(g, s).output.sum(-1).argmax(1) == y[:50]).mean())
    assert out["accuracy"] == pytest.approx(want)
    res = invoke("evaluate", build, "--backend", "torch")
    one_line(res, "model file")


def test_evaluate_rejects_wrong_dataset_shape(tmp_path, rng):
    g = random_mlp(rng)
    write_netx(g, tmp_path / "n.net")
    res = invoke("evaluate", tmp_path / "n.net", "--dataset", "digits")
    one_line(res, "expects input")


@pytest.mark.slow
def test_evaluate_model_file_on_torch_and_compiled_sim(digits_mlp):
    path, result = digits_mlp
    res = invoke("evaluate", path, "--backend", "torch", "--json")
    assert res.exit_code == 0, res.stderr
    torch_out = json.loads(res.stdout)
    # same seed, same encoding stream as training's own test evaluation
    assert torch_out["accuracy"] == pytest.approx(result["test_accuracy"])
    res = invoke("evaluate", path, "--backend", "sim", "--json")
    assert res.exit_code == 0, res.stderr
    sim_out = json.loads(res.stdout)
    assert sim_out["samples"] == torch_out["samples"] and sim_out["synops_per_sample"] > 0
    # the compiled fixed-point net stays close to the float model
    assert abs(sim_out["accuracy"] - torch_out["accuracy"]) < 0.05


def test_inspect_learns_netx_files(tmp_path, netx_file):
    path, g = netx_file
    res = invoke("inspect", path, "--json")
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["type"] == "netx-hdf5" and info["input_shape"] == list(g.input.shape)
    assert [la["kind"] for la in info["layers"]] == ["conv", "conv", "conv", "flatten", "dense"]
    assert info["layers"][-1]["neuron"]["threshold"] == g.nodes["fc"].neuron.threshold
    build = tmp_path / "b"
    build.mkdir()
    TARGETS.get("loihi2").emit(g, build)
    res = invoke("inspect", build)
    assert res.exit_code == 0 and "netx network" in res.stdout
