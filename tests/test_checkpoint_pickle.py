"""--trust-pickle: torch.save's zip format read by snnc's restricted unpickler; nothing in it runs.

Every malicious case first proves its payload is real (a plain ``pickle.loads`` or ``torch.jit.load``
runs it and makes a sanity marker), then that snnc refuses the file in one line and the marker the
payload would make never appears.
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import io
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_snnc

from snnc import checkpoint
from snnc.errors import SnncError
from snnc.nn import build


def _model():
    torch.manual_seed(0)
    return build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})


def _header(m):
    return {
        "format": "snnc-model",
        "version": 1,
        "arch": m.arch,
        "neuron": {},
        "data": {"dataset": "digits", "steps": 8, "encoding": "rate"},
        "meta": {"seed": 0, "accuracy": 0.5},
    }


def _save(path, state_dict, header=None):
    torch.save({"state_dict": state_dict, "snnc": header or _header(_model())}, path)
    return path


def _zip(path, data_pkl, storages=None, archive="archive", compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compress) as z:
        z.writestr(f"{archive}/data.pkl", data_pkl)
        z.writestr(f"{archive}/byteorder", "little")
        for key, raw in (storages or {}).items():
            z.writestr(f"{archive}/data/{key}", raw)
        z.writestr(f"{archive}/version", "3\n")
    return path


# -- what must load ------------------------------------------------------------------------------
def test_state_dict_round_trip(tmp_path):
    m = _model()
    m.blocks[1].channel_mask[3] = 0
    p = _save(tmp_path / "own.pt", m.state_dict(), _header(m))
    m2, header = checkpoint.load_model(p, trust_pickle=True)
    assert header == _header(m)
    assert m.state_dict().keys() == m2.state_dict().keys()
    for k, v in m.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert m2.blocks[1].channel_mask[3] == 0


def _every_kind():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    g = torch.Generator().manual_seed(1)
    return {
        "f32": base,
        "transposed": base.t(),  # a non-contiguous view of the same storage
        "row": base[2],  # storage offset
        "strided": base[1:3, ::2],
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f16": torch.randn(3, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "i64": torch.tensor([-(2**40), 7]),
        "i32": torch.tensor([-5, 6], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-7, 7], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
        "c128": torch.tensor([1 + 2j], dtype=torch.complex128),
        "param": torch.nn.Parameter(torch.randn(3, generator=g)),
    }


def test_every_dtype_view_and_shape(tmp_path):
    sd = _every_kind()
    tensors, _ = checkpoint.read_tensors(_save(tmp_path / "k.pt", sd), trust_pickle=True)
    assert tensors.keys() == sd.keys()
    for k, v in sd.items():
        assert tensors[k].dtype == v.dtype and tensors[k].shape == v.shape, k
        assert torch.equal(tensors[k], v.detach()), k


def test_big_endian_archive(tmp_path):
    """torch.save on a big-endian machine writes byteorder 'big'; the values must come out the same."""
    sd = {k: v for k, v in _every_kind().items() if k in ("f32", "i16", "bf16", "c64", "i64", "bool")}
    little = _save(tmp_path / "little.pt", sd)
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(little) as zin, zipfile.ZipFile(big, "w") as zout:
        dtypes = {}
        for v in sd.values():  # storage keys follow the order torch.save meets the tensors
            dtypes[str(len(dtypes))] = v.dtype
        for info in zin.infolist():
            raw = zin.read(info)
            rel = info.filename.split("/", 1)[1]
            if rel == "byteorder":
                raw = b"big"
            elif rel.startswith("data/"):
                dt = dtypes[rel[5:]]
                size = torch.empty((), dtype=dt).element_size()
                unit = size // 2 if dt.is_complex else size
                raw = np.frombuffer(raw, np.uint8).reshape(-1, unit)[:, ::-1].tobytes()
            zout.writestr(info, raw)
    tensors, _ = checkpoint.read_tensors(big, trust_pickle=True)
    for k, v in sd.items():
        assert torch.equal(tensors[k], v), k


def test_bool_storage_bytes_are_normalised(tmp_path):
    p = _save(tmp_path / "b.pt", {"mask": torch.tensor([True, False, True, True])})
    raw = bytearray(p.read_bytes())
    pos = raw.index(b"\x01\x00\x01\x01")
    raw[pos : pos + 4] = b"\x07\x00\xff\x80"  # a bool storage byte that is neither 0 nor 1
    p.write_bytes(bytes(raw))
    # zip's CRC would catch this edit; recompute it by rewriting the archive
    fixed = tmp_path / "fixed.pt"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(fixed, "w") as zout:
        for info in zin.infolist():
            with zin.open(info) as f:
                f._expected_crc = None  # read past the now-stale CRC
                zout.writestr(info.filename, f.read())
    tensors, _ = checkpoint.read_tensors(fixed, trust_pickle=True)
    assert tensors["mask"].tolist() == [True, False, True, True]
    assert tensors["mask"].view(torch.uint8).tolist() == [1, 0, 1, 1]


def test_without_trust_pickle_still_refused(tmp_path):
    m = _model()
    p = _save(tmp_path / "own.pt", m.state_dict(), _header(m))
    with pytest.raises(SnncError, match="refusing to load a PyTorch pickle"):
        checkpoint.load_model(p)


def test_legacy_pickle_refused(tmp_path):
    m = _model()
    p = tmp_path / "legacy.pt"
    torch.save({"state_dict": m.state_dict(), "snnc": _header(m)}, p, _use_new_zipfile_serialization=False)
    assert checkpoint.sniff(p) == "pickle"
    with pytest.raises(SnncError, match="legacy"):
        checkpoint.load_model(p, trust_pickle=True)
    with pytest.raises(SnncError, match="refusing"):
        checkpoint.load_model(p)


# -- TorchScript -----------------------------------------------------------------------------------
class Evil(torch.nn.Module):
    """A scripted module whose ``__setstate__`` (run by torch.jit.load) creates the file ``marker``."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.register_buffer("w", torch.ones(2))

    def forward(self, x):
        return x * self.w

    @torch.jit.export
    def __getstate__(self):
        return (self.marker, self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]):
        self.marker = state[0]
        self.training = state[2]
        self.w = state[1] + 0.0 * torch.from_file(self.marker, True, 2)  # creates the file


def _torchscript(path, marker):
    torch.jit.save(torch.jit.script(Evil(str(marker))), str(path))
    return path


def test_torchscript_payload_is_real(tmp_path):
    marker = tmp_path / "sanity"
    torch.jit.load(str(_torchscript(tmp_path / "ts.pt", marker)))
    assert marker.exists()


def test_torchscript_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    p = _torchscript(tmp_path / "ts.pt", marker)
    with pytest.raises(SnncError, match="TorchScript"):
        checkpoint.load_model(p, trust_pickle=True)
    assert not marker.exists()


def _cli_args(command, model, tmp_path):
    return {
        "inspect": ["inspect", model],
        "compile": ["compile", model, "--target", "sim", "-o", tmp_path / "build"],
        "prune": ["prune", model, "--method", "l1", "--sparsity", "0.5", "--epochs", "1"]
        + ["-o", tmp_path / "pruned.pt"],
        "evaluate": ["evaluate", model, "--backend", "torch", "--limit", "2"],
    }[command] + ["--trust-pickle"]


@pytest.mark.parametrize("command", ["inspect", "compile", "prune", "evaluate"])
def test_cli_refuses_torchscript_with_trust_pickle(tmp_path, command):
    marker = tmp_path / "pwned"
    p = _torchscript(tmp_path / "model.pt", marker)
    proc = run_snnc(*_cli_args(command, p, tmp_path))
    assert_one_line_error(proc, "TorchScript")
    assert proc.returncode == 1
    assert not marker.exists(), "the TorchScript __setstate__ ran"
    assert not (tmp_path / "build").exists() and not (tmp_path / "pruned.pt").exists()


# -- malicious pickles -----------------------------------------------------------------------------
class Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _touch(marker):
    return f"open({str(marker)!r}, 'w').close()"


def _legacy_torch_bytes(marker):
    buf = io.BytesIO()
    torch.save(Reduce(os.system, f"touch {marker}"), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


PAYLOADS = {
    "os.system": lambda m: pickle.dumps({"snnc": Reduce(os.system, f"touch {m}")}, protocol=2),
    "builtins.eval": lambda m: pickle.dumps(Reduce(builtins.eval, _touch(m)), protocol=2),
    "builtins.exec": lambda m: pickle.dumps(Reduce(builtins.exec, _touch(m)), protocol=4),
    "subprocess.call": lambda m: pickle.dumps(Reduce(subprocess.call, ["touch", str(m)]), protocol=2),
    # torch's own storage unpickler calls torch.load(weights_only=False) on the bytes it is given
    "torch.storage._load_from_bytes": lambda m: pickle.dumps(
        Reduce(torch.storage._load_from_bytes, _legacy_torch_bytes(m)), protocol=2
    ),
    # protocol 0 INST opcode: module and name on their own lines
    "INST": lambda m: b"(S'touch " + str(m).encode() + b"'\nios\nsystem\n.",
    # the payload nested as an argument of an admitted global
    "nested": lambda m: pickle.dumps(
        {"state_dict": collections.OrderedDict(), "snnc": {"a": [Reduce(os.system, f"touch {m}")]}},
        protocol=2,
    ),
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_malicious_data_pkl_refused_and_never_runs(tmp_path, name):
    sanity = tmp_path / "sanity"
    pickle.loads(PAYLOADS[name](sanity))  # noqa: S301 - proving the payload is real
    assert sanity.exists(), "the payload does not work; the test would prove nothing"

    marker = tmp_path / "pwned"
    p = _zip(tmp_path / "evil.pt", PAYLOADS[name](marker))
    with pytest.raises(SnncError, match="refusing") as err:
        checkpoint.load_model(p, trust_pickle=True)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_extension_code_refused(tmp_path):
    copyreg.add_extension(os.system.__module__, "system", 0x7FF0)
    try:
        data = pickle.dumps(Reduce(os.system, f"touch {tmp_path / 'sanity'}"), protocol=2)
        assert pickle.EXT2 in data
        pickle.loads(data)  # noqa: S301 - proving the payload is real
        assert (tmp_path / "sanity").exists()
        marker = tmp_path / "pwned"
        p = _zip(tmp_path / "evil.pt", pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2))
        with pytest.raises(SnncError, match="extension"):
            checkpoint.load_model(p, trust_pickle=True)
        assert not marker.exists()
    finally:
        copyreg.remove_extension(os.system.__module__, "system", 0x7FF0)


def test_payload_after_real_tensors_refused(tmp_path):
    """A real torch.save archive with valid tensors and a payload in the header."""
    marker = tmp_path / "pwned"
    p = _save(tmp_path / "evil.pt", _model().state_dict(), Reduce(os.system, f"touch {marker}"))
    with pytest.raises(SnncError, match="refusing to unpickle global posix.system"):
        checkpoint.load_model(p, trust_pickle=True)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["inspect", "evaluate"])
def test_cli_refuses_malicious_pickle_with_trust_pickle(tmp_path, command):
    marker = tmp_path / "pwned"
    p = _save(tmp_path / "model.pt", _model().state_dict(), Reduce(os.system, f"touch {marker}"))
    proc = run_snnc(*_cli_args(command, p, tmp_path))
    assert_one_line_error(proc, "refusing to unpickle global")
    assert proc.returncode == 1
    assert not marker.exists()


# -- crafted tensors and archives ------------------------------------------------------------------
class _Pid:
    """Pickled as a persistent id, as torch.save writes a storage reference."""

    def __init__(self, key="0", numel=4, kind=torch.FloatStorage):
        self.pid = ("storage", kind, key, "cpu", numel)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Pid) else None


class _Rebuild:
    def __init__(self, *args, state=None):
        self.args, self.state = args, state

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args, self.state)


def _crafted(tensor, header=None):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"state_dict": {"w": tensor}, "snnc": header or _header(_model())})
    return buf.getvalue()


_HOOKS = collections.OrderedDict()
_FOUR = np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    "case, tensor, storages, needle",
    [
        ("fits", _Rebuild(_Pid(), 0, (2, 2), (2, 1), False, _HOOKS), {"0": _FOUR}, None),
        ("past the end", _Rebuild(_Pid(), 0, (100,), (1,), False, _HOOKS), {"0": _FOUR}, "does not fit"),
        ("offset past", _Rebuild(_Pid(), 4, (1,), (1,), False, _HOOKS), {"0": _FOUR}, "does not fit"),
        ("broadcast", _Rebuild(_Pid(), 0, (10**12,), (0,), False, _HOOKS), {"0": _FOUR}, "does not fit"),
        ("negative", _Rebuild(_Pid(), 0, (-1,), (1,), False, _HOOKS), {"0": _FOUR}, "non-negative"),
        ("short storage", _Rebuild(_Pid(numel=8), 0, (4,), (1,), False, _HOOKS), {"0": _FOUR}, "bytes"),
        ("missing", _Rebuild(_Pid(key="9"), 0, (4,), (1,), False, _HOOKS), {"0": _FOUR}, "missing"),
        ("key path", _Rebuild(_Pid(key="../0"), 0, (4,), (1,), False, _HOOKS), {"0": _FOUR}, "plain name"),
        ("untyped", _Rebuild(_Pid(kind=torch.UntypedStorage), 0, (4,), (1,), False, _HOOKS), {}, "global"),
        ("qint8", _Rebuild(_Pid(kind=torch.QInt8Storage), 0, (4,), (1,), False, _HOOKS), {}, "global"),
        ("state", _Rebuild(_Pid(), 0, (4,), (1,), False, _HOOKS, state={"x": 1}), {"0": _FOUR}, "state"),
        ("hooks", _Rebuild(_Pid(), 0, (4,), (1,), False, {1: 2}), {"0": _FOUR}, "hooks"),
    ],
)
def test_crafted_tensor(tmp_path, case, tensor, storages, needle):
    p = _zip(tmp_path / "c.pt", _crafted(tensor), storages)
    if needle is None:
        tensors, _ = checkpoint.read_tensors(p, trust_pickle=True)
        assert tensors["w"].tolist() == [[0.0, 1.0], [2.0, 3.0]]
        return
    with pytest.raises(SnncError, match=needle) as err:
        checkpoint.read_tensors(p, trust_pickle=True)
    assert "\n" not in str(err.value)


def test_compressed_storage_refused(tmp_path):
    p = _zip(
        tmp_path / "c.pt",
        _crafted(_Rebuild(_Pid(numel=4), 0, (4,), (1,), False, _HOOKS)),
        {"0": _FOUR},
        compress=zipfile.ZIP_DEFLATED,
    )
    with pytest.raises(SnncError, match="compressed"):
        checkpoint.read_tensors(p, trust_pickle=True)


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"\x80\x02}q\x00(", "corrupt"),  # truncated pickle
        (pickle.dumps([1, 2, 3], protocol=2), "must be a dict"),
        (
            pickle.dumps({"state_dict": {"w": 1}, "snnc": _header(_model())}, protocol=2),
            "map names to tensors",
        ),
    ],
)
def test_junk_data_pkl(tmp_path, data, needle):
    with pytest.raises(SnncError, match=needle):
        checkpoint.read_tensors(_zip(tmp_path / "j.pt", data), trust_pickle=True)


def test_zip_without_data_pkl(tmp_path):
    p = tmp_path / "z.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a/b.txt", "hello")
    with pytest.raises(SnncError, match="not a torch.save checkpoint"):
        checkpoint.read_tensors(p, trust_pickle=True)


def test_archive_named_code_is_not_torchscript(tmp_path):
    """torch.save names the archive after the file: code.pt holds code/data.pkl, a plain checkpoint."""
    m = _model()
    p = _save(tmp_path / "code.pt", m.state_dict(), _header(m))
    with zipfile.ZipFile(p) as z:
        assert "code/data.pkl" in z.namelist()
    m2, _ = checkpoint.load_model(p, trust_pickle=True)
    assert torch.equal(m2.blocks[1].weight, m.blocks[1].weight)
