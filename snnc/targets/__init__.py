"""Targets: lower a graph for a chip or runtime, write it as a deployable artifact, and run it.

A target is one object (:class:`~snnc.targets.base.Target`: ``name``, ``spec``, ``limits``,
``lower``, ``emit``, optionally ``run``) and :data:`TARGETS` is the only list of them. Built in:

- ``"loihi2"`` (:mod:`snnc.targets.loihi2`): ``network.net`` (netx HDF5, when the graph is
  sequential), ``graph.safetensors`` and ``run_loihi2.py``, a standalone Lava runner;
- ``"sim"`` (:mod:`snnc.targets.sim`): ``graph.safetensors`` for ``snnc simulate``;
- ``"onnx"`` (:mod:`snnc.targets.onnx`): ``model.onnx`` (one step with state in/out) and
  ``graph.safetensors``;
- ``"nir"`` (:mod:`snnc.targets.nir`): ``network.nir`` and ``graph.safetensors``.

``load_net(path)`` reads what ``simulate``/``evaluate`` are given. Importing this package loads no
target (and no torch, ONNX or Lava).
"""

from __future__ import annotations

import os
from pathlib import Path

from snnc.errors import UsageError
from snnc.ir import Graph
from snnc.targets.base import FixedPointSpec, RunnableTarget, Target
from snnc.targets.registry import TARGETS

__all__ = ["TARGETS", "FixedPointSpec", "RunnableTarget", "Target", "load_net"]


def load_net(path: str | os.PathLike) -> Graph:
    """A network for ``simulate``/``evaluate``: a build directory (prefers ``graph.safetensors``), a
    ``graph.safetensors`` file, any netx HDF5 file (ours or lava-dl ``export_hdf5``'s) or a NIR file
    (its graph as stored, usually float)."""
    from snnc.checkpoint import refuse_lfs_pointer, sniff
    from snnc.ir.serialize import GRAPH_FILE, load_graph
    from snnc.targets.loihi2.netx import NETX_FILE, read_netx

    path = Path(path)
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; give a build directory (snnc compile -o) or a netx .net file"
        )
    if path.is_dir():
        if (path / GRAPH_FILE).is_file():
            return load_graph(path / GRAPH_FILE)
        if (path / NETX_FILE).is_file():
            return read_netx(path / NETX_FILE)
        raise UsageError(f"{path} holds neither {GRAPH_FILE} nor {NETX_FILE}; run snnc compile first")
    kind = sniff(path)
    refuse_lfs_pointer(path, kind)
    if kind == "hdf5":
        return read_netx(path)
    if kind == "safetensors":
        return load_graph(path)
    if kind == "nir":  # a float graph: the simulator runs it on its float path, as compile's reference
        from snnc.targets.nir import read_nir

        return read_nir(path)
    raise UsageError(
        f"{path} is neither a netx HDF5 file, a NIR file nor an snnc graph (detected {kind}); "
        "give a build directory, a .net or a .nir file"
    )
