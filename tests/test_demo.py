"""``make demo`` (``python -m snnc.demo``) end to end at toy sizes: every stage runs, the table reports
them, sim and Lava agree spike for spike, and the files it names exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    small = ["--mnist-train", "300", "--epochs", "1", "--prune-train", "200", "--prune-epochs", "1"]
    small += ["--eval-limit", "100", "--test-limit", "100"]
    env = {**os.environ, "COLUMNS": "200", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "snnc.demo", "--out", str(out), *small],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for stage in ("mlp / digits", "convnet / MNIST", "SCA pruning", "compile (loihi2)", "snnc check"):
        assert stage in text
    assert "0 Loihi 2 rule violations" in text
    assert "0 mismatched spikes" in text  # sim vs Lava on the demo's three samples
    assert "on 100 MNIST test samples" in text  # the deployed accuracy, as asked
    for name in (
        "mlp_digits.pt",
        "convnet_mnist.pt",
        "convnet_sca.pt",
        "convnet_sca.json",
        "build/network.net",
    ):
        assert (out / name).is_file(), name


def test_train_test_limit_reports_the_first_samples_only():
    """``--test-limit`` (the demo spends its time training, not evaluating): the test accuracy is
    that of the first N test samples, as an independent evaluation of the returned model gives."""
    from snnc import data as D
    from snnc.train import TrainConfig, evaluate, train

    model, result = train(TrainConfig(dataset="digits", arch="mlp", epochs=1, train_limit=200, test_limit=53))
    assert result["test_samples"] == 53
    x, y = D.load("digits").test
    assert result["test_accuracy"] == evaluate(model, x[:53], y[:53], result["steps"], result["encoding"])
    assert len(y) > 53
