"""``snnc simulate NET --input X.npy --output Y.npy [--backend sim|lava|onnx]`` (DESIGN.md's CLI contract).

``X`` ``(N, *input_shape, T)`` 0/1 integer spikes (input_shape in PyTorch order as in the file),
``Y`` ``(N, *output_shape, T)`` int8, the last layer's spikes as Lava's sink at ``net.out`` records
them. ``Y`` is written atomically, never on bad input. ``sim`` is :mod:`snnc.sim`; ``lava`` and
``onnx`` run the ``loihi2`` and ``onnx`` targets' ``run`` and count their mismatches against ``sim``.
This path imports no torch, ONNX or Lava unless the backend needs it (start-up time is benchmarked).
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
BACKEND_TARGETS = {"lava": "loihi2", "onnx": "onnx"}  # the target whose ``run`` each backend is


@dataclass(frozen=True)
class SimulateOptions:
    """What ``snnc simulate`` was asked to do."""

    net: str
    input: str
    output: str
    backend: str = "sim"


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


def check_output_size(graph, x: np.ndarray) -> None:
    """One-line :class:`UsageError` when ``Y`` for ``x`` would exceed :data:`MAX_OUTPUT_VALUES`."""
    n, t = x.shape[0], x.shape[-1]
    size = n * t * int(np.prod(graph.shapes()[graph.output.name]))
    if size > MAX_OUTPUT_VALUES:
        raise UsageError(
            f"the output for {n} samples x {t} steps would hold {size} values (limit {MAX_OUTPUT_VALUES}); "
            "simulate fewer samples at a time"
        )


def run_simulate(opts: SimulateOptions) -> Outcome:
    """Simulate ``opts.net`` on the spikes in ``opts.input`` and write ``opts.output`` atomically."""
    from snnc.fileio import atomic_path, check_distinct_paths
    from snnc.sim import kernels, simulate
    from snnc.sim.common import check_spikes
    from snnc.targets import load_net

    if opts.backend not in BACKENDS:
        raise UsageError(f"unknown backend {opts.backend!r}; choose one of {', '.join(BACKENDS)}")
    reads = {"NET": opts.net, "--input": opts.input}
    if Path(opts.net).is_dir():  # the build directory's files that a backend reads
        reads |= {f"NET/{n}": Path(opts.net) / n for n in ("graph.safetensors", "network.net", "model.onnx")}
    check_distinct_paths(reads, {"--output": opts.output})
    kernels.warm_up()  # numba starts while the files are read
    graph = load_net(opts.net)
    x = check_spikes(load_spikes(opts.input), tuple(graph.input.shape))  # before any kernel sees it
    check_output_size(graph, x)
    t0 = time.perf_counter()
    result = simulate(graph, x)
    sim_seconds = time.perf_counter() - t0
    out = {
        "backend": opts.backend,
        "net": str(opts.net),
        "input": str(opts.input),
        "output": str(opts.output),
        **result.summary(),
        "sim_seconds": sim_seconds,
    }
    y = result.output
    if opts.backend != "sim":
        from snnc.targets.registry import TARGETS

        t0 = time.perf_counter()
        y = TARGETS.get(BACKEND_TARGETS[opts.backend]).run(Path(opts.net), graph, x)
        if opts.backend == "lava":
            out["lava_seconds"] = time.perf_counter() - t0
        out["mismatches_vs_sim"] = int(np.sum(y != result.output))
    with atomic_path(opts.output) as tmp:
        with open(tmp, "wb") as fh:  # np.save on a path would append ".npy" to the temp name
            np.save(fh, y.astype(np.int8))
    out["output_spikes"] = int(y.sum(dtype=np.int64))
    return outcome(out)


def outcome(out: dict) -> Outcome:
    """The JSON result, and the per-layer table and the one-line summary."""
    rows = [[r["name"], r["neurons"], r["spikes"], f"{r['synops_per_sample']:.0f}"] for r in out["layers"]]
    extra = ""
    if "mismatches_vs_sim" in out:
        extra = f", {out['mismatches_vs_sim']} mismatches vs sim"
    line = (
        f"{out['backend']}: {out['output_spikes']} output spikes -> {out['output']}{extra}; "
        f"{out['energy_per_inference_j_loihi1_figures'] * 1e6:.3f} uJ/inference "
        "(Loihi 1 per-op figures)"
    )
    return Outcome(
        out, table=Table("layers", ["layer", "neurons", "spikes", "SynOps/sample"], rows), lines=(line,)
    )
