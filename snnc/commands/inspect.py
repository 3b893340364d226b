"""``snnc inspect FILE``: describe a model file (architecture, layers with shapes, parameters, masks,
accuracy), a netx network (a netx HDF5 file, or a build directory holding ``network.net``) or a NIR
graph (a ``nir.write`` file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from snnc import checkpoint
from snnc.commands import Outcome, Table
from snnc.nn.zoo import named_blocks


@dataclass(frozen=True)
class InspectOptions:
    """What ``snnc inspect`` was asked to describe."""

    file: str
    trust_pickle: bool = False
    arch: str | None = None  # a user architecture package.module:factory the model file names


def run_inspect(opts: InspectOptions) -> Outcome:
    """Describe ``opts.file``: the netx (NIR) description for a netx (NIR) file or a build directory
    with one, :func:`describe_model` for anything else."""
    path = Path(opts.file)
    kind = checkpoint.sniff(path) if path.is_file() else None
    if kind == "nir":
        info = describe_nir(path)
    elif kind == "hdf5":
        from snnc.targets.loihi2 import describe_netx

        info = describe_netx(path)
    elif path.is_dir() and (path / "network.net").exists():
        from snnc.targets.loihi2 import describe_netx

        info = describe_netx(path / "network.net")
    elif path.is_dir() and (path / "network.nir").exists():
        info = describe_nir(path / "network.nir")
    else:
        info = describe_model(path, trust_pickle=opts.trust_pickle, arch=opts.arch)
    return Outcome(
        info,
        heading=f"[bold]{info['file']}[/bold]: {info['summary']}",
        table=Table("layers", info["columns"], info["rows"]),
    )


def describe_nir(path: Path) -> dict:
    """``snnc inspect`` for a NIR file: its graph as snnc reads it (each synapse with the neuron after
    it as one node), shapes, parameters and neuron parameters, like a netx file's description."""
    import numpy as np

    from snnc.ir import Input, Output
    from snnc.targets.nir import read_nir

    graph = read_nir(path)
    shapes = graph.shapes()
    rows, layers, total = [], [], 0
    for name, node in graph.nodes.items():
        if isinstance(node, Input | Output):
            continue
        w = getattr(node, "weight", None)
        params = int(np.size(w)) if isinstance(w, np.ndarray) else 0
        neuron = getattr(node, "neuron", None)
        if neuron is not None and neuron.bias is not None:
            params += int(np.size(neuron.bias))
        total += params
        npar = None
        if neuron is not None:
            npar = {
                "threshold": float(neuron.threshold),
                "current_decay": int(neuron.current_decay),
                "voltage_decay": int(neuron.voltage_decay),
                "bias": neuron.bias is not None,
            }
        shape = list(shapes[name])
        layers.append({"name": name, "kind": node.kind, "shape": shape, "params": params, "neuron": npar})
        cell = (
            "-" if npar is None else f"{npar['threshold']:g}/{npar['current_decay']}/{npar['voltage_decay']}"
        )
        rows.append([name, node.kind, "x".join(map(str, shape)), params, cell])
    in_shape, out_shape = list(graph.input.shape), list(shapes[graph.output.name])
    notes = list(graph.meta.get("nir_notes", []))
    return {
        "file": str(path),
        "type": "nir",
        "precision": graph.precision,
        "input_shape": in_shape,
        "output_shape": out_shape,
        "parameters": total,
        "layers": layers,
        "approximations": notes,
        "summary": (
            f"NIR graph ({graph.precision}), {len(layers)} layers, input {'x'.join(map(str, in_shape))}, "
            f"output {'x'.join(map(str, out_shape))}, {total} parameters"
            + "".join(f"\n  approximated: {n}" for n in notes)
        ),
        "columns": ["layer", "kind", "shape", "params", "neuron (thr/du/dv)"],
        "rows": rows,
    }


def _layer_shapes(model) -> dict[str, tuple]:
    """Output shape (without batch and time) of every block, from one forward pass at T=2."""
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, block in named_blocks(model):

        def hook(mod, inp, out, name=name):
            shapes[name] = tuple(out.shape[1:-1])

        hooks.append(block.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros((1, *model.input_shape, 2)))
    for h in hooks:
        h.remove()
    return shapes


def describe_model(path: str | Path, trust_pickle: bool = False, arch: str | None = None) -> dict:
    model, header = checkpoint.load_model(path, trust_pickle=trust_pickle, arch=arch)
    shapes = _layer_shapes(model)
    rows, layers = [], []
    total_params = 0
    for name, block in named_blocks(model):
        params = sum(p.numel() for p in block.parameters(recurse=False))
        if block.kind != "residual":
            params += sum(p.numel() for n, p in block.named_parameters() if n.startswith("bn."))
        total_params += params
        cm = getattr(block, "channel_mask", None)
        wm = getattr(block, "weight_mask", None)
        kept = f"{int(cm.sum())}/{cm.numel()}" if cm is not None else "-"
        conn = f"{int(wm.sum())}/{wm.numel()}" if wm is not None else "-"
        shape = shapes.get(name, ())
        neuron = getattr(block, "neuron", None)
        layers.append(
            {
                "name": name,
                "kind": block.kind,
                "shape": list(shape),
                "params": params,
                "channels_kept": int(cm.sum()) if cm is not None else None,
                "channels_total": cm.numel() if cm is not None else None,
                "connections_kept": int(wm.sum()) if wm is not None else None,
                "connections_total": wm.numel() if wm is not None else None,
                "neuron": neuron.to_dict() if neuron is not None else None,
            }
        )
        rows.append([name, block.kind, "x".join(map(str, shape)), params, kept, conn])
    meta = header.get("meta", {})
    acc = meta.get("accuracy")
    data = header.get("data", {})
    summary = (
        f"{header['arch']['name']} on {data.get('dataset', '?')}, T={data.get('steps', '?')}, "
        f"{data.get('encoding', '?')} encoding, {total_params} parameters"
        + (f", accuracy {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "")
    )
    return {
        "file": str(path),
        "type": "snnc-model",
        "arch": header["arch"],
        "data": data,
        "accuracy": acc,
        "parameters": total_params,
        "input_shape": list(model.input_shape),
        "layers": layers,
        "meta": {k: v for k, v in meta.items() if k != "history"},
        "summary": summary,
        "columns": ["layer", "kind", "shape", "params", "channels kept", "connections kept"],
        "rows": rows,
    }
