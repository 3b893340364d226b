"""``snnc compile MODEL --target {loihi2,sim,onnx,nir} -o BUILD_DIR``: the CLI of the compiler.

Writes, atomically (``snnc.fileio.atomic_dir``): ``report.json`` (validated against
``snnc.compile.report.SCHEMA``), ``graph.json`` (structure and per-node meta, no big arrays),
``graph.safetensors`` (always, so any build directory can be simulated) and the target's artifact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from snnc.errors import UsageError

TARGETS = ("loihi2", "sim", "onnx", "nir")


@dataclass(frozen=True)
class CompileOptions:
    """What ``snnc compile`` was asked to do (the library never sees click)."""

    model: str
    target: str
    output: str
    dataset: str | None = None
    calib: int | None = None
    limit: int | None = None
    seed: int = 0
    cores: int | None = None
    trust_pickle: bool = False


def _check_output_dir(out: Path) -> None:
    parent = out.resolve().parent
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory; choose another output directory")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent} is not writable; choose another output path")


def _encode(dataset: str, split: str, n: int | None, data: dict, seed: int):
    import torch

    from snnc import data as D

    ds = D.load(dataset)
    x, y = ds.split(split)
    if n is not None:
        x, y = x[:n], y[:n]
    gen = torch.Generator()
    gen.manual_seed(seed)
    spikes = D.encode(x, int(data["steps"]), data["encoding"], generator=gen).numpy()
    return spikes.astype(np.uint8), np.asarray(y)


def _accuracy(reference, compiled, spikes, labels, dataset: str) -> dict:
    from snnc.sim import simulate

    ref = simulate(reference, spikes).output.sum(-1).argmax(1)
    out = simulate(compiled, spikes).output.sum(-1).argmax(1)
    a_ref, a_out = float((ref == labels).mean()), float((out == labels).mean())
    extra = {"float": a_ref, "fixed": a_out} if reference.precision == "float" else {}
    return {
        **extra,
        "dataset": dataset,
        "samples": int(len(labels)),
        "reference": a_ref,
        "compiled": a_out,
        "difference": a_out - a_ref,
        "agreement": float((ref == out).mean()),
        "reference_precision": reference.precision,
    }


def _emit(graph, target: str, out_dir: Path) -> list[str]:
    """The target's artifact plus graph.safetensors (every build dir can be simulated)."""
    from snnc.targets import emit

    files = emit(graph, target, out_dir)
    if "graph.safetensors" not in files:
        files += emit(graph, "sim", out_dir)
    return sorted(set(files))


def run_compile(opts: CompileOptions, log=None) -> tuple[dict, list]:
    """Compile as ``opts`` says and write the build directory. Returns ``(report, table rows)``."""
    from snnc import checkpoint
    from snnc.compile.pipeline import DEFAULT_DATA, _data, compile_graph
    from snnc.compile.report import graph_json, table_rows
    from snnc.compile.trace import trace
    from snnc.fileio import atomic_dir
    from snnc.targets.loihi2.map_cores import CoreLimits

    if opts.target not in TARGETS:
        raise UsageError(f"unknown target {opts.target!r}; choose one of {', '.join(TARGETS)}")
    for name, v in (("--calib", opts.calib), ("--limit", opts.limit), ("--cores", opts.cores)):
        if v is not None and v < 1:
            raise UsageError(f"{name} must be a positive integer, got {v}")
    if opts.calib is not None and opts.dataset is None:
        raise UsageError("--calib needs --dataset to draw calibration samples from")
    out = Path(opts.output)
    _check_output_dir(out)
    path = Path(opts.model)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a model file (.pt safetensors) or a netx HDF5")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a model file (.pt safetensors) or a netx HDF5")
    kind = checkpoint.sniff(path)
    if kind == "hdf5":
        from snnc.targets.loihi2 import read_netx

        source_graph = read_netx(path)
        data = dict(DEFAULT_DATA)
        src = {"kind": "netx", "path": str(path)}
        if opts.calib is not None:
            raise UsageError("--calib applies to model files only; a netx file is compressed exactly")
    else:
        model, header = checkpoint.load_model(path, trust_pickle=opts.trust_pickle)
        source_graph = trace(model)
        data = _data(header)
        src = {"kind": "model", "path": str(path)}
    if opts.dataset is not None:
        data = {**data, "dataset": opts.dataset}
    calibration = None
    if opts.calib is not None:
        calibration, _ = _encode(opts.dataset, "train", opts.calib, data, opts.seed)
    accuracy_fn = None
    if opts.dataset is not None:
        spikes, labels = _encode(opts.dataset, "test", opts.limit, data, opts.seed)
        accuracy_fn = lambda ref, fin: _accuracy(ref, fin, spikes, labels, opts.dataset)  # noqa: E731
    limits = CoreLimits() if opts.cores is None else CoreLimits(cores=opts.cores)
    result = compile_graph(source_graph, calibration, limits, log, src, data, accuracy_fn)
    report = result.report
    with atomic_dir(out) as tmp:
        files = _emit(result.final, opts.target, tmp)
        report = {
            **report,
            "target": opts.target,
            "files": sorted(files + ["graph.json", "report.json"]),
        }
        (tmp / "graph.json").write_text(json.dumps(graph_json(result.final), indent=1))
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
    return report, table_rows(report)


def register(cli: click.Group) -> None:
    """Add ``snnc compile`` to the CLI group."""
    from snnc.cli import CONTEXT, common_options, emit_json, show

    @cli.command("compile", context_settings=CONTEXT)
    @click.argument("model", type=str)
    @click.option(
        "--target",
        "-t",
        type=str,
        default="loihi2",
        show_default=True,
        help="loihi2 (netx HDF5), sim, onnx or nir.",
    )
    @click.option("-o", "--output", type=str, required=True, help="Build directory to write.")
    @click.option(
        "--dataset",
        type=str,
        default=None,
        help="digits or mnist: report float vs fixed accuracy on its test split.",
    )
    @click.option(
        "--calib",
        type=int,
        default=None,
        help="Also remove channels silent on N training samples (lossy).",
    )
    @click.option("--limit", type=int, default=None, help="Use only N test samples for accuracy.")
    @click.option("--cores", type=int, default=None, help="Neurocore budget (default 128, one Loihi 2 chip).")
    @click.option(
        "--trust-pickle",
        is_flag=True,
        help="Load a PyTorch pickle you made yourself (weights_only=True).",
    )
    @common_options
    def compile_cmd(model, target, output, dataset, calib, limit, cores, trust_pickle, seed, as_json, quiet):
        """Compile MODEL (model file or netx HDF5) for a target into BUILD_DIR."""
        from snnc.ui import console, table

        if dataset is not None and dataset not in ("digits", "mnist"):
            raise UsageError(f"unknown dataset {dataset!r}; choose digits or mnist")
        opts = CompileOptions(model, target, output, dataset, calib, limit, seed, cores, trust_pickle)
        log = None if (quiet or as_json) else (lambda line: console.print(line, highlight=False))
        report, (cols, rows) = run_compile(opts, log)
        if as_json:
            emit_json(report)
            return
        show(table(f"snnc compile -> {output} ({target})", cols, rows), quiet, as_json)
        if not quiet and "accuracy" in report:
            a = report["accuracy"]
            click.echo(
                f"accuracy on {a['samples']} {a['dataset']} test samples: "
                f"{a['reference_precision']} {100 * a['reference']:.2f}% -> compiled "
                f"{100 * a['compiled']:.2f}% ({100 * a['difference']:+.2f} pt)"
            )
