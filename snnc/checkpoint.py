"""The one place that reads and writes model files.

A model file is **safetensors** whatever its name (``model.pt``): the tensors of the ``state_dict``
(masks are buffers, so they are in it) and one metadata entry ``snnc`` holding JSON::

    {"format": "snnc-model", "version": 1, "arch": {"name", "config"}, "neuron": {...},
     "data": {"dataset", "steps", "encoding"}, "meta": {"seed", "accuracy", "history", ...},
     "digest": {"algo": "sha256", "covers": "tensors+header", "tensors": HEX, "value": HEX}}

**Checksum.** ``digest.tensors`` is :func:`tensor_digest` (every tensor's name, shape, dtype and
bytes); ``digest.value`` is SHA-256 over a domain tag, the canonical JSON of the header without
``digest`` (sorted keys, no spaces) and ``digest.tensors`` (:func:`header_digest`). It covers every
header field: ``format``, ``version``, ``arch`` (name and config: sizes, neuron parameters),
``neuron``, ``data`` (dataset, steps, encoding) and ``meta``. No field is exempt as informational:
``meta`` (seed, accuracy, history, pruning details) changes nothing the model computes, but
``snnc inspect`` and the prune report present it as fact, and no snnc command edits a model file in
place, so an edit there is tampering too. Only ``digest`` itself is outside. A file whose tensors or
header differ from what was written is refused, saying which. A file without a checksum (``digest``
deleted or null) is refused.

Files written before the digest covered the header carry ``"sha256": tensor_digest(...)`` and no
``digest``; they are refused (re-export them): were they read, anyone could turn a current file
into that form and edit its header undetected.
The checksum detects corruption and edits by anything that does not recompute it; it is not a
signature (whoever can write the file can recompute it).

The prune resume checkpoint (another ``format``) is also written by :func:`save_tensors`, with the
tensor-only ``sha256`` its reader (``snnc.prune.trainer.load_resume``) checks.

**PyTorch pickles** are refused unless ``trust_pickle=True``, and even then ``torch.load`` is never
called: torch 2.3's ``weights_only=True`` hands a TorchScript archive to ``torch.jit.load``, which
runs its code (CVE-2025-32434). :func:`_read_trusted_pickle` reads torch.save's zip format itself
(``ARCHIVE/data.pkl``, raw storages ``ARCHIVE/data/KEY``, ``ARCHIVE/byteorder``,
``ARCHIVE/version``) with a restricted unpickler. Its only globals are ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` / ``_rebuild_parameter_with_state``
(answered by checked re-implementations here, not torch's) and the typed-storage names torch.save
writes (``torch.FloatStorage`` ... ``torch.ComplexDoubleStorage``, answered by dtype markers, never
the classes); besides those, only plain values. Any other global, pickle extension codes, and
object state other than an OrderedDict's ``_metadata`` (dropped) are refused in one line naming
them. Storages must be stored uncompressed with exactly the bytes their element count needs (so
memory is bounded by the file), and every tensor must lie inside its storage. Refused outright:
TorchScript archives (``constants.pkl``, ``bytecode.pkl`` or ``code/`` in the archive), and legacy
non-zip pickles (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``): that format
interleaves several pickles with raw data and is not read.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnc.errors import SnncError, UsageError
from snnc.fileio import atomic_path

if TYPE_CHECKING:  # torch takes ~1.5 s to import; `snnc simulate` never needs it
    import torch

FORMAT = "snnc-model"
VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024
DIGEST_ALGO = "sha256"
DIGEST_COVERS = "tensors+header"
_DIGEST_TAG = b"snnc-model digest: sha256 over tensors+header\n"
_REEXPORT = "re-export it with snnc train/prune"
# the first line of a Git LFS pointer: a clone without `git lfs pull` holds this text, not the file
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, shape, dtype and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def header_digest(header: dict, tensors_hex: str) -> str:
    """``digest.value``: SHA-256 over the header without ``digest`` (canonical JSON) and the tensor digest."""
    body = {k: v for k, v in header.items() if k != "digest"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    h = hashlib.sha256(_DIGEST_TAG)
    h.update(len(canon).to_bytes(8, "little"))
    h.update(canon)
    h.update(tensors_hex.encode())
    return h.hexdigest()


def _with_digest(tensors: dict, header: dict) -> dict:
    """The header as a reader will parse it, with its ``digest`` (any old ``sha256`` dropped)."""
    header = json.loads(json.dumps(header))
    header.pop("digest", None)
    header.pop("sha256", None)
    t = tensor_digest(tensors)
    header["digest"] = {
        "algo": DIGEST_ALGO,
        "covers": DIGEST_COVERS,
        "tensors": t,
        "value": header_digest(header, t),
    }
    return header


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], header: dict) -> None:
    """Write tensors + JSON header (under metadata key ``snnc``) atomically as safetensors.

    A model header (``format`` ``snnc-model``) gets the tensors+header ``digest``; any other (the
    prune resume checkpoint) gets the tensor-only ``sha256`` its own reader checks."""
    from safetensors.torch import save_file

    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    if header.get("format") == FORMAT:
        header = _with_digest(clean, header)
    else:
        header = dict(header, sha256=tensor_digest(clean))
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata={"snnc": json.dumps(header, sort_keys=True)})


def verify_checksum(header: dict, tensors: dict, path: Path | str) -> str:
    """Check a model header's checksum against its tensors; return what it covers
    (``"tensors+header"``). Raises :class:`SnncError` when the checksum is missing, null, malformed,
    of the old tensor-only kind (``sha256``) or does not match."""
    modified = f"the file was modified after it was written; {_REEXPORT}"
    if "digest" in header:
        d = header["digest"]
        if d is None:
            raise SnncError(f"{path}: model file has no checksum ('digest' is null); {_REEXPORT}")
        keys = ("algo", "covers", "tensors", "value")
        if not (isinstance(d, dict) and all(isinstance(d.get(k), str) for k in keys)):
            raise SnncError(f"{path}: the model file's checksum ('digest') is malformed; {modified}")
        if (d["algo"], d["covers"]) != (DIGEST_ALGO, DIGEST_COVERS):
            raise SnncError(
                f"{path}: unknown checksum kind {d['algo'][:20]!r}/{d['covers'][:20]!r} (this snnc "
                f"checks {DIGEST_ALGO}/{DIGEST_COVERS}); {_REEXPORT} of this version"
            )
        actual = tensor_digest(tensors)
        if d["tensors"] != actual:
            raise SnncError(f"{path}: tensor data does not match its checksum: {modified}")
        try:
            value = header_digest(header, actual)
        except (RecursionError, ValueError, TypeError):
            value = None
        if d["value"] != value:
            raise SnncError(
                f"{path}: header (architecture, neuron, data or meta settings) does not match its "
                f"checksum: {modified}"
            )
        return DIGEST_COVERS
    if header.get("sha256") is None:
        what = "'sha256' is null" if "sha256" in header else "no 'digest' in its header"
        raise SnncError(
            f"{path}: model file has no checksum ({what}), so changes to it cannot be detected; {_REEXPORT}"
        )
    raise SnncError(
        f"{path}: the model file's checksum ('sha256') covers its tensors only, so an edit of its "
        f"header (architecture, neuron, data settings) cannot be detected; {_REEXPORT} of this version"
    )


def sniff(path: Path) -> str:
    """'safetensors', 'torch-zip', 'pickle', 'hdf5' (a netx file, or any other HDF5), 'nir' (an HDF5
    file ``nir.write`` wrote: top-level ``node`` and ``version``, no netx ``layer``), 'lfs-pointer'
    or 'unknown', from the first bytes (and an HDF5 file's top-level names)."""
    with open(path, "rb") as f:
        head = f.read(len(LFS_POINTER))
    # safetensors first: its 8-byte header length can begin like a pickle's PROTO opcode (an
    # 896-byte header is 80 03 00 ...). A pickle taken for safetensors (it would need a plausible
    # length and "{" at byte 8) is then refused as a corrupt safetensors file, never unpickled.
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 0 < n < _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "nir" if _is_nir(path) else "hdf5"
    if head == LFS_POINTER:
        return "lfs-pointer"
    return "unknown"


def _is_nir(path: Path) -> bool:
    """Whether the HDF5 file ``path`` is a NIR graph (``nir.write``: groups ``node`` and ``version``
    at the top) rather than a netx network (group ``layer``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = set(f.keys())
    except Exception:  # h5py raises OSError, RuntimeError, ... on a damaged file
        return False  # not readable as HDF5: the netx reader says what is wrong
    return {"node", "version"} <= names and "layer" not in names


def refuse_lfs_pointer(path: str | os.PathLike, kind: str | None = None) -> None:
    """Raise :class:`UsageError` when ``path`` (a file, of sniffed ``kind`` when known) is a Git LFS
    pointer: the repository was cloned without its large files."""
    if kind is None:
        kind = sniff(Path(path)) if Path(path).is_file() else "unknown"
    if kind == "lfs-pointer":
        raise UsageError(f"{path} is a Git LFS pointer, not the file; run `git lfs pull` in its repository")


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise SnncError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise SnncError(f"{path}: is a directory, not a model file")
    return path


def read_tensors(path: str | os.PathLike, trust_pickle: bool = False) -> tuple[dict, dict]:
    """Read ``(tensors, header)`` from a model file, validating format, version, arch and checksum."""
    path = _require_file(path)
    kind = sniff(path)
    refuse_lfs_pointer(path, kind)
    if kind in ("torch-zip", "pickle"):
        if not trust_pickle:
            raise SnncError(
                f"{path}: refusing to load a PyTorch pickle: unpickling can run code; convert it to "
                "safetensors, or pass --trust-pickle if you made this file yourself (snnc then reads "
                "tensors and plain values only)"
            )
        if kind == "pickle":
            raise SnncError(
                f"{path}: a legacy (non-zip) PyTorch pickle; --trust-pickle reads only torch.save's zip "
                "format (PyTorch >= 1.6): load it in PyTorch yourself and torch.save it again"
            )
        return _read_trusted_pickle(path)
    if kind != "safetensors":
        hint = " (a netx HDF5 network; this command needs a model file)" if kind == "hdf5" else ""
        raise SnncError(f"{path}: not an snnc model file (not safetensors){hint}")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SnncError(f"{path}: corrupt or truncated safetensors file ({msg})") from None
    if "snnc" not in meta:
        raise SnncError(f"{path}: safetensors file without snnc metadata; not an snnc model file")
    try:
        header = json.loads(meta["snnc"])
    except json.JSONDecodeError:
        raise SnncError(f"{path}: snnc metadata is not valid JSON; the file is corrupt") from None
    except RecursionError:
        raise SnncError(f"{path}: snnc metadata is nested too deeply; the file is corrupt") from None
    validate_header(header, path)
    verify_checksum(header, tensors, path)
    return tensors, header


# -- --trust-pickle: a restricted reader of torch.save's zip format -------------------------------
# torch.save's legacy typed-storage names (torch.storage._dtype_to_storage_type_map, less the
# quantized ones) and the dtypes they hold.
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
}
_MAX_PICKLE = 64 * 1024 * 1024  # data.pkl holds structure only; the tensors' bytes are separate
_STORAGE_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")
_TRUST_HINT = "a --trust-pickle checkpoint may hold only tensors, OrderedDicts and plain values"


class _Refused(Exception):
    """Something the restricted reader does not admit; the message is the reason, one line."""


def _show(s: Any) -> str:
    s = str(s)
    return s if s.isprintable() and len(s) <= 100 else ascii(s[:100])


class _StorageType:
    """What ``torch.FloatStorage`` etc. unpickle to: the dtype name only, nothing callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


class _Storage:
    """A storage read from the archive: a flat 1-D tensor of its dtype."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _ints(x: Any, what: str) -> tuple[int, ...]:
    if not (isinstance(x, (tuple, list)) and len(x) <= 64 and all(_is_int(v) and 0 <= v < 2**62 for v in x)):
        raise _Refused(f"tensor {what} is not a list of non-negative integers")
    return tuple(x)


def _no_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise _Refused("refusing a tensor with backward hooks")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2, checked: a view that lies inside its storage, no hooks."""
    import torch

    if not isinstance(storage, _Storage):
        raise _Refused("a tensor whose storage is not one of the archive's storages")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or not _is_int(storage_offset) or storage_offset < 0:
        raise _Refused("tensor size, stride and offset do not agree")
    if not isinstance(requires_grad, bool):
        raise _Refused("tensor requires_grad is not a bool")
    _no_hooks(backward_hooks)
    if metadata is not None and not (isinstance(metadata, dict) and not metadata):
        raise _Refused("refusing a tensor with extra metadata")
    flat = storage.flat
    n = math.prod(size)
    if n == 0:
        return torch.empty(size, dtype=flat.dtype)
    last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    if n > flat.numel() or last >= flat.numel():
        raise _Refused(
            f"a tensor of shape {list(size)} (stride {list(stride)}, offset {storage_offset}) does not "
            f"fit its storage of {flat.numel()} elements"
        )
    return flat.as_strided(size, stride, storage_offset)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """torch._utils._rebuild_parameter, as a plain tensor (only its values are loaded)."""
    import torch

    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise _Refused("a parameter that is not a tensor")
    _no_hooks(backward_hooks)
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """torch._utils._rebuild_parameter_with_state, only with no Python state."""
    parts = state if isinstance(state, tuple) else (state,)
    if not all(p is None or (isinstance(p, dict) and not p) for p in parts):
        raise _Refused("refusing a parameter with Python attributes")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _RestrictedUnpickler(pickle._Unpickler):
    """Python's own unpickler (so every opcode is visible here) with an allow-list of globals,
    persistent ids that must name a storage entry of the archive, no extension codes, and no
    ``__setstate__``/attribute setting except an OrderedDict's ``_metadata`` (ignored)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, read_storage) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"refusing to unpickle global {_show(module)}.{_show(name)}: {_TRUST_HINT}")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Refused("refusing a persistent reference that is not a tensor storage")
        _, stype, key, location, numel = pid
        if not isinstance(stype, _StorageType):
            raise _Refused("refusing a storage of a type torch.save does not write for tensors")
        if not (isinstance(key, str) and _STORAGE_KEY.fullmatch(key)):
            raise _Refused("a storage key that is not a plain name")
        if not isinstance(location, str) or not _is_int(numel) or not 0 <= numel < 2**62:
            raise _Refused(f"storage {key} has a bad location or element count")
        seen = self._storages.get(key)
        if seen is None:
            seen = self._storages[key] = _Storage(self._read_storage(key, stype.dtype, numel))
        elif str(seen.flat.dtype) != f"torch.{stype.dtype}" or seen.flat.numel() != numel:
            raise _Refused(f"storage {key} is referenced with two different types or sizes")
        return seen

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is collections.OrderedDict and isinstance(state, dict) and set(state) <= {"_metadata"}:
            return  # state_dict()._metadata (module versions): not needed to load the values
        raise _Refused(f"refusing to set the state of a {_show(type(inst).__name__)} object")

    def _load_ext(self) -> None:
        raise _Refused("refusing a pickle extension code (copyreg registry)")

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.EXT1[0]] = _load_ext
    dispatch[pickle.EXT2[0]] = _load_ext
    dispatch[pickle.EXT4[0]] = _load_ext


def _torchscript_entry(names: list[str]) -> str | None:
    for n in names:
        rel = n.split("/", 1)[1] if "/" in n else n
        if rel in ("constants.pkl", "bytecode.pkl") or rel.startswith("code/"):
            return n
    return None


def _unpickle_zip(path: Path) -> Any:
    """The object a torch.save zip archive holds, read with :class:`_RestrictedUnpickler`."""
    import torch

    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        if len(infos) != len(zf.infolist()):
            raise _Refused("the zip archive has duplicate entries")
        ts = _torchscript_entry(list(infos))
        if ts is not None:
            raise _Refused(
                f"a TorchScript archive (torch.jit.save; it has {_show(ts)}): snnc never loads "
                "TorchScript, loading it runs code it contains; torch.save {'state_dict': "
                "module.state_dict(), 'snnc': header} instead"
            )
        pkls = [n for n in infos if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise _Refused("not a torch.save checkpoint (no single ARCHIVE/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        size = path.stat().st_size

        def entry(rel: str, limit: int) -> bytes | None:
            info = infos.get(prefix + rel)
            if info is None:
                return None
            stored = info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size
            if not stored or info.flag_bits & 0x1:
                raise _Refused(
                    f"entry {_show(info.filename)} is compressed or encrypted; torch.save stores "
                    "entries plainly"
                )
            if info.file_size > min(limit, size):
                raise _Refused(
                    f"entry {_show(info.filename)} claims {info.file_size} bytes, more than allowed"
                )
            return zf.read(info)

        byteorder = entry("byteorder", 16) or b"little"
        if byteorder not in (b"little", b"big"):
            raise _Refused(f"unknown byte order {_show(byteorder.decode('latin-1'))}")
        version = entry("version", 64)
        if version is not None and not version.strip().isdigit():
            raise _Refused("the archive's version record is not a number")

        def read_storage(key: str, dtype_name: str, numel: int) -> torch.Tensor:
            dtype = getattr(torch, dtype_name)
            itemsize = torch.empty((), dtype=dtype).element_size()
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise _Refused(f"storage {key} is missing from the archive")
            if info.file_size != numel * itemsize:
                raise _Refused(
                    f"storage {key} holds {info.file_size} bytes, but {numel} {dtype_name} elements need "
                    f"{numel * itemsize}"
                )
            raw = entry(f"data/{key}", size)
            if numel == 0:
                return torch.empty(0, dtype=dtype)
            src = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            if byteorder == b"big" and itemsize > 1:
                unit = itemsize // 2 if dtype.is_complex else itemsize
                src = src.view(-1, unit).flip(1).reshape(-1)
            if dtype == torch.bool:  # any byte other than 0 is True; never an invalid bool
                return src != 0
            flat = torch.empty(numel, dtype=dtype)
            flat.view(torch.uint8).copy_(src)
            return flat

        data = entry("data.pkl", _MAX_PICKLE)
        return _RestrictedUnpickler(data, read_storage).load()


def _read_trusted_pickle(path: Path) -> tuple[dict, dict]:
    import torch

    try:
        obj = _unpickle_zip(path)
    except _Refused as e:
        raise SnncError(f"{path}: {e}") from None
    except Exception as e:  # a corrupt zip or pickle: zipfile, zlib and pickle raise many types
        first = str(e).splitlines()[0][:100] if str(e) else ""
        detail = f"{type(e).__name__}: {_show(first)}" if first else type(e).__name__
        raise SnncError(f"{path}: corrupt PyTorch checkpoint ({detail})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("snnc"), dict) and "state_dict" in obj):
        raise SnncError(
            f"{path}: a trusted pickle must be a dict with 'state_dict' and 'snnc' (the model header)"
        )
    state = obj["state_dict"]
    if not (
        isinstance(state, dict)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise SnncError(f"{path}: the trusted pickle's 'state_dict' must map names to tensors")
    try:
        header = json.loads(json.dumps(obj["snnc"]))
    except (TypeError, ValueError, RecursionError):
        raise SnncError(f"{path}: the trusted pickle's 'snnc' header must hold JSON values only") from None
    validate_header(header, path)
    return dict(state), header


def validate_header(header: Any, path: Path | str) -> None:
    if not isinstance(header, dict):
        raise SnncError(f"{path}: snnc metadata must be a JSON object")
    if header.get("format") != FORMAT:
        raise SnncError(
            f"{path}: format is {header.get('format')!r}, expected {FORMAT!r}; not an snnc model file"
        )
    if header.get("version") != VERSION:
        raise SnncError(
            f"{path}: model file version {header.get('version')!r} is not supported (this snnc reads "
            f"version {VERSION}); re-export it with a matching snnc"
        )
    arch = header.get("arch")
    if not (
        isinstance(arch, dict) and isinstance(arch.get("name"), str) and isinstance(arch.get("config"), dict)
    ):
        raise SnncError(f"{path}: 'arch' must be an object with 'name' and 'config'")
    for key in ("data", "meta", "neuron"):  # read with .get() downstream
        if not isinstance(header.get(key, {}), dict):
            raise SnncError(f"{path}: {key!r} must be an object; the model file is corrupt")


def save_model(path: str | os.PathLike, model: torch.nn.Module, data: dict, meta: dict | None = None) -> None:
    """Save a zoo model with its data settings and metadata, atomically."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch,
        "neuron": model.arch["config"].get("neuron", {}),
        "data": data,
        "meta": meta or {},
    }
    save_tensors(path, model.state_dict(), header)


def check_tensor_values(tensors: dict, path) -> None:
    """One-line :class:`SnncError` for a NaN or infinite value, or a mask (``*_mask``) holding
    anything but 0 and 1: no later stage (tracing, quantizing, ``inspect``) has to meet them."""
    import torch

    for key, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            continue
        if t.is_floating_point() and not bool(t.isfinite().all()):
            raise SnncError(f"{path}: tensor {key} holds NaN or infinite values; the model file is corrupt")
        if key.endswith("_mask") and t.numel() and not bool(((t == 0) | (t == 1)).all()):
            raise SnncError(f"{path}: mask {key} holds values other than 0 and 1; the model file is corrupt")


def check_arch(header: dict, path, arch: str | None) -> None:
    """A one-line :class:`UsageError` unless the file's architecture may be rebuilt with ``arch``
    (the ``--arch`` the user gave, or None). A user architecture (``package.module:factory``) is
    rebuilt only when the user names it again: a model file never carries code, and reading one
    never imports a module the file names."""
    from snnc.nn.zoo import is_user_arch

    name = header["arch"]["name"]
    shown = name if len(name) <= 100 else name[:97] + "..."
    if is_user_arch(name) and arch is None:
        raise UsageError(
            f"{path} was built by the user architecture {shown!r}; pass --arch {shown} to rebuild it "
            "(model files hold no code)"
        )
    if arch is not None and arch != name:
        raise UsageError(
            f"{path} holds architecture {shown!r}, not --arch {arch[:100]!r}; pass --arch {shown}"
        )


def load_model(path: str | os.PathLike, trust_pickle: bool = False, arch: str | None = None):
    """Rebuild a zoo model from a model file. Returns ``(model, header)``; the model is in eval mode.

    ``arch``: the ``--arch`` the user gave; needed (and equal to the file's) for a file made from a
    user architecture ``package.module:factory`` (:func:`check_arch`)."""
    from snnc.nn.zoo import build

    tensors, header = read_tensors(path, trust_pickle=trust_pickle)
    check_arch(header, path, arch)
    check_tensor_values(tensors, path)
    held = sum(t.numel() for t in tensors.values() if hasattr(t, "numel"))
    model = build(header["arch"]["name"], header["arch"]["config"], max_elements=held)  # before allocating
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SnncError(
            f"{path}: tensors do not fit architecture " f"{header['arch']['name']!r} ({first})"
        ) from None
    model.eval()
    return model, header
