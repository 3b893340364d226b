"""``--dataset PATH.npz``: the user's own frames or spikes through train, evaluate, prune and compile,
and one-line errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, run_snnc

from snnc import data as D
from snnc.errors import SnncError, UsageError


def digits_arrays():
    """sklearn's digits as (N, 1, 8, 8) frames in [0, 1], split 1400 train / 397 test (no val)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    return {"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:]}


def spike_arrays(T: int = 8):
    """The digits frames as flat (N, 64, T) regular-code spikes, uint8 0/1."""
    a = digits_arrays()
    out = {}
    for s in ("train", "test"):
        x = a[f"x_{s}"].reshape(len(a[f"x_{s}"]), -1)
        out[f"x_{s}"] = D.encode(x, T, "regular").numpy().astype(np.uint8)
        out[f"y_{s}"] = a[f"y_{s}"]
    return out


@pytest.mark.slow  # four CLI processes, 10-30 s on a shared CPU
def test_frames_npz_train_evaluate_prune_compile(tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(path, **digits_arrays())
    ds = D.load(str(path))
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.time_steps is None
    # a fifth of each class carved off train for validation, deterministically
    assert len(ds.train[1]) + len(ds.val[1]) == 1400 and 270 <= len(ds.val[1]) <= 280
    assert np.array_equal(D.load_npz(str(path)).val[1], ds.val[1])

    m = tmp_path / "m.pt"
    proc = run_snnc("train", "--dataset", path, "--arch", "lenet", "--epochs", "2", "-o", m, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] > 0.5
    proc = run_snnc("evaluate", m, "--backend", "torch", "--json")  # the recorded path is reused
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] > 0.5
    proc = run_snnc(
        "prune", m, "--method", "l1", "--sparsity", "0.5", "--epochs", "1", "-o", tmp_path / "p.pt"
    )
    assert proc.returncode == 0, proc.stderr
    proc = run_snnc(
        "compile", m, "--target", "loihi2", "--dataset", path, "--limit", "100", "-o", tmp_path / "b"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["accuracy"]["dataset"] == str(path)

    # the recorded file gone: prune asks for --dataset
    path.unlink()
    proc = run_snnc(
        "prune", m, "--method", "l1", "--sparsity", "0.5", "--epochs", "1", "-o", tmp_path / "q.pt"
    )
    assert_one_line_error(proc, "does not exist", "--dataset")
    assert proc.returncode == 2 and not (tmp_path / "q.pt").exists()


def test_spike_npz_train_evaluate_compile(tmp_path):
    path = tmp_path / "spikes.npz"
    np.savez_compressed(path, **spike_arrays(T=8))
    ds = D.load(str(path))
    assert ds.input_shape == (64,) and ds.time_steps == 8
    m = tmp_path / "m.pt"
    proc = run_snnc("train", "--dataset", path, "--epochs", "3", "-o", m, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["test_accuracy"] > 0.5
    proc = run_snnc("evaluate", m, "--limit", "200", "--json")  # the sim backend, on the given spikes
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["accuracy"] > 0.5 and out["steps"] == 8 and out["encoding"] == "given"
    proc = run_snnc(
        "compile", m, "--target", "loihi2", "--dataset", path, "--limit", "50", "-o", tmp_path / "b"
    )
    assert proc.returncode == 0, proc.stderr
    # --steps other than the file's T is refused
    proc = run_snnc("train", "--dataset", path, "--steps", "5", "--epochs", "0", "-o", tmp_path / "x.pt")
    assert_one_line_error(proc, "T=8", "--steps")
    assert proc.returncode == 2 and not (tmp_path / "x.pt").exists()


def _bad(tmp_path, name, **changes):
    a = {k: v.copy() for k, v in digits_arrays().items()}
    for k, v in changes.items():
        if v is None:
            del a[k]
        else:
            a[k] = v
    path = tmp_path / name
    np.savez(path, **a)
    return path


@pytest.mark.parametrize(
    ("name", "changes", "needles"),
    [
        ("nokey.npz", {"y_test": None}, ["missing key", "y_test"]),
        ("label.npz", {"y_test": np.full(397, 10)}, ["y_test", "label 10", "out of range"]),
        ("neg.npz", {"y_train": np.full(1400, -1)}, ["y_train", "labels"]),
        ("length.npz", {"y_train": np.zeros(1399, np.int64)}, ["x_train", "y_train", "same n"]),
        ("object.npz", {"x_test": np.array([{"a": 1}] * 3, dtype=object)}, ["x_test", "object"]),
        ("nan.npz", {"x_train": np.full((1400, 1, 8, 8), np.nan, np.float32)}, ["x_train", "nan"]),
        ("range.npz", {"x_train": np.full((1400, 1, 8, 8), 2.0, np.float32)}, ["x_train", "[0, 1]"]),
        ("shape.npz", {"x_test": np.zeros((397, 1, 7, 8), np.float32)}, ["x_test", "x_train"]),
        ("float_y.npz", {"y_test": np.zeros(397, np.float32)}, ["y_test", "integer"]),
    ],
)
def test_bad_contents_are_one_line_snnc_errors(tmp_path, name, changes, needles):
    path = _bad(tmp_path, name, **changes)
    with pytest.raises(SnncError) as e:
        D.load_npz(str(path))
    assert type(e.value) is SnncError and "\n" not in str(e.value)
    for n in needles:
        assert n.lower() in str(e.value).lower(), str(e.value)


def test_bad_files_through_the_cli(tmp_path):
    """Exit 1 for bad contents (one line, no model written), exit 2 for a bad path or name."""
    bad = _bad(tmp_path, "nan.npz", x_test=np.full((397, 1, 8, 8), np.nan, np.float32))
    proc = run_snnc("train", "--dataset", bad, "--epochs", "0", "-o", tmp_path / "m.pt")
    assert_one_line_error(proc, "x_test", "nan")
    assert proc.returncode == 1 and not (tmp_path / "m.pt").exists()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SnncError, match="not a readable .npz"):
        D.load_npz(str(tmp_path / "junk.npz"))
    for name in (tmp_path / "absent.npz", "cifar"):
        with pytest.raises(UsageError):
            D.load(str(name))
    proc = run_snnc("evaluate", "m.pt", "--dataset", tmp_path / "absent.npz")
    assert_one_line_error(proc, "absent.npz")
    assert proc.returncode == 2
