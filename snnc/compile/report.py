"""The compile report: a JSON-able dict (per layer and totals), its schema, and the before/after
table.

``report.json`` holds ``format``, ``version``, ``source`` (model file or netx), ``data`` (dataset,
steps, encoding: what ``snnc evaluate`` needs to encode inputs; steps and encoding are null, unknown,
for a netx file), ``limits`` (neurocore limits used), ``layers`` (per population: channels
before/after, neurons, synapses, weight bits, cores, synapse memory in bytes (``sram_bytes``), the
fullest core's neurons, input axons and synapse words, quantization error), ``totals``,
``notes`` (pass remarks), ``lossy`` and, with ``--dataset``, ``accuracy``.

Synapses are counted as the target deploys them (the mapper's ``node.meta["mapping"]``), not as the
nonzeros of the weights: ``synapses`` are the stored synapses (a dense-encoded layer's zeros
included, a sparse layer's nonzeros only, a conv layer's neurons x kernel), ``synapse_encoding`` is
``dense``/``sparse``/``conv``/``pool``/``add``, ``synapse_bytes`` their memory, ``zero_weight_bytes``
the part of it that holds zero weights (zero conv taps stay in memory: a conv layer stores its
kernels whole, which the notes say), ``nonzero_synapses`` the nonzero connections, and
``synops_per_input_spike`` the stored synapses an input spike reaches on average (the deployed
SynOps per spike).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnc import ir
from snnc.errors import SnncError
from snnc.fileio import jsonable

REPORT_FORMAT = "snnc-compile-report"
REPORT_VERSION = 1

# Per-layer counts that the report also sums into "totals".
TOTAL_KEYS = (
    "channels_before",
    "channels_after",
    "params_before",
    "params_after",
    "neurons",
    "synapses",
    "cores",
    "sram_bytes",
    "nonzero_synapses",
    "synapse_bytes",
    "zero_weight_bytes",
)

_NUM = {"type": "number"}
_INT = {"type": "integer", "minimum": 0}
_LAYER = {
    "type": "object",
    "required": [
        "name",
        "kind",
        "channels_before",
        "channels_after",
        "neurons",
        "synapses",
        "params_before",
        "params_after",
        "weight_bits",
        "cores",
        "sram_bytes",
    ],
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["conv", "dense", "pool", "add", "input"]},
        "channels_before": _INT,
        "channels_after": _INT,
        "neurons": _INT,
        "synapses": _INT,
        "params_before": _INT,
        "params_after": _INT,
        "weight_bits": _INT,
        "cores": _INT,
        "sram_bytes": _INT,
        "nonzero_synapses": _INT,
        "synapse_bytes": _INT,
        "zero_weight_bytes": _INT,
        "synapse_encoding": {
            "type": "string",
            "enum": ["dense", "sparse", "conv", "pool", "add", "removed", ""],
        },
        "synops_per_input_spike": _NUM,
        "utilization_sram": _NUM,
        "utilization_neurons": _NUM,
        "neurons_per_core": _INT,
        "in_axons_per_core": _INT,
        "synapse_words_per_core": _INT,
        "quant": {"type": "object"},
    },
}
SCHEMA: dict = {
    "type": "object",
    "required": [
        "format",
        "version",
        "source",
        "precision",
        "data",
        "limits",
        "layers",
        "totals",
        "notes",
        "lossy",
    ],
    "properties": {
        "format": {"type": "string", "enum": [REPORT_FORMAT]},
        "version": {"type": "integer", "enum": [REPORT_VERSION]},
        "source": {
            "type": "object",
            "required": ["kind", "path"],
            "properties": {
                "kind": {"type": "string", "enum": ["model", "netx", "nir", "graph"]},
                "path": {"type": "string"},
            },
        },
        "precision": {"type": "string", "enum": ["fixed", "float"]},
        "data": {
            "type": "object",
            "required": ["dataset", "steps", "encoding"],
            "properties": {
                "dataset": {"type": ["string", "null"]},
                "steps": {"type": ["integer", "null"], "minimum": 1},  # null: unknown (a netx file)
                "encoding": {"type": ["string", "null"]},
            },
        },
        "limits": {
            "type": "object",
            "required": ["cores", "neurons_per_core", "sram_bytes_per_core", "in_axons_per_core"],
        },
        "layers": {"type": "array", "items": _LAYER},
        "totals": {
            "type": "object",
            "required": list(TOTAL_KEYS),
            "properties": {k: _INT for k in TOTAL_KEYS},
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "lossy": {"type": "boolean"},
        "accuracy": {
            "type": "object",
            "required": ["dataset", "samples", "reference", "compiled"],
            "properties": {
                "dataset": {"type": "string"},
                "samples": _INT,
                "reference": _NUM,
                "compiled": _NUM,
                "float": _NUM,
                "fixed": _NUM,
                "difference": _NUM,
                "agreement": _NUM,
            },
        },
        "files": {"type": "array", "items": {"type": "string"}},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_ok(value: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def validate(value: Any, schema: dict = SCHEMA, path: str = "report") -> None:
    """Check ``value`` against a JSON-schema subset (type, enum, required, properties, items,
    minimum).

    Raises :class:`SnncError` naming the first offending path (``jsonschema`` is not a dependency).
    """
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_type_ok(value, t) for t in types):
            raise SnncError(f"{path}: expected {' or '.join(types)}, got {type(value).__name__}")
    if "enum" in schema and value not in schema["enum"]:
        raise SnncError(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and _type_ok(value, "number") and value < schema["minimum"]:
        raise SnncError(f"{path}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                raise SnncError(f"{path}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                validate(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{path}[{i}]")


def _population_names(graph: ir.Graph) -> list[str]:
    """Nodes whose neurons occupy neurocores (an input layer with a neuron included)."""
    out = []
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Add | ir.Pool) or (
            isinstance(node, ir.Conv | ir.Dense | ir.Input) and node.neuron is not None
        ):
            out.append(name)
    return out


def _params(graph: ir.Graph, name: str) -> int:
    """Weights of a population: its own, plus those of the synapse-only nodes feeding an Add."""
    node = graph.nodes[name]
    if isinstance(node, ir.Add):
        return int(sum(graph.nodes[p].weight.size for p in graph.predecessors(name)))
    w = getattr(node, "weight", None)
    return int(w.size) if isinstance(w, np.ndarray) else 0


def build_report(
    before: ir.Graph, after: ir.Graph, source: dict, data: dict, accuracy: dict | None = None
) -> dict:
    """The report of one compilation: ``before`` is the input graph, ``after`` the mapped final
    graph."""
    sb, sa = before.shapes(), after.shapes()
    layers = []
    for name in _population_names(before):
        node_b = before.nodes[name]
        if name not in after.nodes:  # removed with a dead residual branch (remove_dead)
            layers.append(_removed_row(before, name, int(sb[name][0])))
            continue
        node_a = after.nodes[name]
        mapping = node_a.meta.get("mapping", {})
        quant = node_a.meta.get("quant", {})
        row = {
            "name": name,
            "kind": node_b.kind,
            "channels_before": int(sb[name][0]),
            "channels_after": int(sa[name][0]),
            "neurons": int(np.prod(sa[name])),
            "synapses": int(mapping.get("synapses", 0)),
            "params_before": _params(before, name),
            "params_after": _params(after, name),
            "weight_bits": int(quant.get("weight_bits", 0)),
            "cores": int(mapping.get("cores", 0)),
            "sram_bytes": int(mapping.get("sram_bytes", 0)),
            "nonzero_synapses": int(mapping.get("nonzero_synapses", 0)),
            "synapse_bytes": int(mapping.get("synapse_bytes", 0)),
            "zero_weight_bytes": int(mapping.get("zero_weight_bytes", 0)),
            "synapse_encoding": str(mapping.get("synapse_encoding", "")),
            "synops_per_input_spike": float(mapping.get("synops_per_input_spike", 0.0)),
            "utilization_sram": float(mapping.get("utilization_sram", 0.0)),
            "utilization_neurons": float(mapping.get("utilization_neurons", 0.0)),
        }
        for k in ("neurons_per_core", "in_axons_per_core", "synapse_words_per_core"):
            if k in mapping:
                row[k] = int(mapping[k])
        if quant:
            row["quant"] = {
                k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in quant.items()
            }
        layers.append(row)
    totals = {k: int(sum(r[k] for r in layers)) for k in TOTAL_KEYS}
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "source": source,
        "precision": after.precision,
        "data": data,
        "limits": dict(after.meta.get("core_limits", {})),
        "layers": layers,
        "totals": totals,
        "notes": [str(n) for n in after.meta.get("notes", ())] + _zero_tap_notes(layers),
        "lossy": bool(after.meta.get("lossy", False)),
    }
    if accuracy is not None:
        report["accuracy"] = accuracy
    validate(report)
    return report


def _removed_row(before: ir.Graph, name: str, channels: int) -> dict:
    """The row of a population ``remove_dead`` deleted with its branch: nothing of it is deployed."""
    zero = ("neurons", "synapses", "params_after", "weight_bits", "cores", "sram_bytes")
    row = {"name": name, "kind": before.nodes[name].kind, "channels_before": channels, "channels_after": 0}
    row.update(dict.fromkeys(zero, 0), params_before=_params(before, name))
    row.update(nonzero_synapses=0, synapse_bytes=0, zero_weight_bytes=0, synapse_encoding="removed")
    row.update(synops_per_input_spike=0.0, utilization_sram=0.0, utilization_neurons=0.0)
    return row


def _zero_tap_notes(layers: list[dict]) -> list[str]:
    """One note per conv-like layer whose zero kernel taps still occupy synapse memory."""
    out = []
    for r in layers:
        if r["synapse_encoding"] in ("conv", "add") and r["zero_weight_bytes"] > 0:
            out.append(
                f"{r['name']}: {r['zero_weight_bytes']} of {r['synapse_bytes']} bytes of conv kernels "
                "hold zero weights; they still occupy synapse memory (a conv layer stores its kernels "
                "whole), so this sparsity saves no memory"
            )
    return out


def table_rows(report: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of the before/after table (one row per layer, then the totals)."""
    cols = [
        "layer",
        "kind",
        "channels",
        "params",
        "neurons",
        "synapses",
        "encoding",
        "bits",
        "cores",
        "KiB",
    ]
    rows = []
    for r in report["layers"]:
        rows.append(
            [
                r["name"],
                r["kind"],
                f"{r['channels_before']}→{r['channels_after']}",
                f"{r['params_before']}→{r['params_after']}",
                r["neurons"],
                r["synapses"],
                r.get("synapse_encoding") or "-",
                r["weight_bits"] or "-",
                r["cores"],
                f"{r['sram_bytes'] / 1024:.1f}",
            ]
        )
    t = report["totals"]
    rows.append(
        [
            "total",
            "",
            f"{t['channels_before']}→{t['channels_after']}",
            f"{t['params_before']}→{t['params_after']}",
            t["neurons"],
            t["synapses"],
            "",
            "",
            t["cores"],
            f"{t['sram_bytes'] / 1024:.1f}",
        ]
    )
    return cols, rows


def graph_json(graph: ir.Graph, max_array: int = 256) -> dict:
    """The structure of ``graph`` for ``graph.json``: nodes (kind, shape, params, neuron,
    hyper-parameters, meta), edges and graph meta. Arrays longer than ``max_array`` are left out
    (the weights live in ``graph.safetensors``)."""
    shapes = graph.shapes()
    nodes = []
    for name, node in graph.nodes.items():
        d: dict[str, Any] = {"name": name, "kind": node.kind, "shape": list(shapes[name])}
        w = getattr(node, "weight", None)
        if isinstance(w, np.ndarray):
            d["weight_shape"] = list(w.shape)
            d["params"] = int(w.size)
            d["weight_exp"] = int(getattr(node, "weight_exp", 0))
        elif w is not None:
            d["weight"] = float(w)
        for k in ("stride", "padding", "dilation", "groups", "kernel"):
            if hasattr(node, k):
                d[k] = jsonable(getattr(node, k))
        neuron = getattr(node, "neuron", None)
        if neuron is not None:
            d["neuron"] = {
                "threshold": float(neuron.threshold),
                "type": neuron.kind,  # "cuba", or "sdnn" (sigma-delta: no decays, a mode)
                "current_decay": getattr(neuron, "current_decay", None),
                "voltage_decay": getattr(neuron, "voltage_decay", None),
                **({"mode": neuron.mode} if neuron.graded else {}),
                "bias": None
                if neuron.bias is None
                else (neuron.bias.tolist() if neuron.bias.size <= max_array else "omitted"),
            }
        if getattr(node, "bn", None) is not None:
            d["batch_norm"] = True
        meta = {}
        for k, v in node.meta.items():
            if isinstance(v, np.ndarray) and v.size > max_array:
                continue
            meta[k] = jsonable(v)
        d["meta"] = meta
        nodes.append(d)
    gmeta = {k: jsonable(v) for k, v in graph.meta.items()}
    return {
        "format": "snnc-graph-structure",
        "version": 1,
        "precision": graph.precision,
        "nodes": nodes,
        "edges": [list(e) for e in graph.edges],
        "meta": gmeta,
    }
