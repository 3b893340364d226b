"""The train and inspect commands end to end, as a user runs them."""

from __future__ import annotations

import json

from helpers import assert_one_line_error, run_snnc


def test_train_json_and_inspect(tmp_path):
    out = tmp_path / "m.pt"
    proc = run_snnc(
        "train",
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--json",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["output"] == str(out) and 0 <= result["test_accuracy"] <= 1
    assert len(result["history"]) == 2
    proc = run_snnc("inspect", out, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["arch"]["name"] == "mlp" and info["data"]["dataset"] == "digits"
    assert info["accuracy"] == result["test_accuracy"]
    dense = [layer for layer in info["layers"] if layer["kind"] == "dense"]
    assert dense[0]["shape"] == [128] and dense[0]["params"] == 64 * 128 + 128


def test_usage_errors_exit_2(tmp_path):
    proc = run_snnc("train", "--arch", "nope", "-o", tmp_path / "m.pt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_snnc("train", "--hidden", "a,b", "-o", tmp_path / "m.pt")
    assert_one_line_error(proc, "--hidden")
    assert proc.returncode == 2
    assert not (tmp_path / "m.pt").exists()


def test_unwritable_output(tmp_path):
    proc = run_snnc("train", "--epochs", "0", "-o", tmp_path / "no" / "such" / "dir" / "m.pt")
    assert_one_line_error(proc, "does not exist")
