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


def test_clicks_own_usage_errors_are_one_line(tmp_path):
    """A missing option or argument, a bad value, an unknown command or option: one line, exit 2."""
    cases = [
        (("train", "--arch", "nope", "-o", tmp_path / "m.pt"), ["--arch", "snnc train --help"]),
        (("compile", "m.pt"), ["missing option", "--output"]),
        (("simulate",), ["missing argument", "NET"]),
        (("train", "--epochs", "-3", "-o", tmp_path / "m.pt"), ["--epochs"]),
        (("bogus",), ["no such command", "bogus"]),
        (("inspect", "--frobnicate", "x"), ["no such option", "--frobnicate"]),
    ]
    for args, needles in cases:
        proc = run_snnc(*args)
        assert_one_line_error(proc, *needles)
        assert proc.returncode == 2, args
    proc = run_snnc()  # bare `snnc` shows the help
    assert proc.returncode == 0 and "Commands:" in proc.stdout


def test_unwritable_output(tmp_path):
    proc = run_snnc("train", "--epochs", "0", "-o", tmp_path / "no" / "such" / "dir" / "m.pt")
    assert_one_line_error(proc, "does not exist")
    assert proc.returncode == 2
    for bad in ("/proc/m.pt", "/sys/m.pt"):  # directories that exist but take no new files
        proc = run_snnc("train", "--epochs", "0", "-o", bad)
        assert_one_line_error(proc, bad)
        assert proc.returncode == 2
