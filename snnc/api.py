"""snnc's Python API: the commands of the CLI as functions, on models and data in memory.

In the spirit of Torch-Pruning (``tp.pruner.MetaPruner(model, example_inputs, ...)``), a model goes
in and a pruned model comes out::

    import snnc
    trained = snnc.train("digits", arch="convnet", epochs=2)
    pruned = snnc.prune(trained.model, "digits", method="l1", sparsity=0.5, epochs=2)
    build = snnc.compile(pruned.model, target="loihi2", out="build")
    y = snnc.simulate("build", x)              # x: (N, *input_shape, T) 0/1 spikes

Every function runs the very code of its command (``snnc.commands.*``: the same options dataclass
and ``run_<command>``), so results, checks and errors are the CLI's: a bad argument raises
:class:`snnc.errors.UsageError`, a bad file :class:`snnc.errors.SnncError`. What the commands read
from files the functions also take in memory, through temporary files that are removed afterwards:

- ``model``: a path (an snnc model file, a netx ``.net`` or a NIR ``.nir`` file), or a
  :class:`snnc.nn.SpikingNet` (a zoo model, one from ``--arch package.module:factory``, or one
  assembled from ``snnc.nn`` blocks: :func:`snnc.nn.zoo.describe` writes down its layers);
- ``data``: a dataset name or path (``digits``, ``mnist``, ``PATH.npz``, an event-dataset folder), a
  :class:`snnc.data.Dataset`, a pair ``(x, y)`` of arrays, or an iterable of ``(x, y)`` batches (a
  PyTorch ``DataLoader``): ``x`` frames ``(N, C, H, W)`` in [0, 1] or 0/1 spikes ``(N, ..., T)``,
  ``y`` integer labels. Without ``test_data`` the test split is 20% of each class (fixed
  permutation). A model trained on data in memory records a temporary path as its dataset: pass
  ``data``/``dataset`` again to later calls.

Each returns a :class:`Result`: ``result`` (what ``--json`` prints), ``path`` (the file or build
written, when ``out`` was given) and ``model`` (the trained or pruned model, eval mode);
:func:`simulate` returns the output spikes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snnc.errors import UsageError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Result:
    """What a command returned: ``result`` (its ``--json`` document), the ``model`` it made (train,
    prune; None otherwise) and the ``path`` it wrote (None when nothing was kept)."""

    result: dict
    model: Any = None
    path: str | None = None


# -- models and data in memory -> the files the commands read ------------------------------------
def _model_file(model, tmp: Path) -> tuple[str, str | None]:
    """``(path, arch)`` for a model argument: a path as it is, a :class:`SpikingNet` written into
    ``tmp`` (``arch``: its user architecture, which the commands then may rebuild)."""
    if isinstance(model, str | os.PathLike):
        return str(model), None
    from snnc import checkpoint
    from snnc.nn.zoo import LAYERS, SpikingNet, build, describe, is_user_arch

    if not isinstance(model, SpikingNet):
        raise UsageError(f"model must be a path or a snnc.nn.SpikingNet, got {type(model).__name__}")
    name = (model.arch or {}).get("name")
    if name is None:  # assembled by hand: its layers become the architecture
        described = build(LAYERS, describe(model))
        described.load_state_dict(model.state_dict())
        model = described
    path = tmp / "model.pt"
    checkpoint.save_model(path, model.cpu(), {}, {})
    return str(path), (name if is_user_arch(name) else None)


def _arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` numpy arrays from a pair of arrays/tensors or an iterable of batches."""
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        return np.asarray(_numpy(data[0])), np.asarray(_numpy(data[1]))
    if isinstance(data, Iterable):
        xs, ys = [], []
        for batch in data:
            if not (isinstance(batch, tuple | list) and len(batch) == 2):
                raise UsageError("data batches must be (x, y) pairs")
            xs.append(np.asarray(_numpy(batch[0])))
            ys.append(np.asarray(_numpy(batch[1])).reshape(-1))
        if not xs:
            raise UsageError("the data holds no batches")
        return np.concatenate(xs), np.concatenate(ys)
    raise UsageError(
        f"data must be a dataset name or path, a snnc.data.Dataset, (x, y) arrays or (x, y) batches; "
        f"got {type(data).__name__}"
    )


def _numpy(t):
    return t.detach().cpu().numpy() if hasattr(t, "detach") else t


def _dataset(data, test_data, tmp: Path) -> str | None:
    """A dataset name the commands read: a name or path as it is, anything else as an ``.npz`` in
    ``tmp`` (``x_train``, ``y_train``, ``x_test``, ``y_test``, and ``x_val``, ``y_val`` from a
    :class:`~snnc.data.Dataset`)."""
    if data is None or isinstance(data, str | os.PathLike):
        return None if data is None else str(data)
    from snnc import data as D

    arrays: dict[str, np.ndarray] = {}
    if isinstance(data, D.Dataset):
        for split in ("train", "val", "test"):
            arrays[f"x_{split}"], arrays[f"y_{split}"] = data.split(split)
    else:
        x, y = _arrays(data)
        if test_data is not None:
            xt, yt = _arrays(test_data)
        else:
            rng = np.random.default_rng(D.SPLIT_SEED)
            test = np.sort(
                np.concatenate(
                    [rng.permutation(np.flatnonzero(y == c))[: (y == c).sum() // 5] for c in np.unique(y)]
                )
            )
            keep = np.setdiff1d(np.arange(len(y)), test)
            x, y, xt, yt = x[keep], y[keep], x[test], y[test]
        arrays = {"x_train": x, "y_train": y.astype(np.int64), "x_test": xt, "y_test": yt.astype(np.int64)}
    if arrays["x_train"].ndim != 4:  # spikes: the commands want 0/1 integers
        arrays = {k: (v.astype(np.uint8) if k.startswith("x_") else v) for k, v in arrays.items()}
    path = tmp / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def _load(path: str, arch: str | None):
    from snnc import checkpoint

    model, _ = checkpoint.load_model(path, arch=arch)
    return model


def _reporter(progress: bool):
    from snnc.ui import Reporter

    return Reporter(progress)


# -- the commands --------------------------------------------------------------------------------
def train(
    data="digits",
    arch: str = "mlp",
    *,
    epochs: int = 10,
    out: PathLike | None = None,
    test_data=None,
    seed: int = 0,
    progress: bool = False,
    **options,
) -> Result:
    """``snnc train``: train ``arch`` (a zoo name or ``package.module:factory``) on ``data``.
    ``options``: the rest of :class:`snnc.commands.train.TrainOptions` (``steps``, ``encoding``,
    ``batch_size``, ``lr``, ``hidden``, ``channels``, ``train_limit``, ``val_limit``, ``device``)."""
    from snnc.commands.train import TrainOptions, run_train
    from snnc.nn.zoo import is_user_arch

    with tempfile.TemporaryDirectory(prefix="snnc-api-") as tmp:
        dataset = _dataset(data, test_data, Path(tmp))
        output = str(out) if out is not None else str(Path(tmp) / "model.pt")
        opts = TrainOptions(output=output, dataset=dataset, arch=arch, epochs=epochs, seed=seed, **options)
        outcome = run_train(opts, _reporter(progress))
        model = _load(output, arch if is_user_arch(arch) else None)
    return Result(outcome.result, model, None if out is None else str(out))


def prune(
    model,
    data=None,
    *,
    method: str = "l1",
    sparsity: float = 0.5,
    epochs: int = 10,
    out: PathLike | None = None,
    test_data=None,
    seed: int = 0,
    progress: bool = False,
    **options,
) -> Result:
    """``snnc prune``: fine-tune and prune ``model`` on ``data`` (None: the model file's dataset).
    ``options``: the rest of :class:`snnc.commands.prune.PruneOptions` (``steps``, ``lr``,
    ``batch_size``, ``train_limit``, ``window``, ``distill``, ``lr_schedule``, ``allocation``,
    ``objective``, ``regen``, ``report``, ``plot_dir``, ``arch``). The JSON report is written beside
    ``out`` (``.json``) as by the CLI."""
    from snnc.commands.prune import PruneOptions, run_prune

    with tempfile.TemporaryDirectory(prefix="snnc-api-") as tmp:
        path, arch = _model_file(model, Path(tmp))
        arch = options.pop("arch", None) or arch
        dataset = _dataset(data, test_data, Path(tmp))
        output = str(out) if out is not None else str(Path(tmp) / "pruned.pt")
        opts = PruneOptions(
            model=path,
            method=method,
            sparsity=sparsity,
            output=output,
            epochs=epochs,
            dataset=dataset,
            seed=seed,
            arch=arch,
            **options,
        )
        outcome = run_prune(opts, _reporter(progress))
        pruned = _load(output, arch)
    return Result(outcome.result if outcome is not None else {}, pruned, None if out is None else str(out))


def compile(  # noqa: A001 - mirrors `snnc compile`
    model,
    target: str = "loihi2",
    out: PathLike | None = None,
    *,
    data=None,
    seed: int = 0,
    **options,
) -> Result:
    """``snnc compile``: compile ``model`` for ``target`` into the build directory ``out`` (None: a
    temporary one, removed; the report is still returned). ``data``: report float vs fixed accuracy
    on its test split. ``options``: the rest of :class:`snnc.commands.compile.CompileOptions`
    (``calib``, ``limit``, ``cores``)."""
    from snnc.commands.compile import CompileOptions, run_compile

    with tempfile.TemporaryDirectory(prefix="snnc-api-") as tmp:
        path, arch = _model_file(model, Path(tmp))
        dataset = _dataset(data, None, Path(tmp))
        output = str(out) if out is not None else str(Path(tmp) / "build")
        opts = CompileOptions(
            model=path, target=target, output=output, dataset=dataset, seed=seed, arch=arch, **options
        )
        outcome = run_compile(opts)
    return Result(outcome.result, None, None if out is None else str(out))


@dataclass(frozen=True)
class Simulation:
    """What :func:`simulate` returns: ``output`` ``(N, *output_shape, T)`` (the last layer's spikes
    as Lava's sink records them, or the ``record``-ed layer's) and ``result`` (``--json``'s)."""

    output: np.ndarray
    result: dict


def simulate(net: PathLike, x, *, backend: str = "sim", record: str | None = None) -> Simulation:
    """``snnc simulate``: run ``net`` (a build directory, a netx or NIR file) on spikes ``x``
    ``(N, *input_shape, T)`` (an array or tensor of 0/1) with ``backend`` sim, lava or onnx."""
    from snnc.commands.simulate import SimulateOptions, run_simulate

    with tempfile.TemporaryDirectory(prefix="snnc-api-") as tmp:
        xin, yout = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(xin, np.asarray(_numpy(x)))
        outcome = run_simulate(
            SimulateOptions(net=str(net), input=str(xin), output=str(yout), backend=backend, record=record)
        )
        y = np.load(yout, allow_pickle=False)
    return Simulation(y, outcome.result)


def evaluate(target, data=None, *, backend: str = "sim", seed: int = 0, **options) -> Result:
    """``snnc evaluate``: test accuracy of a model (path or :class:`SpikingNet`), build directory or
    network file on ``data`` (None: the file's dataset). ``options``: ``limit``, ``steps``,
    ``encoding``, ``arch``."""
    from snnc.commands.evaluate import EvaluateOptions, run_evaluate

    with tempfile.TemporaryDirectory(prefix="snnc-api-") as tmp:
        if isinstance(target, str | os.PathLike):
            path, arch = str(target), None
        else:
            path, arch = _model_file(target, Path(tmp))
        arch = options.pop("arch", None) or arch
        dataset = _dataset(data, None, Path(tmp))
        outcome = run_evaluate(
            EvaluateOptions(target=path, dataset=dataset, backend=backend, seed=seed, arch=arch, **options)
        )
    return Result(outcome.result)
