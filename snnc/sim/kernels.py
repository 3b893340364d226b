"""The fixed-point simulator's compiled path: numba kernels for the synapses and the LIF loop.

Same integers as the numpy path of :mod:`snnc.sim` (LAVA_FACTS §2.1-2.3, §2.5; checked on
random graphs by ``tests/sim/test_kernels.py``), computed layer by layer over all ``T`` steps of
a chunk of samples (a feed-forward graph knows every step's input; a dense chain runs all its layers
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
"""

from __future__ import annotations

import numpy as np

from snnc.errors import SnncError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, Output, Pool
from snnc.sim.interpreter import _check_integer, _prepared, node_cores

_WRAP = 2**23
_KERNELS: dict = {}
FORCE_CONV: str | None = None  # "event", "gemm" or "lut" picks the conv kernel (tests compare all)
CHAIN = True  # dense chains run fused in dense_chain (tests compare with the layer-by-layer path)
CHUNK_ELEMENTS = 1 << 22  # samples x steps x widest layer per chunk (fewer thread hand-offs)


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


def _parallel(kernel, n: int, *args) -> None:
    """``kernel(*args, i0, i1)`` over samples ``[0, n)``, split across threads (the kernels release
    the GIL; samples are independent). A small batch runs in the calling thread."""
    workers = min(threads(), n)
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
    _check_integer(name, w)
    big = float(np.abs(w).max(initial=0))
    dt = np.int16 if big < 2**15 else np.int32 if big < 2**31 else np.int64
    return w.astype(dt)


def _acc_dtype(bound: float):
    return np.int32 if bound < 2**31 else np.int64


def _hwc_perm(shape: tuple[int, ...]) -> np.ndarray:
    """For a channels-last flatten of ``(C, H, W)``: the PyTorch-order index of each position."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


class _Plan:
    """Per-node operands of one fixed-point graph, prepared once and cached with the graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.shapes = graph.shapes()
        self.steps: list[tuple] = []
        hwc: dict[str, bool] = {}  # is the node's value held channels-last?
        for name, node in graph.nodes.items():
            preds = graph.predecessors(name)
            shape = self.shapes[name]
            if isinstance(node, Input):
                hwc[name] = False
                self.steps.append(("input", name, None))
                continue
            src = preds[0]
            if isinstance(node, Flatten | Output):
                hwc[name] = hwc[src]
                self.steps.append(("alias", name, src))
                continue
            if isinstance(node, Add):
                hwc[name] = hwc[preds[0]]
                self.steps.append(("add", name, (preds, self._neuron(node, shape, hwc[name]))))
                continue
            in_shape = self.shapes[src]
            if isinstance(node, Dense):
                perm = _hwc_perm(self._origin_shape(src)) if hwc[src] else None
                self.steps.append(("dense", name, (src, self._dense(node, perm))))
                hwc[name] = False
            elif isinstance(node, Conv | Pool):
                self.steps.append(("conv", name, (src, self._conv(node, in_shape, shape, hwc[src]))))
                hwc[name] = True
            else:
                raise SnncError(f"{name}: the simulator cannot run a {node.kind} node")
            if node.neuron is not None:
                self.steps.append(("neuron", name, self._neuron(node, shape, hwc[name])))
        self.hwc = hwc
        self.chain = self._chain()

    def _chain(self) -> tuple | None:
        """Operands of ``dense_chain`` when the graph is input -> (dense + LIF) x L -> output with
        int32 sums, int8/int16 weights and a float64-exact LIF; else None."""
        value: dict[str, str] = {}  # node -> the layer whose spikes it holds
        layers: list[tuple] = []
        for i, (kind, name, arg) in enumerate(self.steps):
            if kind == "input":
                value[name] = name
            elif kind == "alias":
                value[name] = value[arg]
            elif kind == "dense":
                src, (wt, wd, fan, wmax, acc, e) = arg
                want = layers[-1][0] if layers else self.steps[0][1]
                nxt = self.steps[i + 1] if i + 1 < len(self.steps) else None
                if value.get(src) != want or acc != np.int32 or wt.dtype.itemsize > 2:
                    return None
                if nxt is None or nxt[:2] != ("neuron", name) or not nxt[2][4]:
                    return None
                layers.append((name, wt, wd, fan, wmax, e, nxt[2]))
            elif kind == "neuron":
                value[name] = name
            else:
                return None
        out = self.graph.output.name
        if not layers or value.get(out) != layers[-1][0]:
            return None
        dt = np.int8 if all(lay[1].dtype == np.int8 for lay in layers) else np.int16
        lay = np.zeros((len(layers), 7), np.int64)
        dec = np.zeros((len(layers), 3), np.float64)
        w_off = f_off = o_off = 0
        for j, (_, wt, _, fan, wmax, e, (_, keep_u, keep_v, vth, _)) in enumerate(layers):
            lay[j] = (wt.shape[0], wt.shape[1], w_off, f_off, o_off, e, wmax)
            dec[j] = (keep_u / 4096.0, keep_v / 4096.0, float(vth))
            w_off, f_off, o_off = w_off + wt.size, f_off + fan.size, o_off + wt.shape[1]
        w = np.concatenate([lay_[1].reshape(-1).astype(dt) for lay_ in layers])
        wd = np.concatenate([lay_[2].reshape(-1).astype(dt) for lay_ in layers])
        fan = np.concatenate([lay_[3] for lay_ in layers])
        bias = np.concatenate([lay_[6][0] for lay_ in layers]).astype(np.float64)
        return [lay_[0] for lay_ in layers], (w, wd, lay, fan, bias, dec)

    def _origin_shape(self, name: str) -> tuple[int, ...]:
        """The (C, H, W) shape behind a (possibly flattened) channels-last value."""
        while len(self.shapes[name]) != 3:
            name = self.graph.predecessors(name)[0]
        return self.shapes[name]

    @staticmethod
    def _dense(node: Dense, perm) -> tuple:
        w = _int_weights(node.name, node.weight)
        # Weights that share a factor 2**z (netx stores slayer's even weights, LAVA_FACTS §1.5)
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
        return wt, wd, fan, wmax, _acc_dtype(bound * 2.0 ** max(e, 0)), e

    @staticmethod
    def _conv(node, in_shape, out_shape, in_hwc: bool) -> tuple:
        c, h, w_in = in_shape
        if isinstance(node, Conv):
            w = node.weight
            stride, pad, dil, groups = node.stride, node.padding, node.dilation, node.groups
        else:
            ky, kx = node.kernel
            w = np.full((c, 1, ky, kx), float(node.weight))
            stride, pad, dil, groups = node.stride, (0, 0), (1, 1), c
        wi = _int_weights(node.name, w)
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
        scatter = (c, in_hwc, wc, kt, groups, ip_ptr, op_tap[order], op[order].astype(np.int64))
        gather = None
        if bound < _WRAP:  # float32 sums are exact (< 2**24) and the 24-bit wrap is the identity
            rg8 = -(-cg * kt // 8) * 8
            wg = np.zeros((o_all, rg8), np.float32)
            wg[:, : cg * kt] = wi.reshape(o_all, cg * kt)
            geo = np.array([*stride, *pad, *dil, oh, ow], dtype=np.int64)
            gather = (c, h, w_in, in_hwc, wg, kh, kw, geo, groups)
        table = _lut(wi, groups, (h, w_in), (oh, ow), stride, pad, dil, in_hwc, bound)
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
        if table is not None:
            dense = min(dense, table[5][0])
        return scatter, gather, table, (scan, per_spike, dense), fan, acc, bound >= _WRAP

    @staticmethod
    def _neuron(node, shape, hwc: bool) -> tuple:
        neuron = node.neuron
        thr = neuron.threshold
        if thr != int(thr):
            raise SnncError(f"{node.name}: fixed-point threshold {thr} is not an integer mantissa")
        if getattr(node, "bn", None) is not None:
            raise SnncError(f"{node.name}: a fixed-point graph cannot hold batch-norm; run fold_bn first")
        m = int(np.prod(shape))
        b = np.zeros(m, np.int64)
        if neuron.bias is not None:
            bias = np.asarray(neuron.bias)
            if bias.size and not np.all(bias == np.round(bias)):
                raise SnncError(f"{node.name}: a fixed-point graph needs integer biases; run quantize first")
            bias = bias.astype(np.int64) << 6
            if len(shape) == 3:
                per = shape[1] * shape[2]
                b = np.tile(bias, per) if hwc else np.repeat(bias, per)
            else:
                b = np.broadcast_to(bias, (m,)).copy()
        vth = int(thr) << 6
        # the float64 LIF is exact while biases and threshold are below 2**46 (and the currents:
        # checked per run)
        small = max(abs(vth), int(np.abs(b).max(initial=0))) < 2**46
        return (np.ascontiguousarray(b), 4096 - neuron.current_decay, 4096 - neuron.voltage_decay, vth, small)


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
    return np.ascontiguousarray(idx), words, np.ascontiguousarray(table), og, big * nq, (cost, cost_sl)


def plan(graph: Graph) -> _Plan:
    """The graph's prepared operands (cached on the graph object)."""
    return _prepared(graph, "kernel-plan", lambda: _Plan(graph))


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


def run(graph: Graph, s_in: np.ndarray, record: bool = False, arena: dict | None = None) -> tuple:
    """One chunk of samples through the compiled kernels (``arena``: buffers shared by the
    chunks of one batch, see :func:`_buffer`).

    ``s_in`` ``(N, *input_shape, T)`` uint8 -> ``(output (N, *out, T) int8, spikes, synops,
    neurons, cores, layers)`` with the same meaning as :func:`snnc.sim.simulate`'s parts.
    """
    k = kernels()
    p = plan(graph)
    n, t = s_in.shape[0], s_in.shape[-1]
    if p.chain is not None and not record and CHAIN:
        return _run_chain(graph, p, k, s_in)
    vals: dict[str, np.ndarray] = {}
    currents: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    synops: dict[str, int] = {}
    neurons: dict[str, int] = {}
    cores: dict[str, int] = {}
    layers: dict[str, np.ndarray] = {}
    nspk: dict[str, np.ndarray] = {}  # spikes per sample and neuron (N, M), internal order
    out_name = None
    for kind, name, arg in p.steps:
        if kind == "input":
            vals[name] = s_in.reshape(n, -1, t).transpose(0, 2, 1)  # (N, T, M) view, PyTorch order
            nspk[name] = _buffer(arena, (name, "count"), (n, vals[name].shape[2]), np.int32)
            _parallel(k["input_counts"], n, s_in.reshape(n, -1, t), nspk[name])
        elif kind == "alias":
            vals[name] = vals[arg]
            if arg in nspk:
                nspk[name] = nspk[arg]
            if isinstance(graph.nodes[name], Output):
                out_name = name
        elif kind == "dense":
            src, (wt, wd, fan, wmax, acc, e) = arg
            x = vals[src]
            m, o_all = wt.shape
            cur = _buffer(arena, (name, "current"), (n, t, o_all), acc)
            # Adding a weight row per spike costs ~ spikes x (O/8 + 8) vector steps, a product of
            # the spike row with every weight row ~ O x M / 8: pick the cheaper.
            density = nspk[src].sum(dtype=np.int64) / max(n * t * m, 1)
            if x.flags.c_contiguous and density > o_all / (o_all + 64):
                if wd.dtype == np.float32:
                    _parallel(k["dense_dot_f32"], n, x, wd, cur)
                else:
                    _parallel(k["dense_dot"], n, x, wd, cur)
                synops[name] = int(nspk[src].sum(axis=0, dtype=np.int64) @ fan)
            else:
                ops = np.zeros(n, np.int64)
                steps_last = x.transpose(0, 2, 1)  # the network input is held (N, M, T)
                if steps_last.flags.c_contiguous:
                    _parallel(k["dense_steps_last"], n, steps_last, wt, fan, wmax, cur, ops)
                else:
                    _parallel(k["dense"], n, x, wt, fan, wmax, cur, ops)
                synops[name] = int(ops.sum())
            if e > 0:
                cur <<= e
            elif e < 0:
                cur >>= -e  # Lava's arithmetic (floor) shift (§2.2)
            currents[name] = cur
        elif kind == "conv":
            src, (scatter, gather, table, (scan, per_spike, dense_cost), fan, acc, wrap) = arg
            x = vals[src]
            per_input = nspk[src].sum(axis=0, dtype=np.int64)
            steps_last = x.transpose(0, 2, 1)  # the network input is held (N, M, T)
            sl = steps_last.flags.c_contiguous
            kernel = FORCE_CONV
            if kernel is None:
                kernel = "event"
                event_cost = scan + per_input.sum() / (n * t) * per_spike
                if sl and table is not None and not table[1]:
                    dense_cost = min(dense_cost, table[5][1])
                if event_cost > dense_cost:
                    lut_cost = None if table is None else table[5][1 if sl and not table[1] else 0]
                    lut_cheaper = lut_cost is not None and (gather is None or lut_cost <= dense_cost)
                    kernel = "lut" if lut_cheaper else "gemm" if gather is not None else "event"
            size = (n, t, int(np.prod(p.shapes[name])))
            if kernel == "lut" and table is not None:
                idx, words, tab, og, bias, _ = table
                # 16-bit lanes: every sum is below 2**15 in magnitude
                dt = np.int16 if bias < 2**15 else np.int32
                cur = _buffer(arena, (name, "current"), size, dt)
                ops = (idx, tab, og, bias, cur, wrap)
                if sl and not words:
                    _parallel(k["conv_lut_steps_last"], n, steps_last, *ops)
                else:
                    _parallel(k["conv_lut_words" if words else "conv_lut"], n, x, *ops)
            elif kernel == "gemm" and gather is not None:
                cur = _buffer(arena, (name, "current"), size, acc)
                _parallel(k["conv_gemm"], n, x, *gather, cur)
            else:
                cur = _buffer(arena, (name, "current"), size, acc)
                if sl and not scatter[1]:
                    c_in, _, *ops = scatter
                    _parallel(k["conv_event_steps_last"], n, steps_last, c_in, *ops, cur, wrap)
                else:
                    _parallel(k["conv_event"], n, x, *scatter, cur, wrap)
            currents[name] = cur
            synops[name] = int(per_input @ fan)
        else:  # a neuron population: of a synapse ("neuron") or of an Add ("add")
            if kind == "add":
                preds, params = arg
                cur = currents[preds[0]].astype(np.int64)
                for q in preds[1:]:
                    cur += currents[q]
                for q in preds:  # the Add owns its inputs' SynOps (energy/latency model)
                    synops[name] = synops.get(name, 0) + synops.pop(q, 0)
            else:
                params = arg
                cur = currents.pop(name)
            b, keep_u, keep_v, vth, small = params
            spk = _buffer(arena, (name, "spikes"), cur.shape, np.uint8)
            cnt = _buffer(arena, (name, "count"), (n, cur.shape[2]), np.int32)
            # float64 is exact while |current| < 2**46: always for int16/int32 sums
            exact = small and cur.dtype != np.int64
            _parallel(k["lif_f64" if exact else "lif"], n, cur, b, keep_u, keep_v, vth, spk, cnt)
            vals[name] = spk
            nspk[name] = cnt
            counts[name] = int(cnt.sum(dtype=np.int64))
            neurons[name] = int(np.prod(p.shapes[name]))
            cores[name] = node_cores(graph.nodes[name])
            if record:
                layers[name] = _canonical(spk, p.shapes[name], p.hwc[name], p, name).astype(np.int8)
    out_shape = p.shapes[out_name]
    output = _canonical(vals[out_name], out_shape, p.hwc[out_name], p, out_name).astype(np.int8)
    return output, counts, synops, neurons, cores, layers


def _run_chain(graph: Graph, p: _Plan, k: dict, s_in: np.ndarray) -> tuple:
    """``run`` for an input -> (dense + LIF) x L chain: one ``dense_chain`` pass."""
    names, ops = p.chain
    n, t = s_in.shape[0], s_in.shape[-1]
    x = np.ascontiguousarray(s_in.reshape(n, -1, t))
    out_shape = p.shapes[graph.output.name]
    out = np.empty((n, int(np.prod(out_shape)), t), np.int8)
    counts = np.zeros((n, len(names)), np.int64)
    synops = np.zeros((n, len(names)), np.int64)
    _parallel(k["dense_chain"], n, x, *ops, out, counts, synops)
    tot, ops_ = counts.sum(axis=0), synops.sum(axis=0)
    return (
        out.reshape(n, *out_shape, t),
        {name: int(tot[j]) for j, name in enumerate(names)},
        {name: int(ops_[j]) for j, name in enumerate(names)},
        {name: int(np.prod(p.shapes[name])) for name in names},
        {name: node_cores(graph.nodes[name]) for name in names},
        {},
    )


def _canonical(a: np.ndarray, shape, hwc: bool, p: _Plan, name: str | None = None) -> np.ndarray:
    """``(N, T, M)`` in the internal order -> ``(N, *shape, T)`` in PyTorch order."""
    n, t = a.shape[:2]
    if hwc and len(shape) == 3:
        c, h, w = shape
        return a.reshape(n, t, h, w, c).transpose(0, 4, 2, 3, 1)
    if hwc:  # a flattened channels-last value: put the positions back in PyTorch order
        perm = _hwc_perm(p._origin_shape(name))
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        a = a[:, :, inv]
    return np.moveaxis(a.reshape(n, t, *shape), 1, -1)
