"""The ``snnc`` command: thin click wrappers that parse, call one library function, print, and exit.

Every command takes ``--seed``, ``--json`` (machine-readable result on stdout), ``--quiet`` and ``--debug``.
Errors: one line on stderr, exit 1 (failure) or 2 (usage), no traceback unless ``--debug``.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path

import click

from snnc.errors import SnncError
from snnc.fileio import jsonable

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def emit_json(result: dict) -> None:
    click.echo(json.dumps(jsonable(result), indent=2, sort_keys=False))


def common_options(fn):
    """--seed, --json, --quiet, --debug on every command; SnncError -> one line + exit code."""

    @click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
    @click.option("--quiet", is_flag=True, help="No progress bar or tables.")
    @click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
    @functools.wraps(fn)
    def wrapper(*args, debug: bool, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SnncError as e:
            if debug:
                traceback.print_exc()
            click.echo(f"snnc: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("snnc: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # an unexpected failure is still one line unless --debug
            if debug:
                traceback.print_exc()
            else:
                first = (str(e).splitlines() or [""])[0]
                click.echo(
                    f"snnc: internal error: {type(e).__name__}: {first} "
                    "(rerun with --debug for the traceback)",
                    err=True,
                )
            sys.exit(1)

    return wrapper


def reporter(quiet: bool, as_json: bool):
    from snnc.ui import Reporter

    return Reporter(False if (quiet or as_json) else None)


def show(renderable, quiet: bool, as_json: bool) -> None:
    if not (quiet or as_json):
        from snnc.ui import console

        console.print(renderable)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="snnc")
def cli() -> None:
    """snnc: prune, compile and verify spiking networks for Loihi 2."""


# ---------------------------------------------------------------------------------------------
# train
@cli.command(context_settings=CONTEXT)
@click.option("--dataset", type=click.Choice(["digits", "mnist"]), default="digits", show_default=True)
@click.option(
    "--arch",
    type=click.Choice(["mlp", "lenet", "convnet", "resnet"]),
    default="mlp",
    show_default=True,
)
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True)
@click.option(
    "--steps",
    "-T",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Time steps per sample.",
)
@click.option(
    "--encoding",
    type=click.Choice(["rate", "regular", "direct"]),
    default="rate",
    show_default=True,
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--hidden", type=str, default=None, help="mlp hidden sizes, comma-separated (e.g. 256,128).")
@click.option(
    "--channels",
    type=str,
    default=None,
    help="conv channel counts, comma-separated (lenet 2, convnet 3, resnet 2).",
)
@click.option(
    "--train-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N training samples.",
)
@click.option(
    "--val-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Validate each epoch on the first N validation samples only (default: all).",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, or auto.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="Model file to write (safetensors).",
)
@common_options
def train(
    dataset,
    arch,
    epochs,
    steps,
    encoding,
    batch_size,
    lr,
    hidden,
    channels,
    train_limit,
    val_limit,
    device,
    output,
    seed,
    as_json,
    quiet,
):
    """Train a zoo model on an offline dataset and write it as a model file."""
    from snnc import checkpoint
    from snnc.train import TrainConfig, data_settings
    from snnc.train import train as run_train

    arch_config: dict = {}
    for key, text in (("hidden", hidden), ("channels", channels)):
        if text:
            try:
                arch_config[key] = [int(v) for v in text.split(",")]
            except ValueError:
                raise SnncError(
                    f"--{key} must be comma-separated integers, got {text!r}", exit_code=2
                ) from None
    cfg = TrainConfig(
        dataset=dataset,
        arch=arch,
        epochs=epochs,
        steps=steps,
        encoding=encoding,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        arch_config=arch_config,
        train_limit=train_limit,
        val_limit=val_limit,
    )
    model, result = run_train(cfg, reporter(quiet, as_json))
    meta = {
        "seed": seed,
        "accuracy": result["test_accuracy"],
        "history": result["history"],
        "train": cfg.to_dict(),
    }
    checkpoint.save_model(output, model, data_settings(dataset, steps, encoding), meta)
    result["output"] = str(output)
    if as_json:
        emit_json(result)
    elif not quiet:
        click.echo(
            f"{arch} on {dataset}: test accuracy {100 * result['test_accuracy']:.2f}% "
            f"({result['seconds_per_epoch']:.1f} s/epoch) -> {output}"
        )


# ---------------------------------------------------------------------------------------------
# inspect
@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path())
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Load a PyTorch pickle you made yourself (weights_only=True).",
)
@common_options
def inspect(file, trust_pickle, seed, as_json, quiet):
    """Describe a model file or a netx HDF5 network: layers, shapes, parameters, masks."""
    from snnc import checkpoint
    from snnc.commands.inspect import describe_model

    path = Path(file)
    if path.exists() and path.is_file() and checkpoint.sniff(path) == "hdf5":
        from snnc.targets.loihi2 import describe_netx

        info = describe_netx(path)
    elif path.is_dir() and (path / "network.net").exists():
        from snnc.targets.loihi2 import describe_netx

        info = describe_netx(path / "network.net")
    else:
        info = describe_model(path, trust_pickle=trust_pickle)
    if as_json:
        emit_json(info)
    elif not quiet:
        from snnc.ui import console, table

        console.print(f"[bold]{info['file']}[/bold]: {info['summary']}")
        console.print(table("layers", info["columns"], info["rows"]))


# --- prune, compile, simulate, evaluate: each lives in its own module, so cli.py stays a thin index.
def _register() -> None:
    import importlib

    for module in ("snnc.commands.prune", "snnc.commands.compile", "snnc.commands.simulate"):
        importlib.import_module(module).register(cli)


_register()


def main() -> None:
    """The console entry point. Once the command has returned and its output is flushed the
    process ends with ``os._exit``: the interpreter's teardown (freeing numba's compiled code and
    thousands of modules' objects) took 0.17 s of a 0.85 s one-sample ``snnc simulate``, measured;
    every file the commands write is closed (and renamed into place) before they return."""
    import os

    try:
        cli(prog_name="snnc")
        code = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):  # a reader that closed early (snnc ... | head)
            code = code or 1
    os._exit(code or 0)
