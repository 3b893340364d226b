"""``snnc evaluate NET_OR_MODEL --dataset D [--backend sim|lava|torch]`` (DESIGN.md's CLI contract).

Accuracy by output spike count on the test split, encoded as the model file's (or the build's
``report.json``) ``data`` settings say, else as the options say; the encoding noise is seeded by
``--seed`` exactly as ``snnc.train.evaluate`` does. A model file runs as the torch model
(``--backend torch``) or compiled for the ``loihi2`` target (``sim``, ``lava``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snnc.commands import Outcome
from snnc.errors import UsageError

if TYPE_CHECKING:
    from snnc.ir import Graph
    from snnc.nn.zoo import SpikingNet
    from snnc.ui import Reporter

BACKENDS = ("sim", "lava", "torch")


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``snnc evaluate`` was asked to do. ``steps``/``encoding``/``dataset`` None: the file's
    data settings (else 16 steps, rate encoding)."""

    target: str  # a model file, a build directory or a netx file
    dataset: str | None = None
    backend: str = "sim"
    limit: int | None = None
    steps: int | None = None
    encoding: str | None = None
    seed: int = 0
    trust_pickle: bool = False
    arch: str | None = None  # --arch: needed for a model file made from a user architecture


@dataclass(frozen=True)
class Subject:
    """What is evaluated: a model (with its file header) or a network graph, and its data settings."""

    kind: str  # "model" or "net"
    settings: dict
    model: SpikingNet | None = None
    header: dict | None = None
    graph: Graph | None = None


def read_report_data(path: Path) -> dict:
    """The ``data`` settings a build directory's ``report.json`` records ({} without one)."""
    rep = path / "report.json"
    if not rep.is_file():
        return {}
    try:
        data = json.loads(rep.read_text()).get("data") or {}
    except (ValueError, AttributeError):
        raise UsageError(f"{rep} is not valid JSON; re-create the build with snnc compile") from None
    from snnc import data as D

    return D.check_data_settings(data, str(rep))


def is_model_file(path: Path) -> bool:
    """Whether ``path`` is an snnc model file (or a PyTorch checkpoint), not a network."""
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


def read_subject(opts: EvaluateOptions) -> Subject:
    """Load the model file or the network ``opts.target`` names."""
    path = Path(opts.target)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a model file, a build directory or a .net file")
    if is_model_file(path):
        from snnc import checkpoint

        model, header = checkpoint.load_model(path, trust_pickle=opts.trust_pickle, arch=opts.arch)
        from snnc import data as D

        settings = D.check_data_settings(header.get("data"), str(path))
        return Subject("model", settings, model=model, header=header)
    if opts.backend == "torch":
        from snnc.commands.models import network_kind, read_graph

        kind = network_kind(path)
        if kind is None:
            raise UsageError(
                "--backend torch needs a model file, a .net or a .nir file; a build runs on sim or lava"
            )
        from snnc.nn.from_graph import graph_to_model  # the network as the float model prune trains

        return Subject("net", {}, model=graph_to_model(read_graph(path, kind)))
    from snnc.targets import load_net

    graph = load_net(path)
    return Subject("net", read_report_data(path) if path.is_dir() else {}, graph=graph)


def compiled_graph(subject: Subject, path: Path) -> Graph:
    """The network to run on ``sim``/``lava``: the net itself, or the model compiled for ``loihi2``
    (the passes every deployed net goes through)."""
    if subject.graph is not None:
        return subject.graph
    from snnc.compile.pipeline import compile_model
    from snnc.targets.registry import TARGETS

    graph, _ = compile_model(subject.model, TARGETS.get("loihi2"), header=subject.header, path=str(path))
    return graph


def count_correct(
    graph: Graph,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    encoding: str,
    seed: int,
    backend: str,
    progress: Callable[[int], None],
) -> tuple[int, int]:
    """``(correct, synops)`` of ``graph`` on ``sim`` (or ``lava``) over batches of 256, encoded with
    the same stream as ``snnc.train.evaluate``."""
    import torch

    from snnc import data as D
    from snnc.sim import simulate

    run = None
    if backend == "lava":
        from snnc.targets.registry import TARGETS

        run = TARGETS.get("loihi2").run
    gen = torch.Generator()
    gen.manual_seed(seed)  # same encoding stream as snnc.train.evaluate (batches of 256)
    correct, synops = 0, 0
    for xb, yb in D.batches(x, y, 256, shuffle=False, generator=None):
        spikes = D.encode(xb, steps, encoding, generator=gen).numpy().astype(np.uint8)
        res = simulate(graph, spikes)
        out = res.output
        synops += sum(res.synops.values())
        if run is not None:
            out = run(None, graph, spikes)
        correct += int((out.sum(-1, dtype=np.int64).argmax(1) == yb.numpy()).sum())
        progress(len(yb))
    return correct, synops


def run_evaluate(opts: EvaluateOptions, reporter: Reporter | None = None) -> Outcome:
    """Evaluate as ``opts`` says; the result's ``accuracy`` is in [0, 1]."""
    from snnc import data as D
    from snnc.compile.pipeline import DEFAULT_DATA

    if opts.backend not in BACKENDS:
        raise UsageError(f"unknown backend {opts.backend!r}; choose one of {', '.join(BACKENDS)}")
    if opts.dataset is not None:
        D.check_name(opts.dataset)
    path = Path(opts.target)
    subject = read_subject(opts)
    dataset = opts.dataset or subject.settings.get("dataset")
    if dataset is None:
        raise UsageError(f"{path} records no dataset; give --dataset digits, mnist or PATH.npz")
    dataset = D.with_bins(dataset, opts.steps or subject.settings.get("steps"))
    # a netx file (or a build of one) records no steps or encoding: snnc's defaults, said so below
    defaulted = [k for k, v in (("steps", opts.steps), ("encoding", opts.encoding)) if v is None]
    defaulted = [k for k in defaulted if not subject.settings.get(k)]
    steps = int(opts.steps or subject.settings.get("steps") or DEFAULT_DATA["steps"])
    encoding = opts.encoding or subject.settings.get("encoding") or DEFAULT_DATA["encoding"]
    ds = D.load(dataset)
    if ds.time_steps is not None:
        defaulted = []  # a spike dataset fixes both
    if ds.time_steps is not None or encoding == "given":
        steps, encoding = D.resolve_settings(ds, opts.steps or subject.settings.get("steps"), encoding)
    graph = compiled_graph(subject, path) if opts.backend != "torch" else None
    x, y = ds.test
    if opts.limit is not None:
        x, y = x[: opts.limit], y[: opts.limit]
    if graph is not None or subject.kind == "net":
        shape = graph.input.shape if graph is not None else subject.model.input_shape
        x = D.fit_images(x, shape, dataset, str(path), ds.time_steps is not None)
    t0 = time.perf_counter()
    if opts.backend == "torch":
        from snnc.train import evaluate

        acc = evaluate(subject.model, x, y, steps, encoding, seed=opts.seed)
        correct, synops = int(round(acc * len(y))), None
    else:
        from snnc.ui import Reporter

        with (reporter or Reporter(False)).task(opts.limit or 0, f"evaluate ({opts.backend})") as advance:
            correct, synops = count_correct(graph, x, y, steps, encoding, opts.seed, opts.backend, advance)
    n = len(y)
    result = {
        "target": str(path),
        "kind": subject.kind,
        "backend": opts.backend,
        "dataset": dataset,
        "steps": steps,
        "encoding": encoding,
        "defaulted": defaulted,
        "seed": opts.seed,
        "samples": int(n),
        "correct": correct,
        "accuracy": correct / max(n, 1),
        "seconds": time.perf_counter() - t0,
        "synops_per_sample": None if synops is None else synops / max(n, 1),
    }
    line = (
        f"{opts.backend} on {dataset} ({n} test samples, T={steps}, {encoding}): accuracy "
        f"{100 * result['accuracy']:.2f}%"
    )
    if defaulted:
        flags = " and ".join(f"--{k}" for k in defaulted)
        line += f" ({' and '.join(defaulted)}: snnc's default, as {path} records none; set them with {flags})"
    return Outcome(result, lines=(line,))
