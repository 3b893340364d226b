"""The fixed-point simulator's compiled path: numba kernels for the synapses and the LIF loop.

Same integers as the numpy path of :mod:`snnc.targets.sim` (LAVA_FACTS §2.1-2.3, §2.5; checked on
random graphs by ``tests/targets/test_kernels.py``), computed layer by layer over all ``T`` steps of
a chunk of samples (a feed-forward graph knows every step's input), with the samples split across
threads (the kernels release the GIL; samples are independent).

Kernels, and when each runs (costs measured on this project's benchmark nets, see
benchmarks/README.md):

- ``dense``: event-driven, as Lava's Dense sums ``weight[:, s]`` (§2.2): per step the weight rows
  of the inputs that spiked are added, eight per pass over the sums.
- ``dense_dot``: the spike row times each weight row, for few outputs and busy inputs.
- ``conv_event``: every input spike adds its (channel, tap) weight row to the currents of each
  output position it reaches; for sparse inputs.
- ``conv_gemm``: im2col, then long multiply-adds in float32 (exact below 2**24); for busy inputs.
- ``lif``: Lava's fixed-point CUBA-LIF (§2.1) in int64, two vectorised loops per step.

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

from snnc.compile.ir import Add, Conv, Dense, Flatten, Graph, Input, Output, Pool
from snnc.errors import SnncError
from snnc.targets.sim import _check_integer, _prepared

_WRAP = 2**23
_KERNELS: dict = {}
FORCE_CONV: str | None = None  # "event" or "gemm" picks the conv kernel (tests compare both)


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
    from snnc.targets import _numba_kernels as nk

    _KERNELS.update(
        dense=nk.dense, dense_dot=nk.dense_dot, conv_event=nk.conv_event, conv_gemm=nk.conv_gemm, lif=nk.lif
    )
    return _KERNELS


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

        _POOL.append(ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="snnc-sim"))
    bounds = np.linspace(0, n, workers + 1).astype(int)
    jobs = [
        _POOL[0].submit(kernel, *args, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
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
        return wt, wd, fan, _acc_dtype(bound * 2.0 ** max(e, 0)), e

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
        return scatter, gather, (scan, per_spike, dense), fan, acc, bound >= _WRAP

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
        return (
            np.ascontiguousarray(b),
            4096 - neuron.current_decay,
            4096 - neuron.voltage_decay,
            int(thr) << 6,
        )


def plan(graph: Graph) -> _Plan:
    """The graph's prepared operands (cached on the graph object)."""
    return _prepared(graph, "kernel-plan", lambda: _Plan(graph))


def run(graph: Graph, s_in: np.ndarray, record: bool = False) -> tuple:
    """One chunk of samples through the compiled kernels.

    ``s_in`` ``(N, *input_shape, T)`` uint8 -> ``(output (N, *out, T) int8, spikes, synops,
    neurons, cores, layers)`` with the same meaning as :func:`snnc.targets.sim.simulate`'s parts.
    """
    k = kernels()
    p = plan(graph)
    n, t = s_in.shape[0], s_in.shape[-1]
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
        elif kind == "alias":
            vals[name] = vals[arg]
            if arg in nspk:
                nspk[name] = nspk[arg]
            if isinstance(graph.nodes[name], Output):
                out_name = name
        elif kind == "dense":
            src, (wt, wd, fan, acc, e) = arg
            x = vals[src]
            m, o_all = wt.shape
            cur = np.empty((n, t, o_all), acc)
            # Adding a weight row per spike costs ~ spikes x (O/8 + 8) vector steps, a product of
            # the spike row with every weight row ~ O x M / 8: pick the cheaper.
            density = nspk[src].sum() / max(n * t * m, 1) if src in nspk else 0.0
            if x.flags.c_contiguous and density > o_all / (o_all + 64):
                _parallel(k["dense_dot"], n, x, wd, cur)
                synops[name] = int(nspk[src].sum(axis=0) @ fan)
            else:
                ops = np.zeros(n, np.int64)
                _parallel(k["dense"], n, x, wt, fan, cur, ops)
                synops[name] = int(ops.sum())
            if e > 0:
                cur <<= e
            elif e < 0:
                cur >>= -e  # Lava's arithmetic (floor) shift (§2.2)
            currents[name] = cur
        elif kind == "conv":
            src, (scatter, gather, (scan, per_spike, dense_cost), fan, acc, wrap) = arg
            x = vals[src]
            cur = np.zeros((n, t, int(np.prod(p.shapes[name]))), acc)
            per_input = nspk[src].sum(axis=0) if src in nspk else _input_counts(s_in)
            busy = scan + per_input.sum() / (n * t) * per_spike > dense_cost
            if gather is not None and (FORCE_CONV == "gemm" or (busy and FORCE_CONV != "event")):
                _parallel(k["conv_gemm"], n, x, *gather, cur)
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
            b, keep_u, keep_v, vth = params
            spk = np.empty(cur.shape, np.uint8)
            cnt = np.zeros((n, cur.shape[2]), np.int32)
            _parallel(k["lif"], n, cur, b, keep_u, keep_v, vth, spk, cnt)
            vals[name] = spk
            nspk[name] = cnt
            counts[name] = int(cnt.sum(dtype=np.int64))
            neurons[name] = int(np.prod(p.shapes[name]))
            c = graph.nodes[name].meta.get("cores", 1)
            cores[name] = int(c) if isinstance(c, int | np.integer) and c > 0 else 1
            if record:
                layers[name] = _canonical(spk, p.shapes[name], p.hwc[name], p, name).astype(np.int8)
    out_shape = p.shapes[out_name]
    output = _canonical(vals[out_name], out_shape, p.hwc[out_name], p, out_name).astype(np.int8)
    return output, counts, synops, neurons, cores, layers


def _input_counts(s_in: np.ndarray) -> np.ndarray:
    """Spikes per input neuron over the batch and steps, PyTorch order."""
    n, t = s_in.shape[0], s_in.shape[-1]
    return s_in.reshape(n, -1, t).sum(axis=(0, 2), dtype=np.int64)


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
