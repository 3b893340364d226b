"""``snnc train``: train a zoo model (or the user's own, ``--arch package.module:factory``) on an
offline dataset and write it as a model file.

A user architecture is imported only because ``--arch`` names it; the model file records the name
(``arch.name``), never code, and later commands rebuild the model only when given the same
``--arch`` again (:func:`snnc.checkpoint.check_arch`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from snnc.commands import Outcome
from snnc.errors import UsageError

if TYPE_CHECKING:
    from snnc.ui import Reporter


@dataclass(frozen=True)
class TrainOptions:
    """What ``snnc train`` was asked to do. ``hidden``/``channels``: comma-separated integers as
    typed (``"256,128"``), or None for the architecture's defaults."""

    output: str
    dataset: str = "digits"
    arch: str = "mlp"
    epochs: int = 10
    steps: int | None = None  # None: 16, or a spike dataset's own T
    encoding: str = "rate"
    batch_size: int = 64
    lr: float = 2e-3
    hidden: str | None = None
    channels: str | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    device: str = "auto"
    seed: int = 0


def check_arch(opts: TrainOptions) -> None:
    """A one-line :class:`UsageError` unless ``--arch`` is a zoo name or ``package.module:factory``
    (whose module is imported only when training starts)."""
    from snnc.nn.zoo import ZOO, check_user_spec, is_user_arch

    if is_user_arch(opts.arch):
        check_user_spec(opts.arch)
        if opts.hidden or opts.channels:
            raise UsageError(
                "--hidden and --channels size zoo architectures; your factory sets its own sizes"
            )
    elif opts.arch not in ZOO:
        raise UsageError(
            f"unknown --arch {opts.arch!r}: choose one of {', '.join(ZOO)}, or package.module:factory "
            "(see snnc train --help)"
        )


def arch_config(opts: TrainOptions) -> dict:
    """``{"hidden": [...], "channels": [...]}`` from the options given; one-line error otherwise."""
    config: dict = {}
    for key, text in (("hidden", opts.hidden), ("channels", opts.channels)):
        if text:
            try:
                config[key] = [int(v) for v in text.split(",")]
            except ValueError:
                raise UsageError(f"--{key} must be comma-separated integers, got {text!r}") from None
    return config


def run_train(opts: TrainOptions, reporter: Reporter | None = None) -> Outcome:
    """Train as ``opts`` says and write the model file (its header records the data settings, the
    seed, the test accuracy and the training history)."""
    from snnc import checkpoint
    from snnc import data as D
    from snnc.train import TrainConfig, data_settings, train

    check_arch(opts)
    D.check_name(opts.dataset)
    dataset = D.with_bins(opts.dataset, opts.steps)  # an event dataset binned into --steps frames
    opts = replace(opts, dataset=dataset)
    cfg = TrainConfig(
        dataset=opts.dataset,
        arch=opts.arch,
        epochs=opts.epochs,
        steps=opts.steps,
        encoding=opts.encoding,
        batch_size=opts.batch_size,
        lr=opts.lr,
        seed=opts.seed,
        device=opts.device,
        arch_config=arch_config(opts),
        train_limit=opts.train_limit,
        val_limit=opts.val_limit,
        test_limit=opts.test_limit,
    )
    model, result = train(cfg, reporter)
    meta = {
        "seed": opts.seed,
        "accuracy": result["test_accuracy"],
        "history": result["history"],
        "train": {**cfg.to_dict(), "steps": result["steps"], "encoding": result["encoding"]},
    }
    settings = data_settings(opts.dataset, result["steps"], result["encoding"])
    checkpoint.save_model(opts.output, model, settings, meta)
    result["output"] = str(opts.output)
    line = (
        f"{opts.arch} on {opts.dataset}: test accuracy {100 * result['test_accuracy']:.2f}% "
        f"({result['seconds_per_epoch']:.1f} s/epoch) -> {opts.output}"
    )
    return Outcome(result, lines=(line,))
