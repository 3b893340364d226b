"""Targets: write a finished IR graph as a deployable artifact, and run it.

``emit(graph, target, out_dir)`` writes the target's files into ``out_dir`` (the caller makes it
atomic):

- ``"loihi2"``: ``network.net`` (netx HDF5, when the graph is sequential), ``graph.safetensors`` and
``run_loihi2.py``, a standalone script that builds the Lava processes and runs them;
- ``"sim"``: ``graph.safetensors`` for ``snnc simulate``;
- ``"onnx"``: ``model.onnx`` (one step with state in/out) and ``graph.safetensors``;
- ``"nir"``: ``network.nir`` (:mod:`snnc.targets.nir`) and ``graph.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

from snnc.compile.ir import Graph
from snnc.errors import SnncError

TARGETS = ("loihi2", "sim", "onnx", "nir")
RUNNER_FILE = "run_loihi2.py"


def emit(graph: Graph, target: str, out_dir: str | os.PathLike) -> list[str]:
    """Write ``graph`` for ``target`` into the existing ``out_dir``; returns the file names."""
    from snnc.targets.graphfile import GRAPH_FILE, NETX_FILE, save_graph

    out = Path(out_dir)
    if not out.is_dir():
        raise SnncError(f"output directory {out} does not exist")
    graph.verify()
    files: list[str] = []
    if target == "loihi2":
        from snnc.targets.loihi2 import check_netx_expressible, write_netx

        if graph.precision != "fixed":
            raise SnncError("the loihi2 target needs a fixed-point graph; run quantize first")
        try:
            check_netx_expressible(graph)
            sequential = True
        except SnncError:
            sequential = False
        if sequential:
            write_netx(graph, out / NETX_FILE)
            files.append(NETX_FILE)
        save_graph(graph, out / GRAPH_FILE)
        files.append(GRAPH_FILE)
        (out / RUNNER_FILE).write_text(_runner_script())
        files.append(RUNNER_FILE)
    elif target == "sim":
        save_graph(graph, out / GRAPH_FILE)
        files.append(GRAPH_FILE)
    elif target == "onnx":
        from snnc.targets.onnx import ONNX_FILE, export_onnx

        if graph.precision != "fixed":
            raise SnncError("the onnx target needs a fixed-point graph; run quantize first")
        export_onnx(graph, out / ONNX_FILE)
        save_graph(graph, out / GRAPH_FILE)
        files += [ONNX_FILE, GRAPH_FILE]
    elif target == "nir":
        from snnc.targets.nir import emit_nir

        files += emit_nir(graph, out)
        save_graph(graph, out / GRAPH_FILE)
        files.append(GRAPH_FILE)
    else:
        raise SnncError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return files


def _runner_script() -> str:
    from snnc.targets.loihi2 import RUNNER_SCRIPT

    return RUNNER_SCRIPT
