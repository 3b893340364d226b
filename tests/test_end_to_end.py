"""The whole path as a user runs it: train -> prune -> compile -> simulate (sim and Lava) -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import run_snnc

from snnc import data as D


@pytest.mark.slow
def test_train_prune_compile_simulate_evaluate(tmp_path):
    def ok(*args):
        proc = run_snnc(*args, "--json", timeout=900)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    model = tmp_path / "convnet.pt"
    trained = ok(
        "train",
        "--dataset",
        "digits",
        "--arch",
        "convnet",  # sca regrows by the BN scale's gradient: lenet has no batch-norm
        "--epochs",
        "4",
        "--seed",
        "1",
        "-o",
        model,
    )
    assert trained["test_accuracy"] > 0.3
    pruned = tmp_path / "pruned.pt"
    rep = ok(
        "prune",
        model,
        "--method",
        "sca",
        "--sparsity",
        "0.5",
        "--epochs",
        "1",
        "--seed",
        "1",
        "-o",
        pruned,
    )
    assert rep["summary"]["channels_kept"] <= rep["summary"]["channels_total"] // 2 + 1
    build = tmp_path / "build"
    comp = ok(
        "compile",
        pruned,
        "--target",
        "loihi2",
        "--dataset",
        "digits",
        "--limit",
        "100",
        "-o",
        build,
    )
    assert (build / "network.net").is_file() and (build / "report.json").is_file()
    # Dead channels physically removed: the compiled conv layers are smaller than the model's.
    report = json.loads((build / "report.json").read_text())
    assert report == {k: v for k, v in comp.items() if k in report}
    x = D.encode(D.load("digits").test[0][:2], 16, "rate", torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy().astype(np.int8))
    ok("simulate", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y_sim.npy")
    ok(
        "simulate",
        build,
        "--input",
        tmp_path / "x.npy",
        "--output",
        tmp_path / "y_lava.npy",
        "--backend",
        "lava",
    )
    y_sim, y_lava = np.load(tmp_path / "y_sim.npy"), np.load(tmp_path / "y_lava.npy")
    assert y_sim.shape == (2, 10, 16)
    np.testing.assert_array_equal(y_sim, y_lava)
    ev = ok("evaluate", build, "--dataset", "digits", "--backend", "sim", "--limit", "100")
    assert 0.0 <= ev["accuracy"] <= 1.0 and ev["samples"] == 100
