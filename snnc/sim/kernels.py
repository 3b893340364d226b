"""The fixed-point simulator's compiled path: numba kernels for the synapses and the LIF loop.

Same integers as the numpy interpreter of :mod:`snnc.sim.interpreter` (docs/loihi2.md §2.1-2.3, §2.5;
checked on random graphs by ``tests/sim/test_kernels.py``), computed layer by layer over all ``T`` steps
of a chunk of samples (a feed-forward graph knows every step's input; a dense chain runs all its layers
per step instead), with the samples split across threads (the kernels release the GIL; samples are
independent).

Kernels, and when each runs (costs measured on this project's benchmark nets, see
benchmarks/README.md):

- ``dense``: event-driven, as Lava's Dense sums ``weight[:, s]`` (§2.2): per step the weight rows
  of the inputs that spiked are added, eight per pass over the sums, in int16 when the step's
  spike count times the largest weight fits. ``dense_steps_last`` is the same for the network
  input, held (N, M, T): its spike lists come from a counting sort over each input's steps.
- ``dense_dot``: the spike row times each weight row, for few outputs and busy inputs;
  ``dense_dot_f32`` in float32 with reassociated sums (8 lanes) while every sum of |weights| is
  below 2**24 (each partial sum is then an exact float32 integer in any order).
- ``dense_chain``: a whole input -> (dense + LIF) x L graph (an MLP) in one pass, one sample at a
  time and all layers per step, so that a step's currents, voltages and spikes stay in cache; the
  same sums and LIF as the kernels above. Used when every sum fits int32 and the LIF is float64-exact
  and no layer is recorded.
- ``conv_event``: every input spike adds its (channel, tap) weight row to the currents of each
  output position it reaches; for sparse inputs (``conv_event_steps_last`` for the network input,
  its spike lists built as ``dense_steps_last`` builds them).
- ``conv_gemm``: im2col, then long multiply-adds in float32 (exact below 2**24); for busy inputs.
- ``conv_lut`` / ``conv_lut_words`` / ``conv_lut_steps_last``: a position's receptive field in bytes
  of 8 (tap, channel) inputs, each byte indexing a table of the sums of its 8 weights for every
  spike pattern; for busy inputs when the table fits in cache. The table's sums are biased to be
  non-negative and packed in 16- or 32-bit lanes of uint64 words, so one integer add sums 4 or 2
  outputs and no lane carries into the next (the plan bounds every sum). With 8k channels per group
  held channels-last, a byte's spikes are one 64-bit word, packed by a multiply; on the network
  input, held (N, M, T), the patterns of all steps are built at once, 8 steps per word.
- ``lif_f64`` / ``lif``: Lava's fixed-point CUBA-LIF (§2.1), in float64 (exact: every value is an
  integer below 2**53; AVX2 has no int64 multiply) when the currents are int16/int32, else in int64.
- ``input_counts``: spikes per input neuron (the conv cost model and SynOps need them).

Buffers. The chunks of one batch share their current and spike buffers (an ``arena``): memory
fresh from the OS costs a page fault per 4 KiB page, about 2 µs each on the benchmark VM, and two
threads' faults queue on one lock.

Layouts. A layer's values are ``(N, T, M)``, ``M`` its neurons flattened; (C, H, W) layers made
here are held channels-last, ``(H, W, C)``, so that one position's output channels are one
contiguous run. The input and ``Flatten`` keep the order they were given; a dense layer that reads
a channels-last flatten gets its weight rows permuted once, and outputs and recorded layers are put
back in PyTorch order ``(N, *shape, T)``.

Exactness: weights are integer mantissas in int8/int16/int32 (weights sharing a factor 2**z are
summed divided by it and shifted back); sums run in int16/int32 when the largest possible sum (sum
of |w| over a neuron's inputs) fits, else int64. Conv sums are wrapped to signed 24 bits as Lava's
conv does (§2.3); dense sums are shifted by ``weight_exp`` with an arithmetic (floor) shift (§2.2).

SynOps (NeuroBench: one per nonzero input spike x nonzero fan-out weight that reaches a valid
output): counted in the ``dense`` kernel, else from per-neuron spike counts x fan-out.

Structure. :func:`plan` prepares a graph once (cached with it): a :class:`Plan` whose ``steps``
(:class:`InputStep`, :class:`AliasStep`, :class:`DenseStep`, :class:`ConvStep`,
:class:`NeuronStep`, :class:`AddStep`) carry each node's operands as named records
(:class:`DenseOperands`, :class:`ConvOperands`, :class:`LifOperands`, ...), built by one
``visit_<kind>`` per node kind; and its fused :class:`Chain` when it is a dense chain. :func:`run`
takes one chunk of samples through the steps, one method per step kind, and returns a
:class:`~snnc.sim.common.ChunkResult`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from snnc.errors import SnncError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, NodeVisitor, Output, Pool
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_UNITY, STATE_WRAP
from snnc.sim.common import (
    ChunkResult,
    ConvSpec,
    check_integer,
    check_kernel_input,
    fixed_threshold,
    has_graded,
    node_cores,
    prepared,
)

_KERNELS: dict = {}
FORCE_CONV: str | None = None  # "event", "gemm" or "lut" picks the conv kernel (tests compare all)
CHAIN = True  # dense chains run fused in dense_chain (tests compare with the layer-by-layer path)
CHUNK_ELEMENTS = 1 << 22  # samples x steps x widest layer per chunk (fewer thread hand-offs)
DISABLE_SDNN_KERNEL = False  # tests compare snnc.sim.sdnn's numpy loop with the compiled sigma_delta


def kernels() -> dict | None:
    """The compiled kernels, or ``None`` when numba is not importable (numpy runs then)."""
    if "dense" in _KERNELS:
        return _KERNELS
    if _KERNELS.get("missing"):
        return None
    import importlib.util

    if importlib.util.find_spec("numba") is None:  # only a missing numba falls back; other errors raise
        _KERNELS["missing"] = True
        return None
    from snnc.sim import _numba_kernels as nk

    _KERNELS.update(
        dense=nk.dense,
        dense_dot=nk.dense_dot,
        dense_dot_f32=nk.dense_dot_f32,
        dense_steps_last=nk.dense_steps_last,
        conv_event_steps_last=nk.conv_event_steps_last,
        conv_event=nk.conv_event,
        conv_gemm=nk.conv_gemm,
        conv_lut=nk.conv_lut,
        conv_lut_words=nk.conv_lut_words,
        conv_lut_steps_last=nk.conv_lut_steps_last,
        lif=nk.lif,
        lif_f64=nk.lif_f64,
        input_counts=nk.input_counts,
        dense_chain=nk.dense_chain,
        sigma_delta=nk.sigma_delta,
    )
    return _KERNELS


def warm_up() -> None:
    """Import numba and load one cached kernel in a background thread, so that a command's file
    reading overlaps numba's one-time start (its import, then its first load from the on-disk
    cache, which initialises numba's code generator: ~0.45 s together, measured). Not a daemon
    thread: interpreter shutdown waits for it rather than interrupting an import."""
    import importlib.util
    import threading

    if "dense" in _KERNELS or _KERNELS.get("missing") or importlib.util.find_spec("numba") is None:
        return

    def start() -> None:
        k = kernels()
        if k is not None:
            k["input_counts"](np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1), np.int32), 0, 1)

    threading.Thread(target=start, name="snnc-numba-warm-up").start()


def sigma_delta(a: np.ndarray, b: np.ndarray, mode: int, relu: bool, cum: bool, vth: int, up: int, down: int):
    """The compiled sigma-delta loop (:mod:`snnc.sim.sdnn`) on ``a`` ``(N, T, M)`` (int32 values) over
    the samples' threads: the payloads ``(N, T, M)`` int32, or ``None`` without numba."""
    k = kernels()
    if k is None or DISABLE_SDNN_KERNEL:
        return None
    out = np.empty(a.shape, np.int32)
    a32 = np.ascontiguousarray(a, dtype=np.int32)
    workers = 1 if a.size < 1 << 16 else None  # a thread hand-off costs more than a small layer's loop
    args = (a32, b.astype(np.int32), mode, relu, cum, vth, up, down, out)
    _parallel(k["sigma_delta"], a.shape[0], *args, workers=workers)
    return out


_POOL: list = []


def threads() -> int:
    """Worker threads for a batch: the CPUs this process may use (``SNNC_THREADS`` overrides)."""
    import os

    env = os.environ.get("SNNC_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _parallel(kernel, n: int, *args, workers: int | None = None) -> None:
    """``kernel(*args, i0, i1)`` over samples ``[0, n)``, split across threads (the kernels release
    the GIL; samples are independent). A small batch runs in the calling thread. ``workers``:
    :func:`threads` when the caller has it already (it costs a system call)."""
    workers = min(threads() if workers is None else workers, n)
    if workers <= 1:
        kernel(*args, 0, n)
        return
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=max(1, threads() - 1), thread_name_prefix="snnc-sim"))
    bounds = [n * j // workers for j in range(workers + 1)]
    # the calling thread takes the last share itself: one thread hand-off fewer per call
    jobs = [_POOL[0].submit(kernel, *args, bounds[j], bounds[j + 1]) for j in range(workers - 1)]
    try:
        kernel(*args, bounds[-2], bounds[-1])
    finally:
        for job in jobs:
            job.result()


# -- preparing a graph once ------------------------------------------------------------------
def _int_weights(name: str, w: np.ndarray) -> np.ndarray:
    """Integer mantissas in the narrowest exact type of int16 / int32 / int64."""
    w = np.asarray(w)
    check_integer(name, w)
    big = float(np.abs(w).max(initial=0))
    dt = np.int16 if big < 2**15 else np.int32 if big < 2**31 else np.int64
    return w.astype(dt)


def _acc_dtype(bound: float):
    return np.int32 if bound < 2**31 else np.int64


def _hwc_perm(shape: tuple[int, ...]) -> np.ndarray:
    """For a channels-last flatten of ``(C, H, W)``: the PyTorch-order index of each position."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


# -- the records a plan is made of -------------------------------------------------------------
class LifOperands(NamedTuple):
    """A population's LIF operands (docs/loihi2.md §2.1) for ``lif`` / ``lif_f64``."""

    bias: np.ndarray  # (M,) int64: bias mantissas << 6, in the layer's internal order
    keep_u: int  # 4096 - current_decay
    keep_v: int  # 4096 - voltage_decay
    vth: int  # threshold mantissa << 6
    f64_exact: bool  # |bias|, |vth| < 2**46: the float64 LIF is exact (the currents are checked per run)


class DenseOperands(NamedTuple):
    """A Dense node's weights, prepared for the ``dense*`` kernels."""

    wt: np.ndarray  # (in, out) integer mantissas, rows in the input's (internal) order
    wd: np.ndarray  # (out, in) for dense_dot; float32 when float32 sums are exact (dense_dot_f32)
    fan: np.ndarray  # (in,) int64: nonzero weights per input (SynOps)
    wmax: int  # largest |weight|
    acc: type  # dtype of the sums: np.int32 or np.int64
    shift: int  # weight_exp, plus the power of two factored out of the weights


class ScatterOperands(NamedTuple):
    """``conv_event`` / ``conv_event_steps_last``: each input position's (tap, output) pairs."""

    c_in: int
    in_hwc: bool  # the input is held channels-last
    wc: np.ndarray  # (C_in/groups * kH * kW, C_out): a row per (channel, tap)
    kt: int  # taps, kH * kW
    groups: int
    ip_ptr: np.ndarray  # (H * W + 1,) int64: where each input position's pairs start
    ip_tap: np.ndarray  # the pairs' taps
    ip_op: np.ndarray  # the pairs' output positions


class GatherOperands(NamedTuple):
    """``conv_gemm`` (im2col and float32 multiply-adds, exact below 2**24)."""

    c_in: int
    h: int
    w_in: int
    in_hwc: bool
    wg: np.ndarray  # (C_out, whole bytes of C_in/groups * kH * kW) float32
    kh: int
    kw: int
    geo: np.ndarray  # int64 [stride y, x, padding y, x, dilation y, x, out h, out w]
    groups: int


class LutOperands(NamedTuple):
    """``conv_lut`` / ``conv_lut_words`` / ``conv_lut_steps_last``: see :func:`_lut`."""

    idx: np.ndarray  # int32 where each (position, group, byte[, bit]) input sits in a step's spikes
    words: bool  # a byte's spikes are one 64-bit word of a channels-last input (conv_lut_words)
    table: np.ndarray  # (groups * bytes, 256, words) uint64: packed biased sums per spike pattern
    og: int  # outputs per group
    bias: int  # taken off every packed sum at the end; < 2**15 means 16-bit lanes suffice
    cost: float  # ns per step of conv_lut / conv_lut_words
    cost_steps_last: float  # ns per step of conv_lut_steps_last (the network input)


class ConvCost(NamedTuple):
    """Fitted costs in ns per step (see :meth:`_Planner.conv_operands`)."""

    scan: float  # conv_event: reading the input
    per_spike: float  # conv_event: per input spike
    dense: float  # the cheaper of conv_gemm and conv_lut


class ConvOperands(NamedTuple):
    """A Conv (or a Pool as its grouped conv), prepared for every conv kernel."""

    scatter: ScatterOperands
    gather: GatherOperands | None  # None when float32 sums would not be exact
    lut: LutOperands | None  # None when the table would not fit in cache or its lanes could carry
    cost: ConvCost
    fan: np.ndarray  # (in,) int64: SynOps per spike of each input neuron, internal order
    acc: type  # dtype of the sums
    wrap: bool  # sums can pass 2**23: wrap them to signed 24 bits (docs/loihi2.md §2.3)


class InputStep(NamedTuple):
    """The network input, held ``(N, M, T)`` as given."""

    name: str
    kind: str = "input"


class AliasStep(NamedTuple):
    """A Flatten or the Output: the value of ``src`` under another name."""

    name: str
    src: str
    kind: str = "alias"


class DenseStep(NamedTuple):
    name: str
    src: str
    ops: DenseOperands
    kind: str = "dense"


class ConvStep(NamedTuple):
    name: str
    src: str
    ops: ConvOperands
    kind: str = "conv"


class NeuronStep(NamedTuple):
    """The neurons of the synaptic node ``name`` (its current, from the step before)."""

    name: str
    lif: LifOperands
    kind: str = "neuron"


class AddStep(NamedTuple):
    """An Add's neurons, fed the sum of its synapse-only inputs' currents."""

    name: str
    preds: list[str]
    lif: LifOperands
    kind: str = "add"


Step = InputStep | AliasStep | DenseStep | ConvStep | NeuronStep | AddStep


class ChainOperands(NamedTuple):
    """``dense_chain``'s operands: every layer's arrays concatenated, located by ``layers``."""

    w: np.ndarray  # (in, out) weights of every layer, flattened, int8 or int16
    wd: np.ndarray  # (out, in) weights of every layer, flattened
    layers: np.ndarray  # (L, 7) int64: in, out, offset in w/wd, in fan, in bias, shift, wmax
    fan: np.ndarray  # int64 SynOps fan-outs of every layer
    bias: np.ndarray  # float64 biases (<< 6) of every layer
    decay: np.ndarray  # (L, 3) float64: keep_u / 4096, keep_v / 4096, vth


class Chain(NamedTuple):
    """A graph that is input -> (dense + LIF) x L -> output, run in one ``dense_chain`` pass."""

    names: list[str]  # the L dense layers
    operands: ChainOperands


class Plan:
    """Per-node operands of one fixed-point graph, prepared once and cached with the graph.

    ``steps``: what :func:`run` does, in order; ``hwc``: whether each node's value is held
    channels-last; ``chain``: the fused :class:`Chain` when the graph is one, else None.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.shapes = graph.shapes()
        self.output = graph.output.name
        self.steps: list[Step] = []
        self.hwc: dict[str, bool] = {}
        planner = _Planner(self)
        for node in graph.nodes.values():
            planner.visit(node)
        self.chain = self._chain()

    def origin_shape(self, name: str) -> tuple[int, ...]:
        """The (C, H, W) shape behind a (possibly flattened) channels-last value."""
        while len(self.shapes[name]) != 3:
            name = self.graph.predecessors(name)[0]
        return self.shapes[name]

    def _chain(self) -> Chain | None:
        """The fused chain when the graph is input -> (dense + LIF) x L -> output with int32 sums,
        int8/int16 weights and a float64-exact LIF; else None."""
        value: dict[str, str] = {}  # node -> the layer whose spikes it holds
        layers: list[tuple[str, DenseOperands, LifOperands]] = []
        for i, step in enumerate(self.steps):
            if step.kind == "input":
                value[step.name] = step.name
            elif step.kind == "alias":
                value[step.name] = value[step.src]
            elif step.kind == "dense":
                ops = step.ops
                want = layers[-1][0] if layers else self.steps[0].name
                nxt = self.steps[i + 1] if i + 1 < len(self.steps) else None
                if value.get(step.src) != want or ops.acc != np.int32 or ops.wt.dtype.itemsize > 2:
                    return None
                if nxt is None or nxt.kind != "neuron" or nxt.name != step.name or not nxt.lif.f64_exact:
                    return None
                layers.append((step.name, ops, nxt.lif))
            elif step.kind == "neuron":
                value[step.name] = step.name
            else:
                return None
        if not layers or value.get(self.output) != layers[-1][0]:
            return None
        dt = np.int8 if all(ops.wt.dtype == np.int8 for _, ops, _ in layers) else np.int16
        lay = np.zeros((len(layers), 7), np.int64)
        dec = np.zeros((len(layers), 3), np.float64)
        w_off = f_off = o_off = 0
        for j, (_, ops, lif) in enumerate(layers):
            lay[j] = (ops.wt.shape[0], ops.wt.shape[1], w_off, f_off, o_off, ops.shift, ops.wmax)
            dec[j] = (lif.keep_u / float(DECAY_UNITY), lif.keep_v / float(DECAY_UNITY), float(lif.vth))
            w_off, f_off, o_off = w_off + ops.wt.size, f_off + ops.fan.size, o_off + ops.wt.shape[1]
        operands = ChainOperands(
            w=np.concatenate([ops.wt.reshape(-1).astype(dt) for _, ops, _ in layers]),
            wd=np.concatenate([ops.wd.reshape(-1).astype(dt) for _, ops, _ in layers]),
            layers=lay,
            fan=np.concatenate([ops.fan for _, ops, _ in layers]),
            bias=np.concatenate([lif.bias for _, _, lif in layers]).astype(np.float64),
            decay=dec,
        )
        return Chain([name for name, _, _ in layers], operands)


class _Planner(NodeVisitor):
    """Builds a :class:`Plan`'s steps: one ``visit_<kind>`` per node kind, in graph order."""

    backend = "the simulator"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.shapes = plan.shapes
        self.hwc = plan.hwc  # is the node's value held channels-last?
        self.steps = plan.steps

    def _src(self, name: str) -> str:
        return self.graph.predecessors(name)[0]

    def visit_input(self, node: Input) -> None:
        self.hwc[node.name] = False
        self.steps.append(InputStep(node.name))

    def visit_flatten(self, node: Flatten) -> None:
        src = self._src(node.name)
        self.hwc[node.name] = self.hwc[src]
        self.steps.append(AliasStep(node.name, src))

    def visit_output(self, node: Output) -> None:
        self.visit_flatten(node)

    def visit_add(self, node: Add) -> None:
        preds = self.graph.predecessors(node.name)
        self.hwc[node.name] = self.hwc[preds[0]]
        self.steps.append(AddStep(node.name, preds, self.lif_operands(node)))

    def visit_dense(self, node: Dense) -> None:
        src = self._src(node.name)
        perm = _hwc_perm(self.plan.origin_shape(src)) if self.hwc[src] else None
        self.steps.append(DenseStep(node.name, src, self.dense_operands(node, perm)))
        self.hwc[node.name] = False
        self._neurons(node)

    def visit_conv(self, node: Conv) -> None:
        self._conv(node, ConvSpec.of_conv(node, fixed=True))

    def visit_pool(self, node: Pool) -> None:
        self._conv(node, ConvSpec.of_pool(node, self.shapes[self._src(node.name)][0]))

    def _conv(self, node: Conv | Pool, spec: ConvSpec) -> None:
        src = self._src(node.name)
        ops = self.conv_operands(node.name, spec, self.shapes[src], self.shapes[node.name], self.hwc[src])
        self.steps.append(ConvStep(node.name, src, ops))
        self.hwc[node.name] = True
        self._neurons(node)

    def _neurons(self, node: Conv | Dense | Pool) -> None:
        if node.neuron is not None:
            self.steps.append(NeuronStep(node.name, self.lif_operands(node)))

    # -- operands, prepared once per node --------------------------------------------------------
    @staticmethod
    def dense_operands(node: Dense, perm: np.ndarray | None) -> DenseOperands:
        """``perm``: the input's internal order (a channels-last flatten), or None."""
        w = _int_weights(node.name, node.weight)
        # Weights that share a factor 2**z (netx stores slayer's even weights, docs/loihi2.md §1.5)
        # are summed divided by it, in int8 when they fit: half the memory traffic, and the
        # shift below restores the exact sum.
        z = 0
        if w.any():
            while z < 8 and not np.any(w & ((1 << (z + 1)) - 1)):
                z += 1
        small = w >> z
        if np.abs(small).max(initial=0) < 128:
            w, e = small.astype(np.int8), int(node.weight_exp) + z
        else:
            z, e = 0, int(node.weight_exp)
        wt = np.ascontiguousarray(w.T if perm is None else w.T[perm])  # (in, out), input's order
        wd = np.ascontiguousarray(wt.T)  # (out, in) for dense_dot
        fan = (wt != 0).sum(axis=1).astype(np.int64)
        bound = float(np.abs(w.astype(np.float64)).sum(axis=1).max(initial=0))
        wmax = int(np.abs(w.astype(np.int64)).max(initial=0))
        if bound < 2**24:  # float32 sums are exact: dense_dot_f32
            wd = wd.astype(np.float32)
        return DenseOperands(wt, wd, fan, wmax, _acc_dtype(bound * 2.0 ** max(e, 0)), e)

    @staticmethod
    def conv_operands(name: str, spec: ConvSpec, in_shape, out_shape, in_hwc: bool) -> ConvOperands:
        c, h, w_in = in_shape
        w, stride, pad, dil, groups, _ = spec
        wi = _int_weights(name, w)
        o_all, cg, kh, kw = w.shape
        og, kt = o_all // groups, kh * kw
        wc = np.ascontiguousarray(wi.transpose(1, 2, 3, 0).reshape(cg * kt, o_all))  # row: (ch, tap)
        # Receptive fields: for each output position the valid (tap, input position) pairs.
        oh, ow = out_shape[1], out_shape[2]
        oy, ox, ty, tx = np.meshgrid(
            np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw), indexing="ij"
        )
        y = oy * stride[0] - pad[0] + ty * dil[0]
        x = ox * stride[1] - pad[1] + tx * dil[1]
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w_in)
        op = (oy * ow + ox)[ok]  # row-major over (oy, ox, ky, kx): already grouped by op
        op_tap = (ty * kw + tx)[ok].astype(np.int64)
        op_inp = (y * w_in + x)[ok].astype(np.int64)
        bound = float(np.abs(w).reshape(o_all, -1).sum(axis=1).max(initial=0))
        acc = np.int16 if bound < 2**15 and wc.dtype == np.int16 else _acc_dtype(bound)
        order = np.argsort(op_inp, kind="stable")  # the same pairs grouped by input position
        ip_ptr = np.searchsorted(op_inp[order], np.arange(h * w_in + 1)).astype(np.int64)
        scatter = ScatterOperands(
            c, in_hwc, wc, kt, groups, ip_ptr, op_tap[order], op[order].astype(np.int64)
        )
        gather = None
        if bound < STATE_WRAP:  # float32 sums are exact (< 2**24) and the 24-bit wrap is the identity
            rg8 = -(-cg * kt // 8) * 8
            wg = np.zeros((o_all, rg8), np.float32)
            wg[:, : cg * kt] = wi.reshape(o_all, cg * kt)
            geo = np.array([*stride, *pad, *dil, oh, ow], dtype=np.int64)
            gather = GatherOperands(c, h, w_in, in_hwc, wg, kh, kw, geo, groups)
        lut = _lut(wi, groups, (h, w_in), (oh, ow), stride, pad, dil, in_hwc, bound)
        # Cost per step in ns, fitted on the benchmark's two convs (2.8 GHz AVX2): scatter ~ 5 per
        # input read + 5 per (spike, tap) per 16 channels (short runs stay scalar); im2col ~ 2
        # per P entry written and output read back + 0.08 per multiply-add.
        per_spike = 5 * len(op_inp) / (h * w_in) * -(-og // 16)
        scan = 5 * c * h * w_in
        dense = 2 * (len(op_inp) * c + oh * ow * o_all) + 0.08 * oh * ow * o_all * cg * kt
        # SynOps per spike, in the input's order: nonzero weights of the group's outputs over the
        # taps that land on a valid output.
        nz = (wi != 0).reshape(groups, og, cg, kt).sum(axis=1).reshape(c, kt).astype(np.int64)
        nzp = np.zeros((c, h * w_in), np.int64)
        np.add.at(nzp.T, op_inp, nz.T[op_tap])
        fan = np.ascontiguousarray(nzp.T.reshape(-1) if in_hwc else nzp.reshape(-1))
        if lut is not None:
            dense = min(dense, lut.cost)
        cost = ConvCost(scan, per_spike, dense)
        return ConvOperands(scatter, gather, lut, cost, fan, acc, bound >= STATE_WRAP)

    def lif_operands(self, node: Conv | Dense | Pool | Add) -> LifOperands:
        """The node's neurons, with the biases in its value's internal order."""
        neuron = node.neuron
        shape = self.shapes[node.name]
        vth = fixed_threshold(node.name, neuron)
        if getattr(node, "bn", None) is not None:
            raise SnncError(f"{node.name}: a fixed-point graph cannot hold batch-norm; run fold_bn first")
        m = int(np.prod(shape))
        b = np.zeros(m, np.int64)
        if neuron.bias is not None:
            bias = np.asarray(neuron.bias)
            if bias.size and not np.all(bias == np.round(bias)):
                raise SnncError(f"{node.name}: a fixed-point graph needs integer biases; run quantize first")
            bias = bias.astype(np.int64) << ACTIVATION_SHIFT
            if len(shape) == 3:
                per = shape[1] * shape[2]
                b = np.tile(bias, per) if self.hwc[node.name] else np.repeat(bias, per)
            else:
                b = np.broadcast_to(bias, (m,)).copy()
        # the float64 LIF is exact while biases and threshold are below 2**46 (and the currents:
        # checked per run)
        small = max(abs(vth), int(np.abs(b).max(initial=0))) < 2**46
        keep_u, keep_v = DECAY_UNITY - neuron.current_decay, DECAY_UNITY - neuron.voltage_decay
        return LifOperands(np.ascontiguousarray(b), keep_u, keep_v, vth, small)


_LUT_BYTES = 1 << 20  # a larger table no longer sits in cache


def _lut(wi, groups, in_hw, out_hw, stride, pad, dil, in_hwc: bool, bound: float):
    """Operands of ``conv_lut``: ``(idx, words, table, og, bias, cost ns per step)``, or None when
    the table would be large or its packed sums could carry.

    A group's inputs are ordered (tap, channel), channel fastest, and padded with zero weights to
    whole bytes of 8; ``table[g * nq + q, b]`` holds, for byte ``q`` and spike pattern ``b``, the sums
    of the set bits' weights for each of the group's ``og`` outputs, plus ``B`` (the largest |sum|
    of any byte) so that none is negative, as 16-bit (32-bit) lanes packed four (two) to a uint64
    word. A group's ``nq`` bytes then sum to ``[0, 2 B nq]`` in every lane: no lane carries into
    the next while that is below 2**16 (2**32), and ``bias = B nq`` is taken off at the end.
    """
    o_all, cg, kh, kw = wi.shape
    og, kt = o_all // groups, kh * kw
    (h, w_in), (oh, ow) = in_hw, out_hw
    nq = -(-cg * kt // 8)
    c, m = groups * cg, groups * cg * h * w_in
    # weights per (group, byte, bit, output)
    we = np.zeros((groups, nq * 8, og), np.int64)
    we[:, : kt * cg] = wi.reshape(groups, og, cg, kt).transpose(0, 3, 2, 1).reshape(groups, kt * cg, og)
    # the largest |sum| of one byte's weights (for one output): its positive or its negative ones
    per_byte = we.reshape(groups, nq, 8, og)
    pos, neg = np.clip(per_byte, 0, None).sum(axis=2), np.clip(per_byte, None, 0).sum(axis=2)
    big = int(max(pos.max(initial=0), -neg.min(initial=0)))
    if 2 * big * nq < 2**16:
        lane = np.uint16
    elif 2 * big * nq < 2**32:
        lane = np.uint32
    else:
        return None
    per_word = 8 // np.dtype(lane).itemsize
    nw = -(-og // (4 * per_word)) * 4  # whole blocks of 4 words (conv_lut_steps_last)
    if groups * nq * 256 * nw * 8 > _LUT_BYTES:
        return None
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (pattern, bit)
    lanes = np.zeros((groups * nq, 256, nw * per_word), lane)
    lanes[:, :, :og] = np.einsum("pb,qbo->qpo", bits, we.reshape(groups * nq, 8, og)) + big
    table = lanes.view(np.uint64)  # (groups * nq, 256, nw)
    # where each (position, group, byte, bit) input sits in a step's spike row
    e = np.arange(nq * 8)
    tap, ch = e // cg, e % cg
    oy, ox = np.divmod(np.arange(oh * ow), ow)
    y = oy[:, None] * stride[0] - pad[0] + (np.minimum(tap, kt - 1) // kw)[None] * dil[0]
    x = ox[:, None] * stride[1] - pad[1] + (np.minimum(tap, kt - 1) % kw)[None] * dil[1]
    ok = (tap < kt)[None] & (y >= 0) & (y < h) & (x >= 0) & (x < w_in)  # (op, e)
    chan = np.arange(groups)[:, None] * cg + ch[None]  # (g, e)
    pos = (y * w_in + x)[:, None, :]
    at = pos * c + chan[None] if in_hwc else chan[None] * (h * w_in) + pos
    pad_at = -(-m // 8) * 8  # zeros past the spikes (the kernels' buffers)
    idx = np.where(ok[:, None, :], at, pad_at).reshape(oh * ow, groups * nq, 8).astype(np.int32)
    words = bool(in_hwc and cg % 8 == 0 and c % 8 == 0)
    if words:
        idx = idx[:, :, 0]
    # Cost per step in ns, fitted like the two below on the benchmark's convs: copy the spikes,
    # then per byte ~6 per 32 outputs, plus ~9 to gather 8 single bits.
    cost = 0.4 * m + oh * ow * groups * nq * (6 * -(-og // 32) + (0 if words else 9))
    # conv_lut_steps_last (the network input): ~6 + 1.2 per word per byte, patterns included
    # (fitted on four input convs, 1-2 channels in, 8-32 out, stride 1-2)
    cost_sl = oh * ow * groups * nq * (6 + 1.2 * nw)
    return LutOperands(
        np.ascontiguousarray(idx), words, np.ascontiguousarray(table), og, big * nq, cost, cost_sl
    )


def plan(graph: Graph) -> Plan:
    """The graph's prepared operands (cached on the graph object)."""
    return prepared(graph, "kernel-plan", lambda: Plan(graph))


def _buffer(arena: dict | None, key: tuple, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised array that the next chunk's call with the same key gets again: memory
    fresh from the OS costs a page fault per 4 KiB page (~2 us here, and the faults of two threads
    queue on one lock), more than most kernels' work on it."""
    if arena is None:
        return np.empty(shape, dtype)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = arena.get(key)
    if buf is None or buf.size < size:
        buf = arena[key] = np.empty(max(size, 1), np.uint8)
    return buf[:size].view(dtype).reshape(shape)


def run(graph: Graph, s_in: np.ndarray, record: bool = False, arena: dict | None = None) -> ChunkResult:
    """One chunk of samples through the compiled kernels (``arena``: buffers shared by the
    chunks of one batch, see :func:`_buffer`).

    ``s_in`` ``(N, *input_shape, T)`` uint8 -> a :class:`~snnc.sim.common.ChunkResult`, with the
    same meaning as the numpy interpreter's. A dense chain runs fused (:func:`_run_chain`) unless a
    layer is recorded; any other graph step by step (:class:`_ChunkRun`). ``s_in`` is checked
    first (:func:`~snnc.sim.common.check_kernel_input`): the kernels index memory with its values.
    """
    if graph.input.neuron is not None:  # snnc.sim.simulate runs these on the numpy interpreter
        raise SnncError("the compiled kernels do not run an input neuron (docs/loihi2.md §1.7)")
    if has_graded(graph):  # the interpreter runs these, its neurons in sigma_delta (§2.7)
        raise SnncError("the compiled kernels do not run sigma-delta (graded) layers (docs/loihi2.md §2.7)")
    s_in = check_kernel_input(s_in, tuple(graph.input.shape))
    k = kernels()
    p = plan(graph)
    if p.chain is not None and not record and CHAIN:
        return _run_chain(p, k, s_in)
    return _ChunkRun(p, k, s_in, record, arena).run()


class _ChunkRun:
    """One chunk through a plan's steps, layer by layer: one method per step kind.

    ``vals``: each node's value ``(N, T, M)`` (spikes; the input as a view of ``s_in``);
    ``currents``: synaptic currents ``(N, T, M)`` until their neurons or Add take them; ``nspk``:
    spikes per sample and neuron ``(N, M)`` int32 (the kernels' cost model and the SynOps).
    """

    def __init__(self, p: Plan, k: dict, s_in: np.ndarray, record: bool, arena: dict | None) -> None:
        self.plan, self.k, self.s_in, self.record, self.arena = p, k, s_in, record, arena
        self.n, self.t = s_in.shape[0], s_in.shape[-1]
        self.workers = threads()
        self.vals: dict[str, np.ndarray] = {}
        self.currents: dict[str, np.ndarray] = {}
        self.nspk: dict[str, np.ndarray] = {}
        # the ChunkResult's parts
        self.spikes: dict[str, int] = {}
        self.synops: dict[str, int] = {}
        self.neurons: dict[str, int] = {}
        self.cores: dict[str, int] = {}
        self.layers: dict[str, np.ndarray] = {}

    def run(self) -> ChunkResult:
        handlers = _STEP_HANDLERS
        for step in self.plan.steps:
            handlers[step.kind](self, step)
        p, out = self.plan, self.plan.output
        output = _canonical(self.vals[out], p.shapes[out], p.hwc[out], p, out).astype(np.int8)
        return ChunkResult(output, self.spikes, self.synops, self.neurons, self.cores, self.layers)

    def parallel(self, kernel: str, *args) -> None:
        """The compiled ``kernel`` over the chunk's samples (:func:`_parallel`)."""
        _parallel(self.k[kernel], self.n, *args, workers=self.workers)

    # -- one method per step kind --------------------------------------------------------------
    def step_input(self, step: InputStep) -> None:
        n, t, s_in = self.n, self.t, self.s_in
        x = s_in.reshape(n, -1, t)
        self.vals[step.name] = x.transpose(0, 2, 1)  # (N, T, M) view, PyTorch order
        self.nspk[step.name] = _buffer(self.arena, (step.name, "count"), (n, x.shape[1]), np.int32)
        self.parallel("input_counts", x, self.nspk[step.name])

    def step_alias(self, step: AliasStep) -> None:
        self.vals[step.name] = self.vals[step.src]
        if step.src in self.nspk:
            self.nspk[step.name] = self.nspk[step.src]

    def step_dense(self, step: DenseStep) -> None:
        ops, n, t = step.ops, self.n, self.t
        x, nspk = self.vals[step.src], self.nspk[step.src]
        m, o_all = ops.wt.shape
        cur = _buffer(self.arena, (step.name, "current"), (n, t, o_all), ops.acc)
        # Adding a weight row per spike costs ~ spikes x (O/8 + 8) vector steps, a product of
        # the spike row with every weight row ~ O x M / 8: pick the cheaper.
        density = nspk.sum(dtype=np.int64) / max(n * t * m, 1)
        if x.flags.c_contiguous and density > o_all / (o_all + 64):
            self.parallel("dense_dot_f32" if ops.wd.dtype == np.float32 else "dense_dot", x, ops.wd, cur)
            synops = int(nspk.sum(axis=0, dtype=np.int64) @ ops.fan)
        else:
            per_sample = np.zeros(n, np.int64)
            steps_last = x.transpose(0, 2, 1)  # the network input is held (N, M, T)
            if steps_last.flags.c_contiguous:
                self.parallel("dense_steps_last", steps_last, ops.wt, ops.fan, ops.wmax, cur, per_sample)
            else:
                self.parallel("dense", x, ops.wt, ops.fan, ops.wmax, cur, per_sample)
            synops = int(per_sample.sum())
        self.synops[step.name] = synops
        if ops.shift > 0:
            cur <<= ops.shift
        elif ops.shift < 0:
            cur >>= -ops.shift  # Lava's arithmetic (floor) shift (§2.2)
        self.currents[step.name] = cur

    def step_conv(self, step: ConvStep) -> None:
        ops, n, t = step.ops, self.n, self.t
        x = self.vals[step.src]
        per_input = self.nspk[step.src].sum(axis=0, dtype=np.int64)
        steps_last = x.transpose(0, 2, 1)  # the network input is held (N, M, T)
        sl = steps_last.flags.c_contiguous
        kernel = _conv_kernel(ops, per_input.sum() / (n * t), sl) if FORCE_CONV is None else FORCE_CONV
        size = (n, t, int(np.prod(self.plan.shapes[step.name])))
        lut, gather, sc, wrap = ops.lut, ops.gather, ops.scatter, ops.wrap
        if kernel == "lut" and lut is not None:
            dt = np.int16 if lut.bias < 2**15 else np.int32  # 16-bit lanes: every |sum| < 2**15
            cur = _buffer(self.arena, (step.name, "current"), size, dt)
            args = (lut.idx, lut.table, lut.og, lut.bias, cur, wrap)
            if sl and not lut.words:
                self.parallel("conv_lut_steps_last", steps_last, *args)
            else:
                self.parallel("conv_lut_words" if lut.words else "conv_lut", x, *args)
        elif kernel == "gemm" and gather is not None:
            cur = _buffer(self.arena, (step.name, "current"), size, ops.acc)
            self.parallel("conv_gemm", x, *gather, cur)
        else:
            cur = _buffer(self.arena, (step.name, "current"), size, ops.acc)
            if sl and not sc.in_hwc:
                pairs = (sc.wc, sc.kt, sc.groups, sc.ip_ptr, sc.ip_tap, sc.ip_op)
                self.parallel("conv_event_steps_last", steps_last, sc.c_in, *pairs, cur, wrap)
            else:
                self.parallel("conv_event", x, *sc, cur, wrap)
        self.currents[step.name] = cur
        self.synops[step.name] = int(per_input @ ops.fan)

    def step_neuron(self, step: NeuronStep) -> None:
        self._population(step.name, self.currents.pop(step.name), step.lif)

    def step_add(self, step: AddStep) -> None:
        preds, synops = step.preds, self.synops
        cur = self.currents[preds[0]].astype(np.int64)
        for q in preds[1:]:
            cur += self.currents[q]
        for q in preds:  # the Add owns its inputs' SynOps (energy/latency model)
            synops[step.name] = synops.get(step.name, 0) + synops.pop(q, 0)
        self._population(step.name, cur, step.lif)

    def _population(self, name: str, cur: np.ndarray, lif: LifOperands) -> None:
        """A population's LIF on its delayed current; its spikes become its value."""
        n, p = self.n, self.plan
        spk = _buffer(self.arena, (name, "spikes"), cur.shape, np.uint8)
        cnt = _buffer(self.arena, (name, "count"), (n, cur.shape[2]), np.int32)
        # float64 is exact while |current| < 2**46: always for int16/int32 sums
        exact = lif.f64_exact and cur.dtype != np.int64
        args = (cur, lif.bias, lif.keep_u, lif.keep_v, lif.vth, spk, cnt)
        self.parallel("lif_f64" if exact else "lif", *args)
        self.vals[name] = spk
        self.nspk[name] = cnt
        self.spikes[name] = int(cnt.sum(dtype=np.int64))
        self.neurons[name] = int(np.prod(p.shapes[name]))
        self.cores[name] = node_cores(p.graph.nodes[name])
        if self.record:
            self.layers[name] = _canonical(spk, p.shapes[name], p.hwc[name], p, name).astype(np.int8)


_STEP_HANDLERS = {
    "input": _ChunkRun.step_input,
    "alias": _ChunkRun.step_alias,
    "dense": _ChunkRun.step_dense,
    "conv": _ChunkRun.step_conv,
    "neuron": _ChunkRun.step_neuron,
    "add": _ChunkRun.step_add,
}


def _conv_kernel(ops: ConvOperands, spikes_per_step: float, steps_last: bool) -> str:
    """The cheapest conv kernel by the plan's cost model: ``"event"``, ``"gemm"`` or ``"lut"``.
    ``spikes_per_step``: the input's spikes per sample and step; ``steps_last``: the input is the
    network's, held (N, M, T)."""
    lut, cost = ops.lut, ops.cost
    dense_cost = cost.dense
    if steps_last and lut is not None and not lut.words:
        dense_cost = min(dense_cost, lut.cost_steps_last)
    if cost.scan + spikes_per_step * cost.per_spike <= dense_cost:
        return "event"
    lut_cost = None if lut is None else lut.cost_steps_last if steps_last and not lut.words else lut.cost
    if lut_cost is not None and (ops.gather is None or lut_cost <= dense_cost):
        return "lut"
    return "gemm" if ops.gather is not None else "event"


def _run_chain(p: Plan, k: dict, s_in: np.ndarray) -> ChunkResult:
    """``run`` for an input -> (dense + LIF) x L chain: one ``dense_chain`` pass."""
    names = p.chain.names
    n, t = s_in.shape[0], s_in.shape[-1]
    x = np.ascontiguousarray(s_in.reshape(n, -1, t))
    out_shape = p.shapes[p.output]
    out = np.empty((n, int(np.prod(out_shape)), t), np.int8)
    counts = np.zeros((n, len(names)), np.int64)
    synops = np.zeros((n, len(names)), np.int64)
    _parallel(k["dense_chain"], n, x, *p.chain.operands, out, counts, synops)
    tot, ops = counts.sum(axis=0), synops.sum(axis=0)
    return ChunkResult(
        output=out.reshape(n, *out_shape, t),
        spikes={name: int(tot[j]) for j, name in enumerate(names)},
        synops={name: int(ops[j]) for j, name in enumerate(names)},
        neurons={name: int(np.prod(p.shapes[name])) for name in names},
        cores={name: node_cores(p.graph.nodes[name]) for name in names},
        layers={},
    )


def _canonical(a: np.ndarray, shape, hwc: bool, p: Plan, name: str | None = None) -> np.ndarray:
    """``(N, T, M)`` in the internal order -> ``(N, *shape, T)`` in PyTorch order."""
    n, t = a.shape[:2]
    if hwc and len(shape) == 3:
        c, h, w = shape
        return a.reshape(n, t, h, w, c).transpose(0, 4, 2, 3, 1)
    if hwc:  # a flattened channels-last value: put the positions back in PyTorch order
        perm = _hwc_perm(p.origin_shape(name))
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        a = a[:, :, inv]
    return np.moveaxis(a.reshape(n, t, *shape), 1, -1)
