"""The Loihi 2 target object: its lowering (``quantize`` then ``map_cores``), emitter and runner.

:class:`Loihi2Lowering` is the part other targets share: the ``sim`` and ``onnx`` targets hold
Loihi 2's fixed-point numbers too (their artifacts are what Loihi 2 would compute), so they take its
spec and lowering from this class instead of repeating them (``nir`` is a float graph). The core
limits are the ``loihi2`` target's alone: the others size the net on one Loihi 2 chip for the report
(``map_cores(enforce=False)``) but never refuse it, and have no ``limits`` to override.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from snnc.compile.passes import run_passes
from snnc.errors import SnncError
from snnc.ir import Graph
from snnc.targets.base import FixedPointSpec, emit_dir, require_fixed, save_graph_file
from snnc.targets.loihi2.check import require_rules
from snnc.targets.loihi2.map_cores import map_cores
from snnc.targets.loihi2.netx import NETX_FILE, check_netx_expressible, read_netx, write_netx
from snnc.targets.loihi2.quantize import quantize
from snnc.targets.loihi2.spec import LIMITS, SPEC, CoreLimits

RUNNER_FILE = "run_loihi2.py"  # the standalone runner script, shipped as package data


def lower(
    graph: Graph,
    log: Callable[[str], None] | None = None,
    limits: CoreLimits | None = None,
    enforce: bool = True,
) -> Graph:
    """Loihi 2's passes: ``quantize`` (float -> fixed point; a fixed graph is kept) then
    ``map_cores`` under ``limits`` (default: one chip), refusing a net that does not fit unless
    ``enforce`` is False."""
    mapper = functools.partial(map_cores, limits=limits or LIMITS, enforce=enforce)
    return run_passes(graph, [quantize, mapper], log)


class Loihi2Lowering:
    """Loihi 2's ``spec`` and ``lower``, for every target whose graphs hold its numbers. Such a
    target has no core ``limits``: its graphs are sized on one chip for the report, never refused."""

    spec: FixedPointSpec = SPEC
    limits: CoreLimits | None = None

    def lower(
        self, graph: Graph, log: Callable[[str], None] | None = None, limits: CoreLimits | None = None
    ) -> Graph:
        enforce = self.limits is not None  # only a target with a core budget refuses a net
        return lower(graph, log, limits or self.limits, enforce=enforce)


def runner_script() -> str:
    """The text of ``run_loihi2.py`` (package data of :mod:`snnc.targets.loihi2`)."""
    from importlib.resources import files

    return files("snnc.targets.loihi2").joinpath(RUNNER_FILE).read_text()


def netx_in(net: str | os.PathLike | None) -> Path | None:
    """The netx file a user's ``net`` names: a build directory's ``network.net`` or a netx file
    itself; ``None`` when there is none."""
    if net is None:
        return None
    p = Path(net)
    if p.is_dir():
        return p / NETX_FILE if (p / NETX_FILE).is_file() else None
    from snnc.checkpoint import sniff

    return p if p.is_file() and sniff(p) == "hdf5" else None


class Loihi2Target(Loihi2Lowering):
    """``loihi2``: ``network.net`` (netx HDF5, when the graph is sequential), ``graph.safetensors``
    and ``run_loihi2.py``, a standalone script that builds the Lava processes and runs them; runs in
    Lava (``Loihi2HwCfg`` when Intel's Loihi stack is importable, else the CPU ``fixed_pt`` model)."""

    name = "loihi2"
    limits: CoreLimits = LIMITS

    def emit(self, graph: Graph, out_dir: Path) -> list[str]:
        out = emit_dir(graph, out_dir)
        require_fixed(graph, self.name)
        require_rules(graph)  # the hardware rules (docs/loihi2.md §8), before any file is written
        files: list[str] = []
        try:
            check_netx_expressible(graph)
            sequential = True
        except SnncError:  # residual Add: run_loihi2.py builds Lava processes from the graph file
            sequential = False
        if sequential:
            write_netx(graph, out / NETX_FILE)
            files.append(NETX_FILE)
        files.append(save_graph_file(graph, out))
        (out / RUNNER_FILE).write_text(runner_script())
        files.append(RUNNER_FILE)
        return files

    def run(self, net: Path | None, graph: Graph, x: np.ndarray) -> np.ndarray:
        """Lava on ``net``'s netx file when it has one (what would be deployed), else on ``graph``."""
        from snnc.targets.loihi2.lava import run_lava

        netx = netx_in(net)
        return run_lava(netx if netx is not None else graph, x)


TARGET = Loihi2Target()


def compile_netx(
    path: str | os.PathLike,
    limits: CoreLimits | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Graph, dict]:
    """Compress a lava-dl netx HDF5: remove its dead channels exactly (``remove_dead``; the result's
    output spikes equal the original's for every input, in ``sim`` and in Lava), then map it.
    Returns ``(fixed_graph, report)``."""
    from snnc.compile.pipeline import NETX_DATA, compile_graph

    graph = read_netx(path)
    source = {"kind": "netx", "path": str(path)}
    c = compile_graph(graph, TARGET, None, log, source, dict(NETX_DATA), limits=limits)
    return c.final, c.report
