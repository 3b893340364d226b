"""``snnc compile MODEL --target NAME -o BUILD_DIR``: compile a model file or a netx HDF5 for a target.

Writes, atomically (``snnc.fileio.atomic_dir``): ``report.json`` (validated against
``snnc.compile.report.SCHEMA``), ``graph.json`` (structure and per-node meta, no big arrays),
``graph.safetensors`` (always, so any build directory can be simulated) and the target's artifact.
The targets are those of ``snnc.targets.registry.TARGETS``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snnc.commands import Outcome, Table
from snnc.errors import SnncError, UsageError

if TYPE_CHECKING:
    from snnc.compile.pipeline import Compiled
    from snnc.ir import Graph

DATASETS = ("digits", "mnist")  # or a PATH.npz (snnc.data.check_name)


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
    core_limits: tuple[str, ...] = ()  # --core-limit KEY=N, e.g. "neurons=4096"
    trust_pickle: bool = False
    arch: str | None = None  # --arch: needed for a model file made from a user architecture


@dataclass(frozen=True)
class Source:
    """The graph to compile, the data settings it was trained with, and where it came from."""

    graph: Graph
    data: dict
    info: dict  # the report's "source": {"kind": "model" | "netx", "path": ...}


def check_options(opts: CompileOptions) -> None:
    """One-line usage errors for options that cannot work, before anything is read."""
    if opts.dataset is not None:
        from snnc.data import check_name

        check_name(opts.dataset)
    for name, v in (("--calib", opts.calib), ("--limit", opts.limit), ("--cores", opts.cores)):
        if v is not None and v < 1:
            raise UsageError(f"{name} must be a positive integer, got {v}")
    parse_core_limits(opts.core_limits)
    if opts.calib is not None and opts.dataset is None:
        raise UsageError("--calib needs --dataset to draw calibration samples from")
    from snnc.fileio import check_not_inside, check_output_dir

    check_output_dir(opts.output)
    check_not_inside({"MODEL": opts.model}, opts.output, "-o")


#: ``--core-limit`` keys and the limits fields they set (a target's limits dataclass names them).
CORE_LIMIT_KEYS = {
    "cores": "cores",
    "neurons": "neurons_per_core",
    "sram": "sram_bytes_per_core",
    "axons": "in_axons_per_core",
}


def parse_core_limits(items: tuple[str, ...] | list[str]) -> dict[str, int]:
    """``--core-limit KEY=N`` items -> ``{field: N}``; one-line usage errors for a bad item."""
    keys = ", ".join(CORE_LIMIT_KEYS)
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = (p.strip() for p in str(item).partition("="))
        if not sep or key not in CORE_LIMIT_KEYS:
            raise UsageError(f"--core-limit takes KEY=N with KEY one of {keys}; got {item!r}")
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--core-limit {key} must be a positive integer, got {value!r}")
        field = CORE_LIMIT_KEYS[key]
        if out.get(field, n) != n:
            raise UsageError(f"--core-limit {key} is given twice with different values; give it once")
        out[field] = n
    return out


def target_limits(target, cores: int | None, core_limits: tuple[str, ...] | list[str] = ()):
    """The target's resource limits with ``--cores`` and ``--core-limit`` applied (None: the
    target's own)."""
    changes = parse_core_limits(core_limits)
    if cores is not None:
        if changes.get("cores", cores) != cores:
            raise UsageError("--cores and --core-limit cores= disagree; give the core budget once")
        changes["cores"] = cores
    if not changes:
        return None
    option = "--cores" if cores is not None else "--core-limit"
    limits = getattr(target, "limits", None)
    if not dataclasses.is_dataclass(limits):
        raise UsageError(
            f"{option} does not apply to target {target.name!r}: it has no neurocore limits "
            "(it sizes the net on Loihi 2 for the report but never refuses it)"
        )
    fields = {f.name for f in dataclasses.fields(limits)}
    missing = [k for k in changes if k not in fields]
    if missing:
        raise UsageError(f"{option} does not apply to target {target.name!r}: it has no limit {missing[0]}")
    return dataclasses.replace(limits, **changes)


def read_source(opts: CompileOptions) -> Source:
    """The model file's traced graph (with its data settings), the netx file's or the NIR file's graph."""
    from snnc import checkpoint
    from snnc.compile.pipeline import NETX_DATA, data_settings

    path = Path(opts.model)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a model file (.pt safetensors) or a netx HDF5")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a model file (.pt safetensors) or a netx HDF5")
    if checkpoint.sniff(path) == "hdf5":
        from snnc.targets.loihi2 import read_netx

        graph = read_netx(path)
        if opts.calib is not None:
            raise UsageError("--calib applies to model files only; a netx file is compressed exactly")
        return Source(graph, dict(NETX_DATA), {"kind": "netx", "path": str(path)})
    if checkpoint.sniff(path) == "nir":
        from snnc.targets.nir import read_nir

        graph = read_nir(path)  # usually float, like a traced model's; data settings unknown, like netx
        if opts.calib is not None and graph.precision != "float":
            raise UsageError("--calib applies to float graphs only; this NIR file is already fixed-point")
        return Source(graph, dict(NETX_DATA), {"kind": "nir", "path": str(path)})
    from snnc.compile.trace import trace
    from snnc.ir import GraphError
    from snnc.ir.limits import check_graph

    model, header = checkpoint.load_model(path, trust_pickle=opts.trust_pickle, arch=opts.arch)
    try:
        graph = check_graph(trace(model))  # finite weights and sane sizes before any pass runs
    except GraphError as e:
        raise SnncError(f"{path}: {e}; the model file is corrupt") from None
    from snnc import data as D

    D.check_data_settings(header.get("data"), str(path))
    return Source(graph, data_settings(header), {"kind": "model", "path": str(path)})


def encode_split(dataset: str, split: str, n: int | None, data: dict, seed: int, source: Source):
    """The first ``n`` samples of a dataset split, shaped for ``source``'s graph input, as uint8
    spikes (encoded as ``data`` says, snnc's defaults for what it leaves unknown), and their labels."""
    import torch

    from snnc import data as D
    from snnc.compile.pipeline import DEFAULT_DATA

    ds = D.load(dataset)
    x, y = ds.split(split)
    if n is not None:
        x, y = x[:n], y[:n]
    x = D.fit_images(x, source.graph.input.shape, dataset, source.info["path"], ds.time_steps is not None)
    encoding = data["encoding"] or DEFAULT_DATA["encoding"]
    steps, encoding = D.resolve_settings(ds, data["steps"], encoding, DEFAULT_DATA["steps"])
    gen = torch.Generator()
    gen.manual_seed(seed)
    spikes = D.encode(x, steps, encoding, generator=gen).numpy()
    return spikes.astype(np.uint8), np.asarray(y)


def accuracy(reference, compiled, spikes, labels, dataset: str) -> dict:
    """The report's ``accuracy`` entry: the source graph against the compiled one, in ``sim``."""
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


def accuracy_check(opts: CompileOptions, data: dict, source: Source) -> Callable | None:
    """``accuracy_fn(source, final)`` on ``--limit`` test samples of ``--dataset``, if one is given."""
    if opts.dataset is None:
        return None
    spikes, labels = encode_split(opts.dataset, "test", opts.limit, data, opts.seed, source)
    return lambda ref, fin: accuracy(ref, fin, spikes, labels, opts.dataset)


def emit(graph: Graph, target, out_dir: Path) -> list[str]:
    """The target's artifact plus ``graph.safetensors`` (every build directory can be simulated)."""
    from snnc.ir.serialize import GRAPH_FILE
    from snnc.targets.registry import TARGETS

    files = list(target.emit(graph, out_dir))
    if GRAPH_FILE not in files:
        files += TARGETS.get("sim").emit(graph, out_dir)
    return sorted(set(files))


def write_build(out: Path, compiled: Compiled, target) -> dict:
    """Write the build directory atomically; returns the report as written (``report.json``)."""
    from snnc.compile.report import graph_json
    from snnc.fileio import atomic_dir

    with atomic_dir(out) as tmp:
        files = emit(compiled.final, target, tmp)
        report = {
            **compiled.report,
            "target": target.name,
            "files": sorted(files + ["graph.json", "report.json"]),
        }
        (tmp / "graph.json").write_text(json.dumps(graph_json(compiled.final), indent=1))
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _defaults_note(data: dict) -> str:
    """What the accuracy line adds when the source records no steps or encoding (a netx file)."""
    from snnc.compile.pipeline import DEFAULT_DATA

    unknown = [k for k in ("steps", "encoding") if data.get(k) is None]
    if not unknown:
        return ""
    used = ", ".join(f"{k} {DEFAULT_DATA[k]}" for k in unknown)
    return f"; {' and '.join(unknown)} unknown (the file records none), encoded with snnc's default {used}"


def outcome(report: dict, opts: CompileOptions) -> Outcome:
    """The report (``--json``), and the before/after table and the accuracy line."""
    from snnc.compile.report import table_rows

    cols, rows = table_rows(report)
    lines = ()
    if "accuracy" in report:
        a = report["accuracy"]
        lines = (
            f"accuracy on {a['samples']} {a['dataset']} test samples: "
            f"{a['reference_precision']} {100 * a['reference']:.2f}% -> compiled "
            f"{100 * a['compiled']:.2f}% ({100 * a['difference']:+.2f} pt)" + _defaults_note(report["data"]),
        )
    return Outcome(
        report, table=Table(f"snnc compile -> {opts.output} ({opts.target})", cols, rows), lines=lines
    )


def run_compile(opts: CompileOptions, log: Callable[[str], None] | None = None) -> Outcome:
    """Compile as ``opts`` says and write the build directory; ``log`` gets one line per pass."""
    from snnc.compile.pipeline import compile_graph
    from snnc.targets.registry import TARGETS

    check_options(opts)
    target = TARGETS.get(opts.target)
    limits = target_limits(target, opts.cores, opts.core_limits)
    source = read_source(opts)
    data = source.data if opts.dataset is None else {**source.data, "dataset": opts.dataset}
    calibration = None
    if opts.calib is not None:
        calibration, _ = encode_split(opts.dataset, "train", opts.calib, data, opts.seed, source)
    compiled = compile_graph(
        source.graph,
        target,
        calibration=calibration,
        log=log,
        source=source.info,
        data=data,
        accuracy_fn=accuracy_check(opts, data, source),
        limits=limits,
    )
    report = write_build(Path(opts.output), compiled, target)
    return outcome(report, opts)
