"""``snnc prune`` as a user runs it: bad input, kill -9 + --resume, torchrun with two gloo ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, assert_one_line_error, run_snnc

from snnc import checkpoint

FAST = ["--epochs", "3", "--train-limit", "256", "--batch-size", "32", "--quiet"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the machine is shared; threads would only contend


def test_unknown_method_one_line(base_convnet, tmp_path):
    proc = run_snnc(
        "prune", base_convnet[0], "--method", "magic", "--sparsity", "0.5", "-o", tmp_path / "p.pt"
    )
    assert_one_line_error(proc, "unknown pruning method", "sca")
    assert not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("value", ["1.0", "-0.1", "1.5"])
def test_sparsity_out_of_range_one_line(base_convnet, tmp_path, value):
    proc = run_snnc("prune", base_convnet[0], "--method", "sca", "--sparsity", value, "-o", tmp_path / "p.pt")
    assert_one_line_error(proc, "--sparsity must be in [0, 1)")
    assert proc.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_channel_method_on_mlp_one_line(tmp_path):
    from snnc.nn.zoo import build

    mlp = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10})
    path = tmp_path / "mlp.pt"
    checkpoint.save_model(path, mlp, {"dataset": "digits", "steps": 4, "encoding": "rate"})
    proc = run_snnc("prune", path, "--method", "criticality", "--sparsity", "0.5", "-o", tmp_path / "p.pt")
    assert_one_line_error(proc, "no conv layers", "relief")
    assert not (tmp_path / "p.pt").exists()


def test_prune_cli_writes_model_report_and_plots(base_convnet, tmp_path):
    out = tmp_path / "pruned.pt"
    proc = run_snnc(
        "prune",
        base_convnet[0],
        "--method",
        "l1",
        "--sparsity",
        "0.5",
        *FAST,
        "-o",
        out,
        "--plot",
        tmp_path / "plots",
        "--json",
        env=ONE_THREAD,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    report = json.loads((tmp_path / "pruned.json").read_text())
    assert result["channel_sparsity"] == report["channel_sparsity"] == 0.5
    model, header = checkpoint.load_model(out)
    assert header["meta"]["prune"]["method"] == "l1"
    assert header["data"]["steps"] == 16  # taken from the input model file
    kept = sum(int(b.channel_mask.sum()) for b in model.modules() if getattr(b, "kind", "") == "conv")
    assert kept == report["channels"]["kept"]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "curves.png",
        "channels.png",
        "activity.png",
    }
    for row in report["layers"]:
        assert row["synops_after"] <= row["synops_before"] + 1e-9 or row["kind"] == "dense"
    assert report["synops_after"] < report["synops_before"]
    assert not (tmp_path / "pruned.pt.ckpt").exists()


def _tensors(path):
    tensors, _ = checkpoint.read_tensors(path)
    return tensors


@pytest.mark.slow
def test_kill9_then_resume_equals_uninterrupted(base_convnet, tmp_path):
    args = [
        "prune",
        base_convnet[0],
        "--method",
        "sca",
        "--sparsity",
        "0.5",
        "--epochs",
        "5",
        "--train-limit",
        "384",
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--quiet",
    ]
    ref = run_snnc(*args, "-o", tmp_path / "a.pt", env=ONE_THREAD)
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "b.pt"
    ckpt = tmp_path / "b.pt.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "snnc", *map(str, args), "-o", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **ONE_THREAD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            epoch = json.loads(_header(ckpt))["epoch"]
            if epoch >= 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= epoch < 5 and not out.exists()

    resumed = run_snnc(*args, "-o", out, "--resume", "--json", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] is True
    a, b = _tensors(tmp_path / "a.pt"), _tensors(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(k.endswith("channel_mask") and bool((a[k] == 0).any()) for k in a)


def _header(path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["snnc"]


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_identical_masks(base_convnet, tmp_path):
    out = tmp_path / "ddp.pt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "snnc",
            "prune",
            str(base_convnet[0]),
            "--method",
            "criticality",
            "--sparsity",
            "0.5",
            "--epochs",
            "3",
            "--train-limit",
            "256",
            "--batch-size",
            "32",
            "--json",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "ddp.json").read_text())
    assert report["world_size"] == 2
    digests = report["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert report["channel_sparsity"] == 0.5


def test_prune_cli_cores_objective_uniform_no_regen(base_convnet, tmp_path):
    """--objective cores through the compiler's model, --allocation uniform, --no-regen: the report
    says so, counts no regeneration, keeps half of every layer, and its neurocores are what
    ``snnc compile`` reports for the same models."""
    out = tmp_path / "pruned.pt"
    args = ["--method", "sca", "--sparsity", "0.5", "--objective", "cores", "--allocation", "uniform"]
    proc = run_snnc("prune", base_convnet[0], *args, "--no-regen", *FAST, "-o", out, "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "pruned.json").read_text())
    assert report["objective"] == "cores" and report["allocation"] == "uniform"
    assert report["regeneration"]["total"] == 0 and report["config"]["regen_fraction"] == 0.0
    assert report["kept_per_layer"] == {"blocks.0": 12, "blocks.1": 24, "blocks.3": 32}
    for model, key in ((base_convnet[0], "neurocores_before"), (out, "neurocores_after")):
        build = tmp_path / f"build-{key}"
        comp = run_snnc("compile", model, "--target", "loihi2", "-o", build, "--quiet", env=ONE_THREAD)
        assert comp.returncode == 0, comp.stderr
        compiled = json.loads(next(build.glob("*.json")).read_text())
        assert report[key] == compiled["totals"]["cores"]
    assert all(r["cores_after"] is not None for r in report["layers"])


def test_allocation_refused_for_a_method_with_its_own_rule(base_convnet, tmp_path):
    proc = run_snnc(
        "prune",
        base_convnet[0],
        "--method",
        "relief",
        "--sparsity",
        "0.5",
        "--allocation",
        "global",
        "-o",
        tmp_path / "p.pt",
    )
    assert_one_line_error(proc, "allocates its pruning by its own rule", "--allocation")
    assert list(tmp_path.iterdir()) == []
