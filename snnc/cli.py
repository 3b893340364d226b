"""The ``snnc`` command: click only. Each command parses its options into a frozen options dataclass,
calls the one function of its module in :mod:`snnc.commands`, and prints the :class:`Outcome`.

Every command takes ``--seed``, ``--json`` (machine-readable result on stdout), ``--quiet`` and ``--debug``.
Errors: one line on stderr, exit 1 (failure) or 2 (usage), no traceback unless ``--debug``.
Nothing imports this module; it imports no torch, numba, ONNX or Lava itself (``snnc --help`` and
``snnc simulate`` start fast), and the command modules only when their command runs.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import traceback
from typing import TYPE_CHECKING

import click

from snnc.errors import SnncError

if TYPE_CHECKING:
    from snnc.commands import Outcome

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
ARCH_HELP = (
    "The model file's user architecture package.module:factory, needed to rebuild a model trained "
    "with it (model files hold no code)."
)
TRUST_PICKLE_HELP = (
    "Load a PyTorch checkpoint you made yourself, through a restricted unpickler that admits only "
    "tensors and plain values; TorchScript archives are refused."
)


class OneLineUsageError(click.UsageError):
    """A usage error printed as the one line ``snnc: error: ...`` (exit 2), like a library
    :class:`~snnc.errors.UsageError`, instead of click's usage block."""

    def show(self, file=None) -> None:
        click.echo(f"snnc: error: {self.format_message()}", file=file, err=True)


class RegistryChoice(click.Choice):
    """The names in a plugin registry (``"module:ATTRIBUTE"``, a :class:`snnc.registry.Registry`),
    read when the command line is parsed or the help is shown, not when this module is imported:
    a plugin registered at run time is a valid choice, and listing the names imports no plugin."""

    def __init__(self, registry: str) -> None:
        self.registry_path = registry
        self.case_sensitive = True

    def registry(self):
        module, attr = self.registry_path.split(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def choices(self) -> tuple[str, ...]:
        return self.registry().names()

    def convert(self, value, param, ctx):
        registry = self.registry()
        names = registry.names()
        if value not in names:
            raise OneLineUsageError(f"unknown {registry.what} {value!r}; choose one of {', '.join(names)}")
        return value


TARGET_CHOICE = RegistryChoice("snnc.targets.registry:TARGETS")
METHOD_CHOICE = RegistryChoice("snnc.prune.methods.registry:METHODS")


def emit_json(result: dict) -> None:
    from snnc.fileio import jsonable

    click.echo(json.dumps(jsonable(result), indent=2, sort_keys=False))


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped: a message quoting a name from a crafted file stays
    the one line the error contract promises."""
    return "\\n".join(text.splitlines()) or text


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
            click.echo(f"snnc: error: {one_line(str(e))}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:  # SIGINT, or SIGTERM (snnc.fileio.Terminated): temp files removed
            code = getattr(e, "exit_code", 130)
            click.echo("snnc: terminated" if code == 143 else "snnc: interrupted", err=True)
            sys.exit(code)
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
    """The progress bar: off with --quiet or --json, else on when stdout is a terminal."""
    from snnc.ui import Reporter

    return Reporter(False if (quiet or as_json) else None)


def pass_log(quiet: bool, as_json: bool):
    """One printed line per compiler pass, unless --quiet or --json."""
    if quiet or as_json:
        return None
    from snnc.ui import console

    return lambda line: console.print(line, highlight=False)


def finish(outcome: Outcome | None, quiet: bool, as_json: bool) -> None:
    """Print a command's outcome: the JSON result with --json; nothing with --quiet; else its
    heading, table and lines. None (a torchrun rank other than 0) prints nothing."""
    if outcome is None:
        return
    if as_json:
        emit_json(outcome.result)
        return
    if quiet:
        return
    if outcome.heading is not None or outcome.table is not None:
        from snnc.ui import console, table

        if outcome.heading is not None:
            console.print(outcome.heading)
        if outcome.table is not None:
            t = outcome.table
            console.print(table(t.title, t.columns, t.rows))
    for line in outcome.lines:
        click.echo(line)


class OneLineErrorsGroup(click.Group):
    """The ``snnc`` group: click's own errors (a missing option, a bad value, an unknown command)
    are one line ``snnc: error: ...`` and exit 2, as snnc's usage errors are, not click's usage
    block; the help it points to is named at the end of the line."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # bare `snnc`: the help
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"snnc: error: {one_line(e.format_message())}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"snnc: error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("snnc: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrorsGroup, context_settings=CONTEXT)
@click.version_option(package_name="snnc")
def cli() -> None:
    """snnc: prune, compile and verify spiking networks for Loihi 2."""


# ---------------------------------------------------------------------------------------------
# train
@cli.command(context_settings=CONTEXT)
@click.option(
    "--dataset",
    type=str,
    default="digits",
    show_default=True,
    help="digits, mnist, or PATH.npz (x_train, y_train, x_test, y_test[, x_val, y_val]).",
)
@click.option(
    "--arch",
    type=str,
    default="mlp",
    show_default=True,
    help="mlp, lenet, convnet, resnet, or package.module:factory (your function, no arguments, "
    "returning a snnc.nn network; the module is imported from PYTHONPATH).",
)
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True)
@click.option(
    "--steps",
    "-T",
    type=click.IntRange(min=1),
    default=None,
    help="Time steps per sample [default: 16; a spike PATH.npz's own T].",
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
@click.option(
    "--test-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Report test accuracy on the first N test samples only (default: all).",
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
    test_limit,
    device,
    output,
    seed,
    as_json,
    quiet,
):
    """Train a zoo model on an offline dataset and write it as a model file."""
    from snnc.commands.train import TrainOptions, run_train

    opts = TrainOptions(
        output=output,
        dataset=dataset,
        arch=arch,
        epochs=epochs,
        steps=steps,
        encoding=encoding,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        channels=channels,
        train_limit=train_limit,
        val_limit=val_limit,
        test_limit=test_limit,
        device=device,
        seed=seed,
    )
    finish(run_train(opts, reporter(quiet, as_json)), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# prune
@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@click.option("--method", type=METHOD_CHOICE, required=True, help="Pruning method.")
@click.option(
    "--sparsity",
    type=float,
    required=True,
    help="Fraction of the method's unit removed (conv channels or connections). In [0, 1).",
)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--dataset", default=None, help="digits, mnist, or PATH.npz (default: the model file's).")
@click.option(
    "--steps",
    "-T",
    type=click.IntRange(min=1),
    default=None,
    help="Time steps (default: the model file's).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--train-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N training samples.",
)
@click.option(
    "--test-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Measure accuracy before and after on the first N test samples only (default: all).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Batches per activity-scoring window.",
)
@click.option(
    "--distill",
    type=click.FloatRange(0, 1),
    default=None,
    help="Weight of knowledge distillation from the unpruned model (0 = cross-entropy only; "
    "default: the method's own).",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(["cosine", "rewind"]),
    default="rewind",
    show_default=True,
    help="cosine: one decay over all epochs; rewind: full rate while pruning, then a decay "
    "restarted over the fine-tuning epochs.",
)
@click.option(
    "--variant",
    type=click.Choice(["potential", "rectified", "structured", "unstructured"]),
    default=None,
    help="The method's variant (docs/methods.md): sca potential (default) or rectified; criticality "
    "structured (default) or unstructured.",
)
@click.option(
    "--allocation",
    type=click.Choice(["global", "uniform"]),
    default=None,
    help="global: one ranking of all layers' channels (each layer's scores over their mean, a floor "
    "per layer); "
    "uniform: every layer loses the same share (default: the method's own).",
)
@click.option(
    "--objective",
    type=click.Choice(["accuracy", "synops", "cores"]),
    default="accuracy",
    show_default=True,
    help="What pruning saves: accuracy ranks by score alone; synops and cores rank by score per "
    "unit of the channel's SynOps or Loihi 2 neurocores.",
)
@click.option(
    "--regen",
    type=click.FloatRange(0, 1),
    default=None,
    help="Share of the pruned units that may come back at a prune event (at least one; "
    "0 = no regeneration; default 0.2).",
)
@click.option("--no-regen", is_flag=True, help="No regeneration (same as --regen 0).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="Pruned model file to write (safetensors).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON report path (default: OUTPUT with .json).",
)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write PNG plots into this directory.",
)
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.ckpt if it exists.")
@click.option("--trust-pickle", is_flag=True, help=TRUST_PICKLE_HELP)
@click.option("--arch", default=None, help=ARCH_HELP)
@common_options
def prune(
    model,
    method,
    sparsity,
    epochs,
    dataset,
    steps,
    lr,
    batch_size,
    train_limit,
    test_limit,
    window,
    distill,
    lr_schedule,
    allocation,
    variant,
    objective,
    regen,
    no_regen,
    output,
    report_path,
    plot_dir,
    resume,
    trust_pickle,
    arch,
    seed,
    as_json,
    quiet,
):
    """Prune MODEL with regeneration toward --sparsity; write the pruned model and a JSON
    report."""
    from snnc.commands.prune import PruneOptions, run_prune

    opts = PruneOptions(
        model=model,
        method=method,
        sparsity=sparsity,
        output=output,
        epochs=epochs,
        dataset=dataset,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        train_limit=train_limit,
        test_limit=test_limit,
        window=window,
        distill=distill,
        lr_schedule=lr_schedule,
        allocation=allocation,
        variant=variant,
        objective=objective,
        regen=0.0 if no_regen else regen,
        report=report_path,
        plot_dir=plot_dir,
        resume=resume,
        trust_pickle=trust_pickle,
        seed=seed,
        arch=arch,
    )
    finish(run_prune(opts, reporter(quiet, as_json)), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# compile
@cli.command("compile", context_settings=CONTEXT)
@click.argument("model", type=str)
@click.option(
    "--target",
    "-t",
    type=TARGET_CHOICE,
    default="loihi2",
    show_default=True,
    help="Target to compile for.",
)
@click.option("-o", "--output", type=str, required=True, help="Build directory to write.")
@click.option(
    "--dataset",
    type=str,
    default=None,
    help="digits, mnist, or PATH.npz: report float vs fixed accuracy on its test split.",
)
@click.option(
    "--calib",
    type=int,
    default=None,
    help="Also remove channels silent on N training samples (lossy).",
)
@click.option("--limit", type=int, default=None, help="Use only N test samples for accuracy.")
@click.option(
    "--cores",
    type=int,
    default=None,
    help="Neurocore budget (default: the target's own; loihi2: 128, one chip).",
)
@click.option(
    "--core-limit",
    "core_limits",
    multiple=True,
    metavar="KEY=N",
    help="Override a per-core limit (repeatable; loihi2 only): neurons=4095, sram=96000 (bytes of "
    "synapses), axons=16000 (inputs), cores=128.",
)
@click.option("--trust-pickle", is_flag=True, help=TRUST_PICKLE_HELP)
@click.option("--arch", default=None, help=ARCH_HELP)
@common_options
def compile_cmd(
    model, target, output, dataset, calib, limit, cores, core_limits, trust_pickle, arch, seed, as_json, quiet
):
    """Compile MODEL (model file or netx HDF5) for a target into BUILD_DIR."""
    from snnc.commands.compile import CompileOptions, run_compile

    opts = CompileOptions(
        model=model,
        target=target,
        output=output,
        dataset=dataset,
        calib=calib,
        limit=limit,
        seed=seed,
        cores=cores,
        core_limits=tuple(core_limits),
        trust_pickle=trust_pickle,
        arch=arch,
    )
    finish(run_compile(opts, pass_log(quiet, as_json)), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# simulate
@cli.command(context_settings=CONTEXT)
@click.argument("net", type=click.Path())
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(),
    help="X.npy: (N, *input_shape, T) 0/1 spikes (integer, bool, or float exactly 0.0/1.0), "
    "input_shape in PyTorch order.",
)
@click.option(
    "--output",
    "output_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Y.npy to write: (N, *output_shape, T) spikes of the last layer.",
)
@click.option("--backend", type=click.Choice(["sim", "lava", "onnx"]), default="sim", show_default=True)
@click.option(
    "--record",
    metavar="[LAYER:]KIND",
    default=None,
    help="Write this to Y instead: a neuron layer's spikes, u or v (int32, end of each step); LAYER "
    "defaults to the last (e.g. --record v for a non-spiking readout). sim and lava backends.",
)
@common_options
def simulate(net, input_path, output_path, backend, record, seed, as_json, quiet):
    """Run a build directory or netx file on spikes X and write the output spikes Y."""
    from snnc.commands.simulate import SimulateOptions, run_simulate

    opts = SimulateOptions(net=net, input=input_path, output=output_path, backend=backend, record=record)
    finish(run_simulate(opts), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# evaluate
@cli.command(context_settings=CONTEXT)
@click.argument("target", metavar="NET_OR_MODEL", type=click.Path())
@click.option(
    "--dataset",
    type=str,
    default=None,
    help="digits, mnist, or PATH.npz (default: the one the file records).",
)
@click.option("--backend", type=click.Choice(["sim", "lava", "torch"]), default="sim", show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N test samples.",
)
@click.option(
    "--steps",
    "-T",
    type=click.IntRange(min=1),
    default=None,
    help="Time steps (default: the file's data settings, else 16).",
)
@click.option(
    "--encoding",
    type=click.Choice(["rate", "regular", "direct"]),
    default=None,
    help="Spike encoding (default: the file's data settings, else rate).",
)
@click.option("--trust-pickle", is_flag=True, help=TRUST_PICKLE_HELP)
@click.option("--arch", default=None, help=ARCH_HELP)
@common_options
def evaluate(target, dataset, backend, limit, steps, encoding, trust_pickle, arch, seed, as_json, quiet):
    """Accuracy by output spike count on the test split (sim, Lava, or the torch model)."""
    from snnc.commands.evaluate import EvaluateOptions, run_evaluate

    opts = EvaluateOptions(
        target=target,
        dataset=dataset,
        backend=backend,
        limit=limit,
        steps=steps,
        encoding=encoding,
        seed=seed,
        trust_pickle=trust_pickle,
        arch=arch,
    )
    finish(run_evaluate(opts, reporter(quiet, as_json)), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# inspect
@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path())
@click.option("--trust-pickle", is_flag=True, help=TRUST_PICKLE_HELP)
@click.option("--arch", default=None, help=ARCH_HELP)
@common_options
def inspect(file, trust_pickle, arch, seed, as_json, quiet):
    """Describe a model file, a netx HDF5 network or a NIR graph: layers, shapes, parameters, masks."""
    from snnc.commands.inspect import InspectOptions, run_inspect

    finish(run_inspect(InspectOptions(file=file, trust_pickle=trust_pickle, arch=arch)), quiet, as_json)


# ---------------------------------------------------------------------------------------------
# check
@cli.command(context_settings=CONTEXT)
@click.argument("net", metavar="BUILD_OR_NET", type=click.Path())
@common_options
def check(net, seed, as_json, quiet):
    """Check a build directory or netx file against Loihi 2's hardware rules (exit 1 on a
    violation)."""
    from snnc.commands.check import CheckOptions, run_check

    outcome = run_check(CheckOptions(net=net))
    finish(outcome, quiet, as_json)
    found = outcome.result["violations"]
    if found:
        raise SnncError(f"{len(found)} Loihi 2 rule violation(s) in {net}; see docs/loihi2.md §8")


def main() -> None:
    """The console entry point. Once the command has returned and its output is flushed the
    process ends with ``os._exit``: the interpreter's teardown (freeing numba's compiled code and
    thousands of modules' objects) took 0.17 s of a 0.85 s one-sample ``snnc simulate``, measured;
    every file the commands write is closed (and renamed into place) before they return."""
    import os

    from snnc.fileio import install_signal_handlers

    install_signal_handlers()
    try:
        cli(prog_name="snnc")
        code = 0
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt as e:  # outside a command (while parsing or importing)
        code = getattr(e, "exit_code", 130)
        print("snnc: terminated" if code == 143 else "snnc: interrupted", file=sys.stderr)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError):  # a reader that closed early (snnc ... | head)
            code = code or 1
    os._exit(code or 0)
