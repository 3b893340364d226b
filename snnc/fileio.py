"""Atomic output: every file and build directory snnc writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from snnc.errors import UsageError


def jsonable(obj):
    """A copy of ``obj`` that ``json.dumps`` accepts: numpy arrays/scalars to lists/numbers, paths to str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    """Same real path (symlinks resolved), or the same file under two names (a hard link)."""
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_distinct_paths(inputs: dict[str, str | os.PathLike], outputs: dict[str, str | os.PathLike]) -> None:
    """One-line :class:`UsageError` when an output would overwrite an input or another output.

    ``inputs``/``outputs``: option name (as the user wrote it, e.g. ``"--report"``) -> path.
    Paths are compared as real paths, so a symlink or hard link to an input is caught too.
    """
    outs = list(outputs.items())
    for i, (oname, out) in enumerate(outs):
        for iname, inp in inputs.items():
            if _same(Path(out), Path(inp)):
                raise UsageError(
                    f"{oname} {out} is the input {iname} {inp}; choose another output path "
                    "(the input would be overwritten)"
                )
        for oname2, out2 in outs[i + 1 :]:
            if _same(Path(out), Path(out2)):
                raise UsageError(
                    f"{oname} {out} and {oname2} {out2} are the same file; give two different paths"
                )


def check_not_inside(inputs: dict[str, str | os.PathLike], out_dir: str | os.PathLike, what: str) -> None:
    """One-line :class:`UsageError` when an input is the directory ``out_dir`` or lies inside it
    (``out_dir`` is replaced as a whole, so the input would be deleted). ``what``: its option name."""
    root = _real(out_dir)
    for iname, inp in inputs.items():
        real = _real(inp)
        if real == root or real.is_relative_to(root):
            raise UsageError(
                f"{what} {out_dir} contains the input {iname} {inp}, and the build directory is replaced "
                "as a whole; choose another output directory"
            )


def _check_parent(path: Path) -> Path:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent} is not writable; choose another output path")
    return parent


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OS error while creating or renaming an output (``/proc``, ``/sys``, a read-only or full
    file system) as a one-line :class:`UsageError` (a path problem, exit 2) naming the path."""
    try:
        yield
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(f"cannot write {path} ({why}); choose another output path") from None


# Signals and atomic writes: a SIGINT/SIGTERM handler (install_signal_handlers) removes every temp
# file and directory in _LIVE before it raises; while one is being created, registered or renamed
# into place, signals are held (_deferred_signals) and raised when that step is complete, so that
# no temp escapes the registry and no rename is cut in half.
_LIVE: set[Path] = set()
_DEFER: dict = {"depth": 0, "pending": None}


def _remove_live() -> None:
    for p in list(_LIVE):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    _LIVE.clear()


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM inside; raise the held one on leaving normally (temps removed first)."""
    _DEFER["depth"] += 1
    try:
        yield
    finally:
        _DEFER["depth"] -= 1
    pending = _DEFER["pending"]
    if pending is not None and not _DEFER["depth"]:
        _DEFER["pending"] = None
        _remove_live()
        raise pending


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    parent = _check_parent(path)
    with _deferred_signals(), _writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp_path = Path(tmp)
        _LIVE.add(tmp_path)
    try:
        yield tmp_path
        with _deferred_signals(), _writing(path):
            os.replace(tmp_path, path)
            _LIVE.discard(tmp_path)
    except BaseException:
        _LIVE.discard(tmp_path)
        tmp_path.unlink(missing_ok=True)
        raise


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse (one-line :class:`UsageError`) an output directory path that is a file or whose parent
    is missing or not writable; return the parent. :func:`atomic_dir` runs it; a command runs it
    first to fail before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory; choose another output directory")
    return _check_parent(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` (old content removed)."""
    path = Path(path)
    parent = check_output_dir(path)
    with _deferred_signals(), _writing(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
        _LIVE.add(tmp)
    try:
        yield tmp
        with _deferred_signals(), _writing(path):
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=parent))
                os.replace(path, old / "x")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
            _LIVE.discard(tmp)
    except BaseException:
        _LIVE.discard(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


MAX_H5_ELEMENTS = 1 << 22  # values in all datasets together (4 M; the largest network snnc ships: 0.7 M)


def check_h5_self_contained(f, path: str | os.PathLike, max_elements: int = MAX_H5_ELEMENTS):
    """Return the open h5py ``File`` ``f`` when every object in it is stored in the file itself;
    else close it and raise a one-line :class:`UsageError` before any data is read.

    Refused: an external link (``h5py.ExternalLink``: an object in another file), a dataset with
    external raw storage (its bytes live in other files) and a virtual dataset (a mapping onto
    other files' datasets). Reading such a file would read, or report on, files the user never
    named. Soft links name a path inside the same file: one that does not resolve (dangling, or a
    loop) is refused; the others are not followed (their targets are walked as themselves).
    Also refused: more than ``max_elements`` values in all datasets together (a compressed
    dataset can claim far more memory than the file's size), and, once all that is checked, a
    float dataset holding NaN, infinity or a magnitude of 2**62 or more.
    """

    def refuse(name: str, why: str, hint: str = "snnc reads only self-contained HDF5 files"):
        f.close()
        raise UsageError(f"{path}: object /{name} {why}; {hint}")

    try:
        datasets = _walk_h5(f, path, max_elements, refuse)
        for name, ds in datasets:  # only once every object is known to live in this file
            if ds.dtype.kind == "f" and ds.size:
                v = np.asarray(ds[()], np.float64)
                if not np.isfinite(v).all() or np.abs(v).max() >= 2.0**62:  # no integer type holds it
                    refuse(name, "holds NaN, infinite or out-of-range values", "the file is corrupt")
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # h5py's errors on a damaged file
        f.close()
        first = (str(e).splitlines() or [""])[0][:160]
        raise UsageError(f"{path}: corrupt HDF5 file ({type(e).__name__}: {first})") from None
    return f


def _walk_h5(f, path, max_elements: int, refuse) -> list:
    """Every dataset of ``f`` as ``(name, dataset)``, refusing what :func:`check_h5_self_contained`
    refuses on the way; reads no data."""
    import h5py

    datasets: list = []
    seen: set = set()
    total = 0
    stack = [("", f)]
    while stack:
        prefix, grp = stack.pop()
        for key in grp:
            name = f"{prefix}{key}"
            link = grp.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(name, "is an external link to another file")
            if isinstance(link, h5py.SoftLink):  # not followed (its target is walked as itself)
                if grp.get(key) is None:  # dangling, or a loop of soft links
                    refuse(name, f"is a soft link to {link.path!r}, which does not resolve", "it is corrupt")
                continue
            obj = grp[key]  # not .get(): h5py.get hides a damaged object as None
            if isinstance(obj, h5py.Group):
                addr = h5py.h5o.get_info(obj.id).addr
                if addr not in seen:
                    seen.add(addr)
                    stack.append((f"{name}/", obj))
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    refuse(name, "is a virtual dataset mapped onto other files")
                if obj.id.get_create_plist().get_external_count() > 0:
                    refuse(name, "keeps its data in external files")
                total += obj.size or 0
                if total > max_elements:
                    refuse(name, f"takes the file past {max_elements} values", "the network is too large")
                datasets.append((name, obj))
    return datasets


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by :func:`install_signal_handlers`. It unwinds as Ctrl-C
    does (a ``BaseException``, so no ``except Exception`` swallows it), and every
    :func:`atomic_path` / :func:`atomic_dir` on the way removes its temp file; exit status 143."""

    exit_code = 143


def install_signal_handlers() -> None:
    """SIGINT raises ``KeyboardInterrupt`` (exit 130) and SIGTERM :class:`Terminated` (exit 143) in
    the main thread, after removing the temp files and directories of the atomic writes in
    progress; further signals are ignored from then on, so the clean-up that the exception runs on
    its way out is not itself interrupted. Call it once, from the process's entry point."""

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exc = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if _DEFER["depth"]:
            _DEFER["pending"] = exc
            return
        _remove_live()
        raise exc

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
