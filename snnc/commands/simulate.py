"""``snnc simulate NET --input X.npy --output Y.npy [--backend sim|lava|onnx]`` (DESIGN.md's CLI contract).

``X`` ``(N, *input_shape, T)`` 0/1 integer spikes (input_shape in PyTorch order as in the file),
``Y`` ``(N, *output_shape, T)`` int8, the last layer's spikes as Lava's sink at ``net.out`` records
them. ``Y`` is written atomically, never on bad input. ``sim`` is :mod:`snnc.sim`; ``lava`` and
``onnx`` run the ``loihi2`` and ``onnx`` targets' ``run`` and count their mismatches against ``sim``.
This path imports no torch, ONNX or Lava unless the backend needs it (start-up time is benchmarked).

``--record [LAYER:]KIND`` (``KIND`` one of ``spikes``, ``u``, ``v``; ``LAYER`` a neuron layer's node
name as ``snnc inspect`` lists it, default the last one) makes ``Y`` that layer's spikes (int8) or its
current ``u`` / voltage ``v`` at the end of every step (int32; ``v`` after the spike reset), as Lava's
``Monitor`` reads ``lif.u`` / ``lif.v``. A non-spiking readout (lava-dl's integrator output layers,
docs/loihi2.md §1.4) is read as ``--record v``. ``sim`` computes it with
:func:`snnc.sim.trace_layers`, ``lava`` with :func:`snnc.targets.loihi2.probe.probe_lava`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnc.commands import Outcome, Table
from snnc.errors import UsageError

BACKENDS = ("sim", "lava", "onnx")
RECORD_KINDS = ("spikes", "u", "v")
RECORD_BACKENDS = ("sim", "lava")
BACKEND_TARGETS = {"lava": "loihi2", "onnx": "onnx"}  # the target whose ``run`` each backend is


@dataclass(frozen=True)
class SimulateOptions:
    """What ``snnc simulate`` was asked to do."""

    net: str
    input: str
    output: str
    backend: str = "sim"
    record: str | None = None  # "[LAYER:]KIND": Y holds that instead of the output layer's spikes


def load_spikes(path: str | Path) -> np.ndarray:
    """Read ``X.npy`` (no pickle): integer, bool or float (exactly 0.0/1.0, as lava-dl's ground-truth
    arrays hold spikes) dtype, else one-line :class:`UsageError`. The values are checked against the
    network by :func:`snnc.sim.common.check_spikes`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"input file {path} does not exist; give an .npy array (N, *input_shape, T)")
    try:
        # mapped copy-on-write, not read: no copy through fresh memory, and still writable
        with warnings.catch_warnings():  # a crafted shape overflows numpy's size product: refused below
            warnings.simplefilter("ignore", RuntimeWarning)
            x = np.load(path, mmap_mode="c", allow_pickle=False)
    except Exception as e:  # numpy's header parser raises many kinds (ValueError, TokenError, ...) on damage
        objects = any(w in str(e).lower() for w in ("pickle", "python objects"))
        why = "it holds Python objects" if objects else "not a valid .npy file"
        raise UsageError(
            f"cannot read input {path}: {why}; save spikes with numpy.save as integers"
        ) from None
    if not isinstance(x, np.ndarray):
        raise UsageError(f"input {path} is an .npz archive; give a single .npy array")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_):
        raise UsageError(
            f"input {path} has dtype {x.dtype}; spikes must be an integer, bool or float array of 0/1"
        )
    return x


MAX_OUTPUT_VALUES = 1 << 27  # Y's values (int8): 128 MiB


def check_output_size(graph, x: np.ndarray, layer: str | None = None) -> None:
    """One-line :class:`UsageError` when ``Y`` for ``x`` would exceed :data:`MAX_OUTPUT_VALUES`
    (``layer``: the recorded layer, default the output)."""
    n, t = x.shape[0], x.shape[-1]
    size = n * t * int(np.prod(graph.shapes()[layer or graph.output.name]))
    if size > MAX_OUTPUT_VALUES:
        raise UsageError(
            f"the output for {n} samples x {t} steps would hold {size} values (limit {MAX_OUTPUT_VALUES}); "
            "simulate fewer samples at a time"
        )


def parse_record(graph, record: str) -> tuple[str, str]:
    """``"[LAYER:]KIND"`` -> ``(layer, kind)`` for ``graph``; one-line :class:`UsageError` naming the
    layers or kinds otherwise. ``LAYER`` defaults to the last neuron layer (the readout)."""
    layers = [n.name for n in graph.nodes.values() if getattr(n, "neuron", None) is not None]
    layer, _, kind = record.rpartition(":")
    if kind not in RECORD_KINDS:
        raise UsageError(
            f"--record {record!r}: kind must be one of {', '.join(RECORD_KINDS)} (as LAYER:KIND)"
        )
    if not layer:
        if not layers:
            raise UsageError(f"--record {record!r}: the network has no neuron layer")
        layer = layers[-1]
    if layer not in layers:
        raise UsageError(f"--record {record!r}: no neuron layer {layer!r}; choose one of {', '.join(layers)}")
    if kind != "spikes" and getattr(graph.nodes[layer].neuron, "graded", False):
        raise UsageError(f"--record {record!r}: {layer} is a sigma-delta layer (no u, v); record its spikes")
    return layer, kind


def record_sim(graph, x: np.ndarray, layer: str, kind: str, result) -> np.ndarray:
    """``Y`` of ``--record layer:kind`` by the simulator (``result``: its run with ``record=True``)."""
    if kind == "spikes":
        return result.layers[layer]
    from snnc.sim import trace_layers

    if graph.precision != "fixed":
        raise UsageError("--record u/v needs a fixed-point network; compile it for loihi2 first")
    return getattr(trace_layers(graph, x, layers=(layer,))[layer], kind)


def record_lava(graph, x: np.ndarray, layer: str, kind: str, net: str) -> np.ndarray:
    """``Y`` of ``--record layer:kind`` by Lava (:func:`~snnc.targets.loihi2.probe.probe_lava`):
    a netx file runs as it is (a build directory's ``network.net``), else the graph."""
    from snnc.targets.loihi2.probe import probe_lava

    path = Path(net) / "network.net" if Path(net).is_dir() else Path(net)
    from snnc.ir import Add, Pool

    as_file = (
        path.is_file()
        and path.suffix != ".safetensors"
        and not any(isinstance(n, Add | Pool) for n in graph.nodes.values())
    )
    rec = probe_lava(graph, x, state=(layer,) if kind != "spikes" else (), net_path=path if as_file else None)
    return getattr(rec[layer], kind)


def run_simulate(opts: SimulateOptions) -> Outcome:
    """Simulate ``opts.net`` on the spikes in ``opts.input`` and write ``opts.output`` atomically."""
    from snnc.fileio import atomic_path, check_distinct_paths
    from snnc.sim import check_input, kernels, simulate
    from snnc.targets import load_net

    if opts.backend not in BACKENDS:
        raise UsageError(f"unknown backend {opts.backend!r}; choose one of {', '.join(BACKENDS)}")
    if opts.record is not None and opts.backend not in RECORD_BACKENDS:
        raise UsageError(f"--record runs on the {' and '.join(RECORD_BACKENDS)} backends, not {opts.backend}")
    reads = {"NET": opts.net, "--input": opts.input}
    if Path(opts.net).is_dir():  # the build directory's files that a backend reads
        reads |= {f"NET/{n}": Path(opts.net) / n for n in ("graph.safetensors", "network.net", "model.onnx")}
    check_distinct_paths(reads, {"--output": opts.output})
    kernels.warm_up()  # numba starts while the files are read
    graph = load_net(opts.net)
    x = check_input(graph, load_spikes(opts.input))  # before any kernel sees it (graded: sigma-delta)
    layer, kind = parse_record(graph, opts.record) if opts.record is not None else (None, "spikes")
    check_output_size(graph, x, layer)
    t0 = time.perf_counter()
    result = simulate(graph, x, record=layer is not None)
    ours = result.output if layer is None else record_sim(graph, x, layer, kind, result)
    sim_seconds = time.perf_counter() - t0
    out = {
        "backend": opts.backend,
        "net": str(opts.net),
        "input": str(opts.input),
        "output": str(opts.output),
        **result.summary(),
        "sim_seconds": sim_seconds,
    }
    if layer is not None:
        out["record"] = {"layer": layer, "kind": kind}
    y = ours
    if opts.backend != "sim":
        from snnc.targets.registry import TARGETS

        t0 = time.perf_counter()
        if layer is None:
            y = TARGETS.get(BACKEND_TARGETS[opts.backend]).run(Path(opts.net), graph, x)
        else:
            y = record_lava(graph, x, layer, kind, opts.net)
        if opts.backend == "lava":
            out["lava_seconds"] = time.perf_counter() - t0
        out["mismatches_vs_sim"] = int(np.sum(y != ours))
    # u, v: 24-bit state (docs/loihi2.md §2.1); a sigma-delta layer's spikes: int32 payloads (§2.7)
    dtype = np.int8 if kind == "spikes" and ours.dtype == np.int8 else np.int32
    with atomic_path(opts.output) as tmp:
        with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temp name
            np.save(fh, y.astype(dtype))
    out["output_spikes"] = int(np.count_nonzero(result.output))  # graded: the non-zero payloads
    if kind != "spikes":
        out["record"]["min"], out["record"]["max"] = int(y.min(initial=0)), int(y.max(initial=0))
    return outcome(out)


def outcome(out: dict) -> Outcome:
    """The JSON result, and the per-layer table and the one-line summary."""
    rows = [[r["name"], r["neurons"], r["spikes"], f"{r['synops_per_sample']:.0f}"] for r in out["layers"]]
    extra = ""
    if "mismatches_vs_sim" in out:
        extra = f", {out['mismatches_vs_sim']} mismatches vs sim"
    written = f"{out['output_spikes']} output spikes -> {out['output']}"
    if "record" in out:
        r = out["record"]
        span = f" in [{r['min']}, {r['max']}]" if "min" in r else ""
        written = f"{r['layer']}:{r['kind']}{span} -> {out['output']} ({out['output_spikes']} output spikes)"
    line = (
        f"{out['backend']}: {written}{extra}; "
        f"{out['energy_per_inference_j_loihi1_figures'] * 1e6:.3f} uJ/inference "
        "(Loihi 1 per-op figures)"
    )
    return Outcome(
        out, table=Table("layers", ["layer", "neurons", "spikes", "SynOps/sample"], rows), lines=(line,)
    )
