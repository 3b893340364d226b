"""``snnc compile``: build directories, report.json, and one-line errors with no partial output."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from compile_helpers import masked_model
from helpers import assert_one_line_error, run_snnc

from snnc import checkpoint
from snnc.compile.report import validate
from snnc.nn.zoo import build


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A masked convnet model file (digits-sized input) with data settings."""
    torch.manual_seed(0)
    src = masked_model("convnet", seed=7)
    model = build("convnet", {"input_shape": [1, 8, 8], "num_classes": 10})
    model.load_state_dict({k: v.float() for k, v in src.state_dict().items()})
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    checkpoint.save_model(path, model, {"dataset": "digits", "steps": 8, "encoding": "rate"}, {"seed": 0})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("target,artifact", [("loihi2", "network.net"), ("nir", "network.nir")])
def test_compile_writes_build_dir(model_file, tmp_path, target, artifact):
    out = tmp_path / "build"
    proc = run_snnc(
        "compile",
        model_file,
        "--target",
        target,
        "-o",
        out,
        "--dataset",
        "digits",
        "--limit",
        "40",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    files = {p.name for p in out.iterdir()}
    assert {"report.json", "graph.json", "graph.safetensors", artifact} <= files
    report = json.loads((out / "report.json").read_text())
    validate(report)
    assert report["data"] == {"dataset": "digits", "steps": 8, "encoding": "rate"}
    assert report["accuracy"]["samples"] == 40
    assert report["totals"]["channels_after"] < report["totals"]["channels_before"]
    assert json.loads(proc.stdout)["target"] == target
    graph = json.loads((out / "graph.json").read_text())
    assert graph["precision"] == ("float" if target == "nir" else "fixed") and graph["edges"]
    # no temp directories left beside the build dir
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


@pytest.mark.slow
def test_compile_accepts_netx(tmp_path):
    from snnc import ir
    from snnc.targets.loihi2 import write_netx

    w = 2 * np.arange(-6, 6).reshape(3, 4)
    w[1] = 0
    nodes = [
        ir.Input("input", shape=(4,)),
        ir.Dense("a", weight=w, neuron=ir.CubaLIF(10, 1024, 1024)),
        ir.Dense("b", weight=np.full((2, 3), 4), neuron=ir.CubaLIF(10, 1024, 1024)),
        ir.Output("output"),
    ]
    net = tmp_path / "in.net"
    write_netx(ir.Graph.from_list(nodes, {"precision": "fixed"}), net)
    proc = run_snnc("compile", net, "--target", "loihi2", "-o", tmp_path / "b", "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["source"]["kind"] == "netx"
    assert report["layers"][0]["channels_after"] == 2


@pytest.mark.parametrize(
    "case",
    [
        "not_model",
        "missing",
        "unknown_target",
        "parent_is_file",
        "out_is_file",
        "too_few_cores",
        "bad_calib",
    ],
)
def test_bad_input_one_line_no_partial_output(model_file, tmp_path, case):
    out = tmp_path / "build"
    args = [model_file, "--target", "loihi2", "-o", out]
    needle = ""
    if case == "not_model":
        bad = tmp_path / "notes.txt"
        bad.write_text("hello")
        args[0], needle = bad, "notes.txt"
    elif case == "missing":
        args[0], needle = tmp_path / "nope.pt", "does not exist"
    elif case == "unknown_target":
        args[2], needle = "tpu", "unknown target"
    elif case == "parent_is_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "build"
        args[4], needle = out, "does not exist"
    elif case == "out_is_file":
        out.write_text("x")
        needle = "not a directory"
    elif case == "too_few_cores":
        args += ["--cores", "1"]
        needle = "neurocores"
    elif case == "bad_calib":
        args += ["--calib", "0", "--dataset", "digits"]
        needle = "--calib"
    if case == "not_model":  # one case as a real process, the rest in-process (same code path)
        proc = run_snnc("compile", *args)
    else:
        from click.testing import CliRunner

        from snnc.cli import cli

        res = CliRunner().invoke(cli, ["compile", *map(str, args)])
        proc = subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)
    assert_one_line_error(proc, needle)
    if case == "out_is_file":
        assert out.read_text() == "x"
    else:
        assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []
