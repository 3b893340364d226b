"""``graph.safetensors``: an IR :class:`~snnc.ir.Graph` of either precision in one file, no
pickle.

Arrays (weights, biases, batch-norm statistics) are safetensors tensors named ``<node>.<field>``;
the structure (node kinds, scalar fields, edges, graph and node ``meta``) is JSON in the metadata
entry ``snnc``: ``{"format": "snnc-graph", "version": 1, "meta": {...}, "nodes": [...], "edges":
[...]}``. Each node kind writes and reads its own entry and tensors
(:meth:`snnc.ir.Node.to_dict`, :meth:`~snnc.ir.Node.from_dict`); this module holds the file around
them. Written atomically; on reading every field is validated and the graph is verified, so a
damaged file gives one line naming what is wrong.

Every build directory holds ``graph.safetensors`` (:data:`GRAPH_FILE`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from snnc.errors import UsageError
from snnc.fileio import atomic_path
from snnc.ir.graph import NODE_KINDS, Graph, GraphError, jsonable
from snnc.ir.limits import check_graph

FORMAT = "snnc-graph"
VERSION = 1
GRAPH_FILE = "graph.safetensors"


def save_graph(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` (safetensors + JSON structure), atomically. Verifies it first."""
    from safetensors.numpy import save_file

    graph.verify()
    tensors: dict[str, np.ndarray] = {}
    nodes = [node.to_dict(tensors) for node in graph.nodes.values()]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "meta": jsonable(graph.meta),
        "nodes": nodes,
        "edges": [list(e) for e in graph.edges],
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"snnc": json.dumps(header)})


def _bad(path, what: str) -> UsageError:
    return UsageError(f"{path}: {what}; re-create it with snnc compile")


def load_graph(path: str | os.PathLike) -> Graph:
    """Read a ``graph.safetensors`` written by :func:`save_graph`; validated and verified."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist; give a build directory or a graph.safetensors file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # safetensors raises its own error types for any damage
        raise _bad(path, "not a readable safetensors file (corrupt or wrong format)") from None
    try:
        header = json.loads(meta["snnc"])
    except (KeyError, ValueError, RecursionError):
        raise _bad(path, "missing, unreadable or too deeply nested 'snnc' metadata") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(
            path,
            f"not an snnc graph file (format {header.get('format')!r})"
            if isinstance(header, dict)
            else "not an snnc graph file",
        )
    if header.get("version") != VERSION:
        raise _bad(path, f"graph file version {header.get('version')!r} is not supported")
    nodes = []
    try:
        for d in header["nodes"]:
            nodes.append(_node_from(d, tensors))
        edges = [(str(a), str(b)) for a, b in header["edges"]]
        graph = Graph({n.name: n for n in nodes}, tuple(edges), dict(header.get("meta") or {}))
        check_graph(graph)  # structure, then sizes and values the simulator can run
    except GraphError as e:
        raise _bad(path, f"inconsistent graph: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise _bad(path, f"malformed node entry ({type(e).__name__}: {first})") from None
    return graph


def _node_from(d: dict, tensors: dict):
    name, kind = d["name"], d["kind"]
    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r} for {name}")
    return NODE_KINDS[kind].from_dict(d, tensors)
