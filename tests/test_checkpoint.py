"""Model files: safetensors round trip, pickles refused, corrupt files refused, one-line CLI errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from helpers import assert_one_line_error, run_snnc

from snnc import checkpoint
from snnc.errors import SnncError
from snnc.nn import build


def _model():
    torch.manual_seed(0)
    return build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})


def test_round_trip_with_masks(tmp_path):
    m = _model()
    m.blocks[1].channel_mask[3] = 0
    p = tmp_path / "m.pt"
    checkpoint.save_model(p, m, {"dataset": "digits", "steps": 16, "encoding": "rate"}, {"seed": 1})
    assert checkpoint.sniff(p) == "safetensors"
    m2, header = checkpoint.load_model(p)
    assert header["format"] == "snnc-model" and header["version"] == 1
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert m2.blocks[1].channel_mask[3] == 0


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["inspect", "compile", "prune"])
def test_malicious_pickle_refused_and_never_runs(tmp_path, command):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    # Sanity: the payload is real (plain pickle.load would run it).
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload(tmp_path / "sanity")))
    with open(raw, "rb") as f:
        pickle.load(f)
    assert (tmp_path / "sanity").exists()

    args = {
        "inspect": ["inspect", evil],
        "compile": ["compile", evil, "--target", "sim", "-o", tmp_path / "build"],
        "prune": [
            "prune",
            evil,
            "--method",
            "l1",
            "--sparsity",
            "0.5",
            "--epochs",
            "1",
            "-o",
            tmp_path / "pruned.pt",
        ],
    }[command]
    proc = run_snnc(*args)
    assert_one_line_error(proc, "pickle")
    assert not marker.exists(), "the pickled command ran"
    assert not (tmp_path / "build").exists() and not (tmp_path / "pruned.pt").exists()


def test_trust_pickle_loads_own_checkpoint(tmp_path):
    m = _model()
    header = {"format": "snnc-model", "version": 1, "arch": m.arch, "data": {}, "meta": {}}
    p = tmp_path / "own.pt"
    torch.save({"state_dict": m.state_dict(), "snnc": header}, p)
    with pytest.raises(SnncError, match="refusing"):
        checkpoint.load_model(p)
    m2, _ = checkpoint.load_model(p, trust_pickle=True)
    assert torch.equal(m2.blocks[1].weight, m.blocks[1].weight)


def _saved(tmp_path):
    p = tmp_path / "m.pt"
    checkpoint.save_model(p, _model(), {"dataset": "digits"}, {})
    return p


def test_truncated_file(tmp_path):
    p = _saved(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnncError, match="corrupt or truncated"):
        checkpoint.load_model(p)


def test_tampered_tensor_bytes(tmp_path):
    p = _saved(tmp_path)
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor
    p.write_bytes(bytes(data))
    with pytest.raises(SnncError, match="checksum"):
        checkpoint.load_model(p)


def test_wrong_format_and_version(tmp_path):
    from safetensors.torch import save_file

    for header, needle in (
        ({"format": "other", "version": 1}, "format"),
        ({"format": "snnc-model", "version": 99}, "version"),
    ):
        p = tmp_path / "x.pt"
        save_file({"w": torch.zeros(1)}, str(p), metadata={"snnc": json.dumps(header)})
        with pytest.raises(SnncError, match=needle):
            checkpoint.load_model(p)


@pytest.mark.parametrize("case", ["missing", "text", "format", "truncated"])
def test_cli_one_line_errors(tmp_path, case):
    from safetensors.torch import save_file

    p = tmp_path / "model.pt"
    if case == "text":
        p.write_text("this is not a model\n")
    elif case == "format":
        save_file(
            {"w": torch.zeros(1)},
            str(p),
            metadata={"snnc": json.dumps({"format": "nope", "version": 1})},
        )
    elif case == "truncated":
        p.write_bytes(_saved(tmp_path).read_bytes()[:100])
    proc = run_snnc("inspect", p)
    assert_one_line_error(proc, str(p.name))
    assert proc.returncode == 1


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from snnc.fileio import atomic_path

    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
