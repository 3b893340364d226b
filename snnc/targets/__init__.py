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

from snnc.errors import SnncError, UsageError
from snnc.ir import Graph

TARGETS = ("loihi2", "sim", "onnx", "nir")
RUNNER_FILE = "run_loihi2.py"


def emit(graph: Graph, target: str, out_dir: str | os.PathLike) -> list[str]:
    """Write ``graph`` for ``target`` into the existing ``out_dir``; returns the file names."""
    from snnc.ir.serialize import GRAPH_FILE, save_graph
    from snnc.targets.loihi2.netx import NETX_FILE

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
    from importlib.resources import files

    return files("snnc.targets.loihi2").joinpath(RUNNER_FILE).read_text()


def load_net(path: str | os.PathLike) -> Graph:
    """A network for ``simulate``/``evaluate``: a build directory (prefers ``graph.safetensors``), a
    ``graph.safetensors`` file, or any netx HDF5 file (ours or lava-dl ``export_hdf5``'s)."""
    from snnc.checkpoint import sniff
    from snnc.ir.serialize import GRAPH_FILE, load_graph
    from snnc.targets.loihi2.netx import NETX_FILE, read_netx

    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; give a build directory (snnc compile -o) or a netx " ".net file"
        )
    if path.is_dir():
        if (path / GRAPH_FILE).is_file():
            return load_graph(path / GRAPH_FILE)
        if (path / NETX_FILE).is_file():
            return read_netx(path / NETX_FILE)
        raise UsageError(f"{path} holds neither {GRAPH_FILE} nor {NETX_FILE}; run snnc compile first")
    kind = sniff(path)
    if kind == "hdf5":
        return read_netx(path)
    if kind == "safetensors":
        return load_graph(path)
    raise UsageError(
        f"{path} is neither a netx HDF5 file nor an snnc graph (detected {kind}); "
        "give a build directory or a .net file"
    )
