"""``snnc simulate`` and ``snnc evaluate`` (the CLI contract of DESIGN.md).

``simulate NET --input X.npy --output Y.npy [--backend sim|lava|onnx]``: ``X`` ``(N, *input_shape,
T)`` 0/1 integer spikes (input_shape in PyTorch order as in the file), ``Y`` ``(N, *output_shape,
T)`` int8, the last layer's spikes as Lava's sink at ``net.out`` records them. ``Y`` is written
atomically, never on bad input.

``evaluate NET_OR_MODEL --dataset D [--backend sim|lava|torch]``: accuracy by output spike count on
the test split, encoded as the model file's (or the build's ``report.json``) ``data`` settings say,
else as the options say; the encoding noise is seeded by ``--seed`` exactly as
``snnc.train.evaluate`` does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from snnc.errors import UsageError

BACKENDS = ("sim", "lava", "onnx")


def load_spikes(path: str | Path) -> np.ndarray:
    """Read ``X.npy`` (no pickle), integer or bool dtype only, else one-line :class:`UsageError`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist; give an .npy array (N, *input_shape, T)")
    try:
        # mapped copy-on-write, not read: no copy through fresh memory, and still writable
        x = np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        objects = any(w in str(e).lower() for w in ("pickle", "python objects"))
        why = "it holds Python objects" if objects else "not a valid .npy file"
        raise UsageError(
            f"cannot read input {path}: {why}; save spikes with numpy.save as integers"
        ) from None
    if not isinstance(x, np.ndarray):
        raise UsageError(f"input {path} is an .npz archive; give a single .npy array")
    if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise UsageError(
            f"input {path} has dtype {x.dtype}; spikes must be an integer (or bool) array " "of 0/1"
        )
    return x


def _net_paths(net: str) -> tuple[Path | None, Path | None]:
    """(netx file, onnx file) that a NET argument names, when they exist."""
    p = Path(net)
    if p.is_dir():
        netx = p / "network.net"
        onnx = p / "model.onnx"
        return (netx if netx.is_file() else None), (onnx if onnx.is_file() else None)
    from snnc.checkpoint import sniff

    return (p if p.is_file() and sniff(p) == "hdf5" else None), None


def run_simulate(net: str, input_path: str, output_path: str, backend: str) -> dict:
    """The library side of ``snnc simulate``; returns the JSON result."""
    from snnc.fileio import atomic_path
    from snnc.sim import kernels, simulate
    from snnc.targets import load_net

    kernels.warm_up()  # numba starts while the files are read
    graph = load_net(net)
    x = load_spikes(input_path)
    t0 = time.perf_counter()
    result = simulate(graph, x)
    sim_seconds = time.perf_counter() - t0
    out = {
        "backend": backend,
        "net": str(net),
        "input": str(input_path),
        "output": str(output_path),
        **result.summary(),
        "sim_seconds": sim_seconds,
    }
    y = result.output
    if backend == "lava":
        from snnc.targets.loihi2 import run_lava

        netx_file, _ = _net_paths(net)
        t0 = time.perf_counter()
        y = run_lava(netx_file if netx_file is not None else graph, x)
        out["lava_seconds"] = time.perf_counter() - t0
        out["mismatches_vs_sim"] = int(np.sum(y != result.output))
    elif backend == "onnx":
        from snnc.targets.onnx import build_step_model, run_onnx

        _, onnx_file = _net_paths(net)
        y = run_onnx(onnx_file if onnx_file is not None else build_step_model(graph), x)
        out["mismatches_vs_sim"] = int(np.sum(y != result.output))
    with atomic_path(output_path) as tmp:
        with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temp name
            np.save(fh, y.astype(np.int8))
    out["output_spikes"] = int(y.sum(dtype=np.int64))
    return out


# -- evaluate ------------------------------------------------------------------------------------
def _read_report_data(path: Path) -> dict:
    rep = path / "report.json"
    if not rep.is_file():
        return {}
    try:
        data = json.loads(rep.read_text()).get("data") or {}
    except (ValueError, AttributeError):
        raise UsageError(f"{rep} is not valid JSON; re-create the build with snnc compile") from None
    return data if isinstance(data, dict) else {}


def _is_model_file(path: Path) -> bool:
    from snnc.checkpoint import sniff

    if not path.is_file():
        return False
    kind = sniff(path)
    if kind in ("torch-zip", "pickle"):
        return True
    if kind != "safetensors":
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = json.loads((f.metadata() or {}).get("snnc", "{}"))
    except Exception:
        return False
    return header.get("format") == "snnc-model"


def run_evaluate(
    target: str,
    dataset: str | None,
    backend: str,
    limit: int | None,
    steps: int | None,
    encoding: str | None,
    seed: int,
    trust_pickle: bool = False,
    progress=None,
) -> dict:
    """The library side of ``snnc evaluate``; returns the JSON result (accuracy in [0, 1])."""
    import torch

    from snnc import data as D

    path = Path(target)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a model file, a build directory or a .net file")
    model = header = graph = None
    if _is_model_file(path):
        from snnc import checkpoint

        model, header = checkpoint.load_model(path, trust_pickle=trust_pickle)
        settings = dict(header.get("data") or {})
        kind = "model"
    else:
        if backend == "torch":
            raise UsageError("--backend torch needs a model file; a build or .net file runs on sim or lava")
        from snnc.targets import load_net

        graph = load_net(path)
        settings = _read_report_data(path) if path.is_dir() else {}
        kind = "net"
    dataset = dataset or settings.get("dataset")
    if dataset is None:
        raise UsageError(f"{path} records no dataset; give --dataset digits or mnist")
    steps = int(steps or settings.get("steps") or 16)
    encoding = encoding or settings.get("encoding") or "rate"
    if model is not None and backend != "torch":
        from snnc.compile.pipeline import compile_model

        graph, _ = compile_model(model, header, path=str(path))
    ds = D.load(dataset)
    x, y = ds.test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if graph is not None and tuple(graph.input.shape) != tuple(x.shape[1:]):
        raise UsageError(
            f"{path} expects input {tuple(graph.input.shape)} but {dataset} images are "
            f"{tuple(x.shape[1:])}; choose the dataset the network was trained on"
        )
    t0 = time.perf_counter()
    if backend == "torch":
        from snnc.train import evaluate

        acc = evaluate(model, x, y, steps, encoding, seed=seed)
        correct = int(round(acc * len(y)))
        synops = None
    else:
        from snnc.sim import simulate

        gen = torch.Generator()
        gen.manual_seed(seed)  # same encoding stream as snnc.train.evaluate (batches of 256)
        correct, synops = 0, 0
        for xb, yb in D.batches(x, y, 256, shuffle=False, generator=None):
            spikes = D.encode(xb, steps, encoding, generator=gen).numpy().astype(np.uint8)
            res = simulate(graph, spikes)
            out = res.output
            synops += sum(res.synops.values())
            if backend == "lava":
                from snnc.targets.loihi2 import run_lava

                out = run_lava(graph, spikes)
            correct += int((out.sum(-1, dtype=np.int64).argmax(1) == yb.numpy()).sum())
            if progress is not None:
                progress(len(yb))
    seconds = time.perf_counter() - t0
    n = len(y)
    return {
        "target": str(path),
        "kind": kind,
        "backend": backend,
        "dataset": dataset,
        "steps": steps,
        "encoding": encoding,
        "seed": seed,
        "samples": int(n),
        "correct": correct,
        "accuracy": correct / max(n, 1),
        "seconds": seconds,
        "synops_per_sample": None if synops is None else synops / max(n, 1),
    }


def register(cli: click.Group) -> None:
    """Add ``simulate`` and ``evaluate`` to the ``snnc`` group."""
    from snnc.cli import CONTEXT, common_options, emit_json, reporter

    @cli.command(context_settings=CONTEXT)
    @click.argument("net", type=click.Path())
    @click.option(
        "--input",
        "input_path",
        required=True,
        type=click.Path(),
        help="X.npy: (N, *input_shape, T) 0/1 integer spikes, input_shape in PyTorch order.",
    )
    @click.option(
        "--output",
        "output_path",
        required=True,
        type=click.Path(dir_okay=False),
        help="Y.npy to write: (N, *output_shape, T) spikes of the last layer.",
    )
    @click.option("--backend", type=click.Choice(BACKENDS), default="sim", show_default=True)
    @common_options
    def simulate(net, input_path, output_path, backend, seed, as_json, quiet):
        """Run a build directory or netx file on spikes X and write the output spikes Y."""
        result = run_simulate(net, input_path, output_path, backend)
        if as_json:
            emit_json(result)
        elif not quiet:
            from snnc.ui import console, table

            rows = [
                [r["name"], r["neurons"], r["spikes"], f"{r['synops_per_sample']:.0f}"]
                for r in result["layers"]
            ]
            console.print(table("layers", ["layer", "neurons", "spikes", "SynOps/sample"], rows))
            extra = ""
            if "mismatches_vs_sim" in result:
                extra = f", {result['mismatches_vs_sim']} mismatches vs sim"
            click.echo(
                f"{backend}: {result['output_spikes']} output spikes -> {output_path}{extra}; "
                f"{result['energy_per_inference_j_loihi1_figures'] * 1e6:.3f} uJ/inference "
                "(Loihi 1 per-op figures)"
            )

    @cli.command(context_settings=CONTEXT)
    @click.argument("target", metavar="NET_OR_MODEL", type=click.Path())
    @click.option(
        "--dataset",
        type=click.Choice(["digits", "mnist"]),
        default=None,
        help="Dataset (default: the one the file records).",
    )
    @click.option("--backend", type=click.Choice(["sim", "lava", "torch"]), default="sim", show_default=True)
    @click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="Use only the first N test samples.",
    )
    @click.option(
        "--steps",
        "-T",
        type=click.IntRange(min=1),
        default=None,
        help="Time steps (default: the file's data settings, else 16).",
    )
    @click.option(
        "--encoding",
        type=click.Choice(["rate", "regular", "direct"]),
        default=None,
        help="Spike encoding (default: the file's data settings, else rate).",
    )
    @click.option("--trust-pickle", is_flag=True, help="Load a PyTorch pickle you made yourself.")
    @common_options
    def evaluate(target, dataset, backend, limit, steps, encoding, trust_pickle, seed, as_json, quiet):
        """Accuracy by output spike count on the test split (sim, Lava, or the torch model)."""
        rep = reporter(quiet, as_json)
        with rep.task(limit or 0, f"evaluate ({backend})") as advance:
            result = run_evaluate(
                target,
                dataset,
                backend,
                limit,
                steps,
                encoding,
                seed,
                trust_pickle,
                progress=advance,
            )
        if as_json:
            emit_json(result)
        elif not quiet:
            click.echo(
                f"{backend} on {result['dataset']} ({result['samples']} test samples, "
                f"T={result['steps']}, {result['encoding']}): accuracy "
                f"{100 * result['accuracy']:.2f}%"
            )
