"""``graph.safetensors``: an IR :class:`~snnc.ir.Graph` of either precision in one file, no
pickle.

Arrays (weights, biases, batch-norm statistics) are safetensors tensors named ``<node>.<field>``;
the structure (node kinds, scalar fields, edges, graph and node ``meta``) is JSON in the metadata
entry ``snnc``: ``{"format": "snnc-graph", "version": 1, "meta": {...}, "nodes": [...], "edges":
[...]}``. Written atomically; on reading every field is validated and the graph is verified, so a
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
from snnc.ir import (
    NODE_KINDS,
    Add,
    BatchNorm,
    Conv,
    CubaLIF,
    Dense,
    Graph,
    GraphError,
    Pool,
)

FORMAT = "snnc-graph"
VERSION = 1
GRAPH_FILE = "graph.safetensors"


def _jsonable(obj):
    """JSON-able copy of ``obj``; values JSON cannot hold are dropped (analysis caches)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            try:
                out[str(k)] = _jsonable(v)
            except TypeError:
                continue
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    raise TypeError(type(obj).__name__)


def _neuron_dict(n: CubaLIF | None, name: str, tensors: dict) -> dict | None:
    if n is None:
        return None
    if n.bias is not None:
        tensors[f"{name}.neuron.bias"] = np.ascontiguousarray(n.bias, dtype=np.float64)
    return {
        "threshold": float(n.threshold),
        "current_decay": n.current_decay,
        "voltage_decay": n.voltage_decay,
        "bias": n.bias is not None,
    }


def save_graph(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` (safetensors + JSON structure), atomically. Verifies it first."""
    from safetensors.numpy import save_file

    graph.verify()
    tensors: dict[str, np.ndarray] = {}
    nodes = []
    for name, node in graph.nodes.items():
        d: dict = {"name": name, "kind": node.kind, "meta": _jsonable(node.meta)}
        if node.kind == "input":
            d["shape"] = list(node.shape)
        if isinstance(node, Conv | Dense):
            tensors[f"{name}.weight"] = np.ascontiguousarray(node.weight, dtype=np.float64)
            d["weight_exp"] = int(node.weight_exp)
            if node.bn is not None:
                for f in ("weight", "bias", "running_mean", "running_var"):
                    tensors[f"{name}.bn.{f}"] = np.ascontiguousarray(getattr(node.bn, f))
                d["bn_eps"] = float(node.bn.eps)
        if isinstance(node, Conv):
            d.update(
                stride=list(node.stride),
                padding=list(node.padding),
                dilation=list(node.dilation),
                groups=node.groups,
            )
        if isinstance(node, Pool):
            d.update(kernel=list(node.kernel), stride=list(node.stride), weight=float(node.weight))
        if isinstance(node, Conv | Dense | Pool | Add):
            d["neuron"] = _neuron_dict(node.neuron, name, tensors)
        nodes.append(d)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "meta": _jsonable(graph.meta),
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
    except (KeyError, ValueError):
        raise _bad(path, "missing or unreadable 'snnc' metadata") from None
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
        graph.verify()
    except GraphError as e:
        raise _bad(path, f"inconsistent graph: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"malformed node entry ({type(e).__name__}: {e})") from None
    return graph


def _node_from(d: dict, tensors: dict):
    name, kind = d["name"], d["kind"]
    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r} for {name}")
    cls = NODE_KINDS[kind]
    kw: dict = {"meta": dict(d.get("meta") or {})}
    if kind == "input":
        kw["shape"] = tuple(int(s) for s in d["shape"])
    if kind in ("conv", "dense"):
        kw["weight"] = tensors[f"{name}.weight"]
        kw["weight_exp"] = int(d.get("weight_exp", 0))
        if "bn_eps" in d:
            kw["bn"] = BatchNorm(
                *(tensors[f"{name}.bn.{f}"] for f in ("weight", "bias", "running_mean", "running_var")),
                eps=float(d["bn_eps"]),
            )
    if kind == "conv":
        kw.update(
            stride=tuple(d["stride"]),
            padding=tuple(d["padding"]),
            dilation=tuple(d["dilation"]),
            groups=int(d["groups"]),
        )
    if kind == "pool":
        kw.update(kernel=tuple(d["kernel"]), stride=tuple(d["stride"]), weight=float(d["weight"]))
    if kind in ("conv", "dense", "pool", "add"):
        n = d.get("neuron")
        if n is not None:
            bias = tensors[f"{name}.neuron.bias"] if n.get("bias") else None
            thr = n["threshold"]
            kw["neuron"] = CubaLIF(
                threshold=int(thr) if float(thr).is_integer() else float(thr),
                current_decay=n["current_decay"],
                voltage_decay=n["voltage_decay"],
                bias=bias,
            )
    return cls(name, **kw)
