"""The compile pipeline: model (or netx file) -> fixed-point, mapped IR graph + report.

``compile_model``: ``trace`` -> ``fold_bn`` -> ``remove_dead`` -> ``quantize`` -> ``map_cores``.
``compile_netx``: ``read_netx`` -> ``remove_dead`` (exact: only channels with all-zero incoming
weights whose bias cannot fire, or whose spikes nothing reads) -> ``map_cores``; the result's
output spikes equal the original's for every input, in ``sim`` and in Lava.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from snnc import ir
from snnc.compile.passes import run_passes
from snnc.compile.passes.fold_bn import fold_bn
from snnc.compile.passes.remove_dead import remove_dead
from snnc.compile.report import build_report
from snnc.compile.trace import trace
from snnc.targets.loihi2.map_cores import CoreLimits, map_cores
from snnc.targets.loihi2.quantize import quantize

DEFAULT_DATA = {"dataset": None, "steps": 16, "encoding": "rate"}


@dataclass(frozen=True)
class Compiled:
    """Every stage a caller may want: the input graph, the pruned float graph, the final graph."""

    source: ir.Graph
    pruned: ir.Graph
    final: ir.Graph
    report: dict


def _data(header: dict | None) -> dict:
    d = dict(DEFAULT_DATA)
    d.update({k: v for k, v in ((header or {}).get("data") or {}).items() if k in d})
    return d


def compile_graph(
    graph: ir.Graph,
    calibration: np.ndarray | None = None,
    target_limits: CoreLimits | None = None,
    log: Callable[[str], None] | None = None,
    source: dict | None = None,
    data: dict | None = None,
    accuracy_fn: Callable[[ir.Graph, ir.Graph], dict] | None = None,
) -> Compiled:
    """Run the passes on a graph of either precision; ``accuracy_fn(source, final)`` adds
    accuracy."""
    dead = functools.partial(remove_dead, calibration=calibration) if calibration is not None else remove_dead
    pruned = run_passes(graph, [fold_bn, dead], log)
    mapper = functools.partial(map_cores, limits=target_limits or CoreLimits())
    final = run_passes(pruned, [quantize, mapper], log)
    accuracy = accuracy_fn(graph, final) if accuracy_fn is not None else None
    report = build_report(
        graph, final, source or {"kind": "graph", "path": ""}, data or dict(DEFAULT_DATA), accuracy
    )
    return Compiled(graph, pruned, final, report)


def compile_model(
    model,
    header: dict | None = None,
    calibration: np.ndarray | None = None,
    target_limits: CoreLimits | None = None,
    log: Callable[[str], None] | None = None,
    path: str = "",
) -> tuple[ir.Graph, dict]:
    """Compile a zoo model (with its masks) to a fixed-point, neurocore-mapped graph.

    ``header``: the model file's header (its ``data`` goes into the report). ``calibration``:
    optional spikes ``(N, *input_shape, T)`` for lossy removal of channels silent on them. Returns
    ``(fixed_graph, report)``.
    """
    c = compile_graph(
        trace(model),
        calibration,
        target_limits,
        log,
        {"kind": "model", "path": str(path)},
        _data(header),
    )
    return c.final, c.report


def compile_netx(
    path: str | os.PathLike,
    target_limits: CoreLimits | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[ir.Graph, dict]:
    """Compress a lava-dl netx HDF5: remove its dead channels exactly. Returns ``(fixed_graph,
    report)``."""
    from snnc.targets.loihi2 import read_netx

    graph = read_netx(path)
    c = compile_graph(
        graph, None, target_limits, log, {"kind": "netx", "path": str(path)}, dict(DEFAULT_DATA)
    )
    return c.final, c.report
