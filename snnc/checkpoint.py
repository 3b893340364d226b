"""The one place that reads and writes model files.

A model file is **safetensors** whatever its name (``model.pt``): the tensors of the ``state_dict``
(masks are buffers, so they are in it) and one metadata entry ``snnc`` holding JSON::

    {"format": "snnc-model", "version": 1, "arch": {"name", "config"}, "neuron": {...},
     "data": {"dataset", "steps", "encoding"}, "meta": {"seed", "accuracy", "history", ...}}

plus ``sha256``, a digest of every tensor's bytes, so a tampered file is refused rather than run.
PyTorch pickles are refused: torch 2.3 (pinned by lava-dl) has known bypasses of
``torch.load(weights_only=True)`` (CVE-2025-32434, fixed in torch 2.6), so unpickling an untrusted file
can execute code. ``trust_pickle=True`` loads a user's own checkpoint, still with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from snnc.errors import SnncError
from snnc.fileio import atomic_path

if TYPE_CHECKING:  # torch takes ~1.5 s to import; `snnc simulate` never needs it
    import torch

FORMAT = "snnc-model"
VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], header: dict) -> None:
    """Write tensors + JSON header (under metadata key ``snnc``) atomically as safetensors."""
    from safetensors.torch import save_file

    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    header = dict(header, sha256=tensor_digest(clean))
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata={"snnc": json.dumps(header, sort_keys=True)})


def sniff(path: Path) -> str:
    """'safetensors', 'torch-zip', 'pickle', 'hdf5' or 'unknown', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 0 < n < _MAX_HEADER and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise SnncError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise SnncError(f"{path}: is a directory, not a model file")
    return path


def read_tensors(path: str | os.PathLike, trust_pickle: bool = False) -> tuple[dict, dict]:
    """Read ``(tensors, header)`` from a model file, validating format, version, arch and digest."""
    path = _require_file(path)
    kind = sniff(path)
    if kind in ("torch-zip", "pickle"):
        if not trust_pickle:
            raise SnncError(
                f"{path}: refusing to load a PyTorch pickle: unpickling can run code and torch 2.3's "
                "weights_only=True is bypassable (CVE-2025-32434); convert it to safetensors, or pass "
                "--trust-pickle if you made this file yourself"
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
    validate_header(header, path)
    digest = header.get("sha256")
    if digest is not None and digest != tensor_digest(tensors):
        raise SnncError(f"{path}: tensor data does not match its checksum; the file was altered")
    return tensors, header


def _read_trusted_pickle(path: Path) -> tuple[dict, dict]:
    try:
        import torch

        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise SnncError(f"{path}: cannot load PyTorch checkpoint ({type(e).__name__})") from None
    if not (isinstance(obj, dict) and isinstance(obj.get("snnc"), dict) and "state_dict" in obj):
        raise SnncError(
            f"{path}: a trusted pickle must be a dict with 'state_dict' and 'snnc' (the model header)"
        )
    validate_header(obj["snnc"], path)
    return dict(obj["state_dict"]), obj["snnc"]


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


def load_model(path: str | os.PathLike, trust_pickle: bool = False):
    """Rebuild a zoo model from a model file. Returns ``(model, header)``; the model is in eval mode."""
    from snnc.nn.zoo import build

    tensors, header = read_tensors(path, trust_pickle=trust_pickle)
    model = build(header["arch"]["name"], header["arch"]["config"])
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise SnncError(
            f"{path}: tensors do not fit architecture " f"{header['arch']['name']!r} ({first})"
        ) from None
    model.eval()
    return model, header
