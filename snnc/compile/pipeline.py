"""The compile pipeline: a graph (or model) -> the target's lowered graph + the report.

``compile_graph``: the generic passes ``fold_bn`` -> ``remove_dead`` (exact: only channels with
all-zero incoming weights whose bias cannot fire, or whose spikes nothing reads; lossy with a
``calibration`` set), then ``target.lower`` (Loihi 2's: ``quantize`` -> ``map_cores``).
``compile_model``: ``trace`` first. The target is an object (:class:`snnc.targets.base.Target`);
this module never imports :mod:`snnc.targets` (the caller looks the target up).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from snnc import ir
from snnc.compile.passes import run_passes
from snnc.compile.passes.fold_bn import fold_bn
from snnc.compile.passes.remove_dead import remove_dead
from snnc.compile.report import build_report

DEFAULT_DATA = {"dataset": None, "steps": 16, "encoding": "rate"}
# a netx file records no data settings: its report says steps and encoding are unknown (null), and
# whatever encodes inputs for it (evaluate, compile --dataset) falls back to DEFAULT_DATA, saying so
NETX_DATA = {"dataset": None, "steps": None, "encoding": None}


@dataclass(frozen=True)
class Compiled:
    """Every stage a caller may want: the input graph, the pruned float graph, the final graph."""

    source: ir.Graph
    pruned: ir.Graph
    final: ir.Graph
    report: dict


def data_settings(header: dict | None) -> dict:
    """The report's ``data`` (dataset, steps, encoding) from a model file's header; defaults for
    what it does not say."""
    d = dict(DEFAULT_DATA)
    d.update({k: v for k, v in ((header or {}).get("data") or {}).items() if k in d})
    return d


def compile_graph(
    graph: ir.Graph,
    target: Any,
    calibration: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
    source: dict | None = None,
    data: dict | None = None,
    accuracy_fn: Callable[[ir.Graph, ir.Graph], dict] | None = None,
    limits: Any = None,
) -> Compiled:
    """Run the generic passes, then ``target.lower(graph, log, limits)``, on a graph of either
    precision.

    ``target``: a :class:`~snnc.targets.base.Target`; ``limits`` overrides its ``limits``.
    ``calibration``: optional spikes ``(N, *input_shape, T)`` for lossy removal of channels silent on
    them. ``source`` and ``data`` go into the report; ``accuracy_fn(source, final)`` adds accuracy.
    """
    dead = functools.partial(remove_dead, calibration=calibration) if calibration is not None else remove_dead
    pruned = run_passes(graph, [fold_bn, dead], log)
    final = target.lower(pruned, log=log, limits=limits)
    accuracy = accuracy_fn(graph, final) if accuracy_fn is not None else None
    report = build_report(
        graph, final, source or {"kind": "graph", "path": ""}, data or dict(DEFAULT_DATA), accuracy
    )
    return Compiled(graph, pruned, final, report)


def compile_model(
    model,
    target: Any,
    header: dict | None = None,
    calibration: np.ndarray | None = None,
    limits: Any = None,
    log: Callable[[str], None] | None = None,
    path: str = "",
) -> tuple[ir.Graph, dict]:
    """Compile a zoo model (with its masks) for ``target``.

    ``header``: the model file's header (its ``data`` goes into the report). ``calibration``:
    optional spikes ``(N, *input_shape, T)`` for lossy removal of channels silent on them. Returns
    ``(final_graph, report)``.
    """
    from snnc.compile.trace import trace  # torch: only when a model is compiled

    c = compile_graph(
        trace(model),
        target,
        calibration,
        log,
        {"kind": "model", "path": str(path)},
        data_settings(header),
        limits=limits,
    )
    return c.final, c.report
