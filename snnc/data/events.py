"""Event-camera and spiking-audio datasets already on disk, in the formats the ``tonic`` library
reads, binned into spike frames. Nothing is downloaded, and ``tonic`` is not needed: the readers and
the binning below reimplement tonic 1.7's (``tonic/io.py``, ``tonic/datasets/*.py``,
``tonic.transforms.ToFrame(n_time_bins=T)``) so a folder tonic reads gives the same frames here
(``tests/data/test_tonic_formats.py`` compares them with tonic's own code when it is installed).

``--dataset PATH`` or ``--dataset PATH@T`` (``T`` frames per sample; default
:data:`DEFAULT_BINS`). ``PATH`` is the folder tonic keeps a dataset in (or its parent):

- **N-MNIST** (``NMNIST``): ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``; each event is 5
  bytes: x, y, polarity (bit 7) and a 23-bit timestamp in µs, ``y == 240`` marking a timestamp
  overflow (+2**13 µs from there on) (``tonic.io.read_mnist_file``). Sensor 34 x 34, 2 polarities:
  samples ``(2, 34, 34, T)``.
- **DVS Gesture** (``DVSGesture``, tonic's preprocessed copy): ``ibmGestureTrain/<user>_<lighting>/
  <label>.npy`` and ``ibmGestureTest/...``; each file an ``(N, 4)`` array of x, y, polarity and time
  in ms (times 1000 to µs). Sensor 128 x 128, 2 polarities: samples ``(2, 128, 128, T)``.
- **SHD** (``SHD``): ``shd_train.h5`` and ``shd_test.h5`` (or one ``.h5`` file, split 80/20 by class):
  HDF5 with ``spikes/times`` (per sample, seconds), ``spikes/units`` (channel 0..699) and
  ``labels``. Samples ``(700, T)``.

Binning (``ToFrame(sensor_size, n_time_bins=T)``): the window is ``(t_last - t_first) // T`` (in
the file's time unit after tonic's conversion), frame ``i`` holds the events with ``t_first + i *
window <= t < t_first + (i + 1) * window`` (so events in the remainder after ``T`` windows, the last
one included, fall out, as in tonic), counted per polarity and pixel; snnc then clamps the counts to
1 (a 0/1 spike per pixel and frame, as tonic's docs suggest for binary frames). The validation split
is 20% of each training class (fixed permutation), as for ``.npz`` datasets. Files are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from snnc.errors import SnncError, UsageError

DEFAULT_BINS = 16
MAX_BINS = 10_000
NMNIST_SENSOR = (34, 34, 2)  # tonic's (x, y, polarities)
DVSGESTURE_SENSOR = (128, 128, 2)
SHD_SENSOR = (700, 1, 1)
NMNIST_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic's NMNIST.dtype
DVSGESTURE_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
SHD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic's HSD.dtype
MAX_FILES = 2_000_000
_BINS = re.compile(r"(.*)@([0-9]+)")


# -- readers, one per format (tonic 1.7's, in numpy) ---------------------------------------------
def read_nmnist(path: str | os.PathLike) -> np.ndarray:
    """``tonic.io.read_mnist_file``: the events of one N-MNIST ``.bin`` file, ``NMNIST_DTYPE``."""
    raw = np.fromfile(path, dtype=np.uint8).astype(np.uint32)
    if raw.size % 5:
        raise SnncError(f"{path}: {raw.size} bytes is not a whole number of 5-byte N-MNIST events")
    all_y = raw[1::5]
    all_x = raw[0::5]
    all_p = (raw[2::5] & 128) >> 7
    all_ts = ((raw[2::5] & 127) << 16) | (raw[3::5] << 8) | raw[4::5]
    for i in np.where(all_y == 240)[0]:  # timestamp overflow events
        all_ts[i:] += 2**13
    td = np.where(all_y != 240)[0]
    ev = np.empty(len(td), dtype=NMNIST_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = all_x[td], all_y[td], all_ts[td], all_p[td]
    return ev


def read_dvsgesture(path: str | os.PathLike) -> np.ndarray:
    """``tonic.datasets.DVSGesture.__getitem__``: one ``.npy`` of ``(N, 4)`` x, y, p, t [ms] ->
    events in µs, ``DVSGESTURE_DTYPE``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SnncError(f"{path}: not a readable .npy event file ({str(e)[:80]})") from None
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.dtype.kind not in "biuf":
        raise SnncError(
            f"{path}: DVS Gesture events must be a numeric (N, 4) array of x, y, p, t; got " f"{arr.shape}"
        )
    arr = arr.copy()
    arr[:, 3] *= 1000  # ms -> µs, in the array's own dtype as tonic does
    ev = np.empty(len(arr), dtype=DVSGESTURE_DTYPE)
    for i, name in enumerate(("x", "y", "p", "t")):
        ev[name] = arr[:, i].astype(DVSGESTURE_DTYPE[name])
    return ev


def read_shd(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """``tonic.datasets.SHD``: every sample of an SHD HDF5 file as events ``SHD_DTYPE`` (times in
    µs, polarity 1), and the labels."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        raise SnncError(
            f"{path}: not an HDF5 file; SHD files are HDF5 (spikes/times, spikes/units, " "labels)"
        ) from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise SnncError(
                    f"{path}: missing {key!r}; not an SHD file (spikes/times, spikes/units, " "labels)"
                )
        times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"]
        n = len(labels)
        if len(times) != n or len(units) != n:
            raise SnncError(f"{path}: {len(times)} times, {len(units)} units and {n} labels differ in number")
        samples = []
        for i in range(n):
            t = np.asarray(times[i]).astype(np.float64) * 1e6
            u = np.asarray(units[i])
            if t.shape != u.shape or t.ndim != 1:
                raise SnncError(f"{path}: sample {i} has {t.shape} times but {u.shape} units")
            ev = np.empty(len(t), dtype=SHD_DTYPE)
            ev["t"], ev["x"], ev["p"] = t, u, 1
            samples.append(ev)
        y = np.asarray(labels[()]).astype(np.int64).reshape(-1)
    return samples, y


# -- binning: tonic.transforms.ToFrame(sensor_size, n_time_bins) --------------------------------
def to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], n_time_bins: int) -> np.ndarray:
    """Event counts ``(T, P, H, W)`` (events with ``y``) or ``(T, P, X)``, exactly as tonic's
    ``to_frame_numpy(events, sensor_size, n_time_bins=T)`` (slicing by ``SliceByTimeBins``), but
    counted in int32 where tonic's int16 would wrap past 32767 events per pixel and frame."""
    sx, sy, sp = sensor_size
    has_y = "y" in events.dtype.names
    shape = (n_time_bins, sp, sy, sx) if has_y else (n_time_bins, sp, sx)
    frames = np.zeros(shape, dtype=np.int32)
    if len(events) == 0:
        return frames
    p = events["p"].astype(int)
    if sp == 1:
        if np.unique(p).size > 1:
            raise SnncError("single polarity sensor, but the events hold both polarities")
        p = np.zeros_like(p)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64) if has_y else None
    if x.min() < 0 or x.max() >= sx or (has_y and (y.min() < 0 or y.max() >= sy)) or p.max() >= sp:
        raise SnncError(f"events lie outside the {sx} x {sy} x {sp} sensor")
    times = events["t"]
    window = (times[-1] - times[0]) // n_time_bins
    starts = np.arange(n_time_bins) * window + times[0]
    lo = np.searchsorted(times, starts)
    hi = np.searchsorted(times, starts + window)
    for i in range(n_time_bins):
        s = slice(lo[i], hi[i])
        index = (i, p[s], y[s], x[s]) if has_y else (i, p[s], x[s])
        np.add.at(frames, index, 1)
    return frames


def spike_frames(events: np.ndarray, sensor_size: tuple[int, int, int], steps: int, flat: bool) -> np.ndarray:
    """One sample's 0/1 spikes in snnc's layout: ``(P, H, W, T)``, or ``(P * X, T)`` when ``flat``."""
    frames = to_frames(events, sensor_size, steps) > 0
    out = np.moveaxis(frames, 0, -1)
    return out.reshape(-1, steps).astype(np.uint8) if flat else out.astype(np.uint8)


# -- the datasets --------------------------------------------------------------------------------
def split_spec(name: str) -> tuple[str, int | None]:
    """``"PATH@T"`` -> ``("PATH", T)``; ``"PATH"`` -> ``("PATH", None)``."""
    m = _BINS.fullmatch(name)
    if m and not Path(name).exists():
        return m.group(1), int(m.group(2))
    return name, None


def _child(path: Path, *names: str) -> Path | None:
    for n in names:
        if (path / n).is_dir():
            return path / n
    return None


def detect(path: str | os.PathLike) -> tuple[str, Path] | None:
    """``(format, root)`` of a tonic-format dataset at ``path`` (the folder tonic keeps it in, or its
    parent; an SHD ``.h5`` file), or None."""
    p = Path(path)
    if p.is_file():
        return ("shd", p) if p.suffix in (".h5", ".hdf5") else None
    if not p.is_dir():
        return None
    for sub in ("NMNIST", "DVSGesture", "SHD"):  # tonic's save_to/<class name>
        found = _child(p, sub)
        if found is not None and detect(found) is not None:
            return detect(found)
    if (p / "Train").is_dir() and (p / "Test").is_dir():
        return "nmnist", p
    if (p / "ibmGestureTrain").is_dir() and (p / "ibmGestureTest").is_dir():
        return "dvsgesture", p
    if (p / "shd_train.h5").is_file() and (p / "shd_test.h5").is_file():
        return "shd", p
    return None


def _files(root: Path, suffix: str) -> list[Path]:
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        out += [Path(dirpath) / f for f in sorted(files) if f.endswith(suffix)]
        if len(out) > MAX_FILES:
            raise SnncError(f"{root}: more than {MAX_FILES} {suffix} files")
    return out


def _nmnist_split(root: Path, steps: int) -> tuple[np.ndarray, np.ndarray]:
    files = _files(root, "bin")
    if not files:
        raise SnncError(f"{root}: no .bin files; N-MNIST keeps them in {root}/<digit>/*.bin")
    xs, ys = [], []
    for f in files:
        label = f.parent.name[-1:]
        if not label.isdigit():
            raise SnncError(f"{f}: its folder {f.parent.name!r} does not end in a digit (the label)")
        xs.append(spike_frames(read_nmnist(f), NMNIST_SENSOR, steps, flat=False))
        ys.append(int(label))
    return np.stack(xs), np.array(ys, dtype=np.int64)


def _dvs_split(root: Path, steps: int) -> tuple[np.ndarray, np.ndarray]:
    files = [f for f in _files(root, "npy") if f.parent != root]
    if not files:
        raise SnncError(
            f"{root}: no .npy files; DVS Gesture keeps them in " f"{root}/<user>_<lighting>/<label>.npy"
        )
    xs, ys = [], []
    for f in files:
        if not f.stem.isdigit():
            raise SnncError(f"{f}: the file name is not the label (e.g. 3.npy)")
        xs.append(spike_frames(read_dvsgesture(f), DVSGESTURE_SENSOR, steps, flat=False))
        ys.append(int(f.stem))
    return np.stack(xs), np.array(ys, dtype=np.int64)


def _shd_split(path: Path, steps: int) -> tuple[np.ndarray, np.ndarray]:
    samples, y = read_shd(path)
    if not samples:
        raise SnncError(f"{path}: no samples")
    return np.stack([spike_frames(ev, SHD_SENSOR, steps, flat=True) for ev in samples]), y


def _stratified(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, part)``: ``share`` of each class (fixed permutation) in ``part``."""
    rng = np.random.default_rng(seed)
    part = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(y == c))[: int((y == c).sum() * share)] for c in np.unique(y)]
        )
    ).astype(np.int64)
    return np.setdiff1d(np.arange(len(y)), part), part


def load_events(name: str, split_seed: int) -> dict:
    """The splits of the tonic-format dataset ``name`` (``PATH`` or ``PATH@T``):
    ``{"train": (x, y), "val": ..., "test": ..., "steps": T}``, ``x`` uint8 0/1 spikes."""
    path, steps = split_spec(name)
    steps = DEFAULT_BINS if steps is None else steps
    if not 1 <= steps <= MAX_BINS:
        raise UsageError(f"{name}: {steps} frames per sample; give @T with T in [1, {MAX_BINS}]")
    found = detect(path)
    if found is None:
        raise UsageError(f"{path}: not an N-MNIST, DVS Gesture or SHD folder in tonic's layout (see docs)")
    fmt, root = found
    if fmt == "nmnist":
        train, test = _nmnist_split(root / "Train", steps), _nmnist_split(root / "Test", steps)
    elif fmt == "dvsgesture":
        train, test = _dvs_split(root / "ibmGestureTrain", steps), _dvs_split(root / "ibmGestureTest", steps)
    elif root.is_file():
        x, y = _shd_split(root, steps)
        rest, part = _stratified(y, 0.2, split_seed + 1)
        train, test = (x[rest], y[rest]), (x[part], y[part])
    else:
        train, test = _shd_split(root / "shd_train.h5", steps), _shd_split(root / "shd_test.h5", steps)
    x, y = train
    keep, val = _stratified(y, 0.2, split_seed)
    if len(val) == 0 or len(keep) == 0:
        raise SnncError(f"{path}: too few training samples to carve a validation split (20% per class)")
    return {"train": (x[keep], y[keep]), "val": (x[val], y[val]), "test": test, "steps": steps, "format": fmt}
