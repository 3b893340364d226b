"""The model file's checksum: it covers tensors and header and cannot be switched off or downgraded."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from helpers import assert_one_line_error, run_snnc

from snnc import checkpoint
from snnc.errors import SnncError
from snnc.nn import build

NEURON = {"threshold": 1.25}


def _model():
    torch.manual_seed(0)
    return build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16], "neuron": NEURON})


def _saved(tmp_path, name="m.pt"):
    p = tmp_path / name
    checkpoint.save_model(
        p, _model(), {"dataset": "digits", "steps": 16, "encoding": "rate"}, {"seed": 1, "accuracy": 0.81}
    )
    return p


def _edit_header(path, fn):
    """Rewrite the snnc metadata of a safetensors file in place, tensor bytes untouched."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    st = json.loads(raw[8 : 8 + n])
    header = json.loads(st["__metadata__"]["snnc"])
    fn(header)
    st["__metadata__"]["snnc"] = json.dumps(header, sort_keys=True)
    blob = json.dumps(st).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


def _header(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["snnc"])


def test_new_files_carry_the_versioned_digest(tmp_path):
    header = _header(_saved(tmp_path))
    d = header["digest"]
    assert d["algo"] == "sha256" and d["covers"] == "tensors+header"
    assert "sha256" not in header
    _, loaded = checkpoint.load_model(tmp_path / "m.pt")
    assert loaded["arch"]["config"]["neuron"] == NEURON


def test_untouched_edit_round_trip_still_loads(tmp_path):
    """Rewriting the header without changing it (other key order, spacing) keeps it valid."""
    p = _saved(tmp_path)
    _edit_header(p, lambda h: None)
    checkpoint.load_model(p)


def test_tensor_tampering(tmp_path):
    p = _saved(tmp_path)
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(SnncError, match="tensor data does not match its checksum") as err:
        checkpoint.load_model(p)
    assert "modified after it was written" in str(err.value) and "re-export" in str(err.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h["arch"]["config"]["neuron"].update(threshold=9.0),  # the attack in the issue
        lambda h: h["neuron"].update(threshold=9.0),
        lambda h: h["arch"]["config"].update(hidden=[16, 16]),
        lambda h: h["data"].update(steps=4),
        lambda h: h["data"].update(encoding="direct"),
        lambda h: h["meta"].update(accuracy=0.99),
        lambda h: h.update(extra="field"),
    ],
    ids=["arch.neuron", "neuron", "arch.hidden", "data.steps", "data.encoding", "meta", "new field"],
)
def test_header_tampering(tmp_path, edit):
    p = _saved(tmp_path)
    _edit_header(p, edit)
    with pytest.raises(SnncError, match="header .* does not match its checksum") as err:
        checkpoint.load_model(p)
    assert "modified after it was written" in str(err.value) and "re-export" in str(err.value)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda h: h.pop("digest"), "no checksum .no 'digest'"),
        (lambda h: h.update(digest=None), "no checksum .'digest' is null"),
        # downgrading to the old form by nulling the digest and adding nothing else
        (lambda h: h.update(digest=None, sha256=None), "no checksum"),
        (lambda h: h.update(digest="abc"), "malformed"),
        (lambda h: h["digest"].pop("tensors"), "malformed"),
        (lambda h: h["digest"].update(algo="md5"), "unknown checksum kind"),
        (lambda h: h["digest"].update(covers="tensors"), "unknown checksum kind"),
    ],
)
def test_missing_null_or_malformed_checksum(tmp_path, edit, needle):
    p = _saved(tmp_path)
    _edit_header(p, edit)
    with pytest.raises(SnncError, match=needle):
        checkpoint.load_model(p)


def _old_format(tmp_path, name="old.pt", **override):
    """A model file as snnc wrote it before the digest covered the header: ``sha256`` of the tensors."""
    from safetensors.torch import save_file

    m = _model()
    tensors = {k: v.detach().contiguous().clone() for k, v in m.state_dict().items()}
    header = {
        "format": "snnc-model",
        "version": 1,
        "arch": m.arch,
        "neuron": NEURON,
        "data": {"dataset": "digits"},
        "meta": {},
        "sha256": checkpoint.tensor_digest(tensors),
        **override,
    }
    p = tmp_path / name
    save_file(tensors, str(p), metadata={"snnc": json.dumps(header, sort_keys=True)})
    return p, m


@pytest.mark.parametrize("value", ["good", None, "0" * 64])
def test_old_tensor_only_checksum_is_refused(tmp_path, value):
    kwargs = {} if value == "good" else {"sha256": value}
    p, _ = _old_format(tmp_path, **kwargs)
    with pytest.raises(SnncError, match="checksum"):
        checkpoint.load_model(p)


def test_downgrade_to_the_old_checksum_cannot_hide_a_header_edit(tmp_path):
    """A current file turned into the old form (digest removed, a valid tensor-only sha256 added)
    with its threshold edited: refused."""
    p = _saved(tmp_path)
    tensors, _ = checkpoint.read_tensors(p)

    def downgrade(h):
        del h["digest"]
        h["sha256"] = checkpoint.tensor_digest(tensors)
        h["neuron"]["threshold"] = 9.0

    _edit_header(p, downgrade)
    with pytest.raises(SnncError, match="covers its tensors only"):
        checkpoint.load_model(p)


def test_other_formats_keep_the_tensor_sha256(tmp_path):
    """The prune resume checkpoint (another format) is checked by its own reader against sha256."""
    tensors = {"a": torch.arange(3.0), "s": torch.tensor(1.5)}
    p = tmp_path / "x.ckpt"
    checkpoint.save_tensors(p, tensors, {"format": "snnc-prune-resume", "version": 1})
    header = _header(p)
    assert header["sha256"] == checkpoint.tensor_digest(tensors) and "digest" not in header


def test_digest_of_scalar_tensors():
    a = checkpoint.tensor_digest({"s": torch.tensor(1.5)})
    assert a != checkpoint.tensor_digest({"s": torch.tensor([1.5])})  # the shape is covered


def test_cli_header_tampering_one_line(tmp_path):
    p = _saved(tmp_path, "model.pt")
    _edit_header(p, lambda h: h["arch"]["config"]["neuron"].update(threshold=9.0))
    proc = run_snnc("inspect", p)
    assert_one_line_error(proc, "model.pt", "checksum", "re-export")
    assert proc.returncode == 1


def test_cli_missing_checksum_one_line(tmp_path):
    p = _saved(tmp_path, "model.pt")
    _edit_header(p, lambda h: h.pop("digest"))
    proc = run_snnc("inspect", p)
    assert_one_line_error(proc, "model.pt", "no checksum")
    assert proc.returncode == 1
