"""``nir`` target: the float graph as a NIR file (``network.nir``) beside ``graph.safetensors``.
The NIR codec (export and import, the neuron mapping) is :mod:`snnc.ir.nir`; docs/interop.md."""

from __future__ import annotations

import os
from pathlib import Path

from snnc import ir
from snnc.ir.nir import DT, NIR_FILE, from_nir, read_nir, to_nir, write_nir
from snnc.targets.base import emit_dir, save_graph_file
from snnc.targets.loihi2.target import Loihi2Lowering

__all__ = ["DT", "NIR_FILE", "TARGET", "emit_nir", "from_nir", "read_nir", "to_nir", "write_nir"]


def emit_nir(graph: ir.Graph, out_dir: str | os.PathLike) -> list[str]:
    """Write ``network.nir`` into ``out_dir``; returns the file names written."""
    write_nir(graph, Path(out_dir) / NIR_FILE)
    return [NIR_FILE]


class NirTarget(Loihi2Lowering):
    """``nir``: ``network.nir`` and ``graph.safetensors`` (no runtime of its own). It exports the float
    graph (after the generic passes: batch-norm folded, dead channels removed), in the units NIR and
    snnTorch read; it has no fixed-point format (the report still sizes the net on Loihi 2's cores)."""

    name = "nir"
    spec = None

    def lower(self, graph: ir.Graph, log=None, limits=None) -> ir.Graph:
        """``map_cores`` only (for the report); the graph stays float."""
        import functools

        from snnc.compile.passes import run_passes
        from snnc.targets.loihi2.map_cores import map_cores

        return run_passes(graph, [functools.partial(map_cores, limits=limits, enforce=False)], log)

    def emit(self, graph: ir.Graph, out_dir: Path) -> list[str]:
        out = emit_dir(graph, out_dir)
        return [*emit_nir(graph, out), save_graph_file(graph, out)]


TARGET = NirTarget()
