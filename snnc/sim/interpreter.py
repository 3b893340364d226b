"""The cycle-level simulator: Lava's fixed-point CUBA-LIF/Dense/Conv semantics, bit for bit.

For a ``"fixed"`` graph every step follows docs/loihi2.md §2.6 (the reference that matched Lava 0.10.0
``Loihi2SimCfg(select_tag='fixed_pt')`` with zero mismatches), in int64::

    a_in, abuf = abuf, syn(s)                         # one step of latency per synapse (§2.2, §2.5)
    u = rshift0(u * (4096 - current_decay), 12) + (a_in << 6)   # round toward zero (§2.1)
    u -= 2**24 where u > 2**23 ; u += 2**24 where u <= -2**23   # 24-bit wrap, Lava's exact tests
    v = rshift0(v * (4096 - voltage_decay), 12) + u + (bias << 6)
    v = clip(v, -(2**23 - 1), 2**23 - 1)                        # saturation
    s = v > (threshold << 6) ; v[s] = 0                         # strict >, reset v only

``syn`` is Lava's Dense (``sum(weight[:, s]) << weight_exp``, an arithmetic ``>>`` when negative,
§2.2) or Conv (PyTorch correlation on (C, H, W), the result wrapped to signed 24 bits, §2.3); a Pool
is a grouped conv with the tap ``weight`` (it is emitted as one, §1.6). An ``Add`` neuron sums the
delayed currents of its synapse-only inputs (Lava sums every OutPort connected to one InPort, §2.5).

For a ``"float"`` graph the same equations run in floating point without any rounding, exactly as
``snnc.nn.neuron.cuba_lif`` (batch-norm scale on the current, its shift added to the voltage bias,
as ``snnc.nn.blocks.VoltageBiasBatchNorm``), so a float graph traced from a model reproduces the
model's spikes.

Speed: the synaptic products of a layer are computed for all ``T`` steps at once (a feed-forward
graph knows every step's input); integer sums are exact in float32 BLAS below 2**24 (used when the
weights bound them there) and in float64 below 2**53. Only the neuron update loops over time,
vectorized over the batch, in cache-sized chunks of samples. That is the reference path
(:class:`Interpreter`, one ``visit_<kind>`` per node kind, and the path for float graphs);
fixed-point graphs run through the compiled kernels of :mod:`snnc.sim.kernels` when ``numba`` is
importable, with identical results (``tests/sim/test_kernels.py``) at a fraction of the time.

Energy and latency: Intel has not published per-operation energy or time figures for Loihi 2. The
estimates use the **Loihi 1** figures of Davies et al., "Loihi: A Neuromorphic Manycore Processor
with On-Chip Learning", IEEE Micro 38(1), 2018, Table 1 (energy per synaptic spike op 23.6 pJ, time
3.5 ns; energy per active neuron update 52 pJ, time 8.4 ns; within-tile spike energy 1.7 pJ); the
result keys say ``loihi1`` so nobody reads them as Loihi 2 measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snnc.errors import SnncError, UsageError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, Node, NodeVisitor, Output, Pool, is_graded
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_BITS, DECAY_UNITY, STATE_WRAP, V_MAX
from snnc.sim import kernels
from snnc.sim.common import (
    ChunkResult,
    ConvSpec,
    check_graded,
    check_integer,
    check_spikes,
    fixed_threshold,
    has_graded,
    node_cores,
    prepared,
)
from snnc.sim.sdnn import graded_conv, graded_dense, graded_weights, sdnn_fixed

# Davies et al. 2018, IEEE Micro, Table 1 (Loihi 1; no per-op Loihi 2 figures are published).
LOIHI1_SYNOP_ENERGY_J = 23.6e-12
LOIHI1_SYNOP_TIME_S = 3.5e-9
LOIHI1_NEURON_UPDATE_ENERGY_J = 52e-12
LOIHI1_NEURON_UPDATE_TIME_S = 8.4e-9
LOIHI1_SPIKE_ENERGY_J = 1.7e-12


@dataclass
class SimResult:
    """What one simulation returns.

    ``output``: ``(N, *out_shape, T)`` int8 spikes of the last layer, as Lava's sink at ``net.out``
    records them (the latency of every synaptic layer included); int32 payloads when that layer is
    sigma-delta (graded, docs/loihi2.md §2.7), as are its ``layers`` records. ``spikes``: per neuron
    layer, total spikes (a graded layer's non-zero payloads) over the batch. ``synops``: per
    synaptic layer, total synaptic operations over the batch (NeuroBench: one per non-zero input
    spike x non-zero fan-out weight). ``neurons``: neurons per
    layer. ``layers`` (with ``record=True``): per neuron layer spikes ``(N, *shape, T)`` int8.
    ``stored_per_synop``: per synaptic layer, the stored synapses the chip reads per SynOp
    (:func:`stored_per_synop`); the energy and latency estimates count ``synops`` times it.
    """

    output: np.ndarray
    spikes: dict[str, int]
    synops: dict[str, int]
    neurons: dict[str, int]
    batch: int
    steps: int
    cores: dict[str, int] = field(default_factory=dict)
    layers: dict[str, np.ndarray] | None = None
    stored_per_synop: dict[str, float] = field(default_factory=dict)

    def deployed_synops(self, name: str) -> float:
        """Synaptic reads of layer ``name`` on the chip: its SynOps times the stored synapses per SynOp."""
        return self.synops.get(name, 0) * self.stored_per_synop.get(name, 1.0)

    def energy_latency(self) -> dict:
        """Per-inference estimates from Loihi 1's published per-op figures (module docstring).

        Energy = synaptic reads x 23.6 pJ + neuron updates x 52 pJ + spikes x 1.7 pJ, the reads being
        what is deployed (:meth:`deployed_synops`: a dense-encoded layer reads its stored zeros, a
        sparse one only its non-zeros, a conv its whole kernels). Latency: each layer
        runs on its own neurocores in parallel (``node.meta["cores"]``, default 1); within a core
        SynOps and neuron updates are serial; a step lasts as long as the slowest layer; an
        inference lasts T steps.
        """
        n, t = max(self.batch, 1), max(self.steps, 1)
        synops = sum(self.deployed_synops(k) for k in self.synops) / n
        updates = sum(self.neurons.values()) * t
        spikes = sum(self.spikes.values()) / n
        energy = (
            synops * LOIHI1_SYNOP_ENERGY_J
            + updates * LOIHI1_NEURON_UPDATE_ENERGY_J
            + spikes * LOIHI1_SPIKE_ENERGY_J
        )
        step = 0.0
        for name, neurons in self.neurons.items():
            ops = self.deployed_synops(name) / (n * t)
            cost = ops * LOIHI1_SYNOP_TIME_S + neurons * LOIHI1_NEURON_UPDATE_TIME_S
            step = max(step, cost / max(self.cores.get(name, 1), 1))
        return {
            "energy_per_inference_j_loihi1_figures": energy,
            "latency_per_inference_s_loihi1_figures": step * t,
            "latency_per_step_s_loihi1_figures": step,
        }

    def summary(self) -> dict:
        """JSON-able dict: per-layer spikes and SynOps (totals, per sample), energy, latency."""
        n = max(self.batch, 1)
        layers = []
        for name in self.neurons:
            layers.append(
                {
                    "name": name,
                    "neurons": self.neurons[name],
                    "spikes": self.spikes.get(name, 0),
                    "spikes_per_sample": self.spikes.get(name, 0) / n,
                    "synops": self.synops.get(name, 0),
                    "synops_per_sample": self.synops.get(name, 0) / n,
                    "deployed_synops_per_sample": self.deployed_synops(name) / n,
                }
            )
        return {
            "batch": self.batch,
            "steps": self.steps,
            "output_shape": list(self.output.shape),
            "spikes": int(sum(self.spikes.values())),
            "synops": int(sum(self.synops.values())),
            "synops_per_sample": sum(self.synops.values()) / n,
            "layers": layers,
            **self.energy_latency(),
        }


# -- helpers ---------------------------------------------------------------------------------
def check_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Validate ``x`` ``(N, *input_shape, T)`` of 0/1 spikes for ``graph``; returns it as C-contiguous
    uint8 (:func:`snnc.sim.common.check_spikes`: bool bytes normalised, integers 0/1, floats exactly
    0.0/1.0). Raises :class:`UsageError` naming the problem (rank, shape, dtype, values).

    A graph whose input population is sigma-delta (a ``Delta``, docs/loihi2.md §2.7) takes graded
    input instead: any int32 integers (:func:`snnc.sim.common.check_graded`), returned as int32."""
    if is_graded(graph.input.neuron):
        return check_graded(x, tuple(graph.input.shape))
    return check_spikes(x, tuple(graph.input.shape))


def _conv_currents(s: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups) -> np.ndarray:
    """``s`` ``(B, C, H, W)`` -> ``(B, C_out, H', W')`` (PyTorch correlation, exact integers)."""
    import torch

    with torch.no_grad():
        y = torch.nn.functional.conv2d(
            torch.from_numpy(s),
            torch.from_numpy(np.array(weight)),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )
    return y.numpy()


def _conv_fanout(weight: np.ndarray, in_shape, out_shape, stride, padding, dilation, groups) -> np.ndarray:
    """Per input neuron ``(C, H, W)``: the number of non-zero weights that reach a valid output."""
    import torch

    nz = torch.from_numpy((weight != 0).astype(np.float64))
    ones = torch.ones((1, *out_shape), dtype=torch.float64)
    c, h, w = in_shape
    # conv_transpose2d's natural size, (O - 1) s - 2 p + d (k - 1) + 1, falls short of the input by
    # up to s - 1 rows/columns when the stride skipped the input's tail: output_padding restores
    # them, so inputs reached only through the padding keep their fan-out.
    size = [
        (out_shape[1 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1
        for i in range(2)
    ]
    extra = (h - size[0], w - size[1])
    with torch.no_grad():
        fan = torch.nn.functional.conv_transpose2d(
            ones, nz, stride=stride, padding=padding, dilation=dilation, groups=groups, output_padding=extra
        )
    return np.rint(fan.numpy()[0])


def _exact_dtype(w: np.ndarray, fixed: bool):
    """float32 when every partial sum of integer spikes x integer weights stays below 2**24 (exact
    there), else float64 (exact below 2**53). Float graphs always use float64."""
    if fixed and np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0) < 2**24:
        return np.float32
    return np.float64


class Interpreter(NodeVisitor):
    """The numpy reference: runs a graph on a chunk of samples node by node, in the manner of
    ``torch.fx.Interpreter`` (:meth:`run` visits every node in order and keeps its value in ``env``;
    one ``visit_<kind>`` per node kind).

    A node's value is ``(N, T, *shape)`` (time on axis 1): the spikes (uint8) of the input, of a
    ``Flatten``/``Output`` view and of every neuron population; for a synapse-only node (``neuron is
    None``, it feeds an ``Add``) its delayed current. A synaptic node computes its current for all
    ``T`` steps at once (a feed-forward graph knows every step's input), delays it one step, then
    runs its neurons.
    """

    backend = "the simulator"

    def __init__(self, graph: Graph, fixed: bool, dtype, shapes: dict | None = None) -> None:
        """``shapes``: ``graph.shapes()`` when the caller has them already."""
        self.graph = graph
        self.fixed = fixed
        self.dtype = dtype
        self.shapes = graph.shapes() if shapes is None else shapes
        self.preds = {name: graph.predecessors(name) for name in graph.nodes}
        # layer name -> {"u", "v"} (N, T, *shape) int64 before the reset; filled by a fixed-point
        # run only when the caller sets it to a dict (:func:`trace_layers` does)
        self.states: dict | None = None
        self.traced: frozenset | None = None  # the layers whose state is stored (None: all)

    def run(self, s_in: np.ndarray, record: bool) -> ChunkResult:
        """``s_in`` ``(N, *input_shape, T)`` uint8 spikes -> this chunk's :class:`ChunkResult`."""
        self.s_in, self.record = s_in, record
        self.n, self.t = s_in.shape[0], s_in.shape[-1]
        self.env: dict[str, np.ndarray] = {}
        self.result = ChunkResult(None, {}, {}, {}, {}, {})
        self.adds: list[str] = []
        for name, node in self.graph.nodes.items():
            self.env[name] = self.visit(node)
        # Add neurons own the SynOps of their synapse-only inputs in the per-layer energy/latency model.
        synops = self.result.synops
        for name in self.adds:
            for p in self.preds[name]:
                synops[name] = synops.get(name, 0) + synops.pop(p, 0)
        out = self.graph.output.name
        r = self.result
        value = self.env[out]
        output = np.moveaxis(value, 1, -1).astype(np.int32 if self._graded(value) else np.int8)
        return ChunkResult(output, r.spikes, r.synops, r.neurons, r.cores, r.layers)

    # -- one method per node kind ------------------------------------------------------------
    def visit_input(self, node: Input) -> np.ndarray:
        s = np.ascontiguousarray(np.moveaxis(self.s_in, -1, 1))
        if node.neuron is None:
            return s
        # an input neuron: each value is its a_in this very step, no synapse delay (§1.7)
        return self._population(node, s.astype(np.int64) if self.fixed else s.astype(self.dtype))

    @staticmethod
    def _graded(s: np.ndarray) -> bool:
        """Is the value ``s`` graded payloads (int64) rather than 0/1 spikes (uint8)?"""
        return s.dtype != np.uint8

    def visit_flatten(self, node: Flatten) -> np.ndarray:
        return self.env[self.preds[node.name][0]].reshape(self.n, self.t, *self.shapes[node.name])

    def visit_output(self, node: Output) -> np.ndarray:
        return self.visit_flatten(node)

    def visit_dense(self, node: Dense) -> np.ndarray:
        cur, synops = self._dense_current(node, self.env[self.preds[node.name][0]])
        return self._synapse(node, cur, synops)

    def visit_conv(self, node: Conv) -> np.ndarray:
        return self._conv(node, ConvSpec.of_conv(node, self.fixed), cache_key=node.weight)

    def visit_pool(self, node: Pool) -> np.ndarray:
        channels = self.shapes[self.preds[node.name][0]][0]
        return self._conv(node, ConvSpec.of_pool(node, channels), cache_key=None)

    def visit_add(self, node: Add) -> np.ndarray:
        self.adds.append(node.name)  # it takes its inputs' SynOps at the end of the run
        return self._population(node, sum(self.env[p] for p in self.preds[node.name]))

    # -- synapses: spikes (N, T, *in) -> current (N, T, *out), not yet delayed ----------------
    def _synapse(self, node: Node, cur: np.ndarray, synops: int) -> np.ndarray:
        """Record the SynOps, delay the current one step (§2.2); run the neurons if there are any."""
        self.result.synops[node.name] = synops
        cur = _delay(cur)
        if node.neuron is None:
            return cur
        return self._population(node, cur)

    def _dense_current(self, node: Dense, s: np.ndarray) -> tuple[np.ndarray, int]:
        n, t = s.shape[:2]
        flat = s.reshape(n * t, -1)
        if self._graded(s):  # graded payloads (sigma-delta): Lava's int32 dot (§2.7)
            self._need_fixed(node)
            w = node.weight

            def make_graded():
                check_integer(node.name, w)
                return graded_weights(w, dense=True), (w != 0).sum(axis=0).astype(np.float64)

            gw, fan = prepared(w, "dense-graded", make_graded)
            counts = np.count_nonzero(flat, axis=0).astype(np.float64)
            cur = graded_dense(flat, gw, int(node.weight_exp))
            return cur.reshape(n, t, w.shape[0]), int(round(float(counts @ fan)))
        counts = flat.sum(axis=0, dtype=np.int64).astype(np.float64)  # spikes per input neuron
        fixed = self.fixed
        w = node.weight

        def make():
            if fixed:
                check_integer(node.name, w)
            dt = _exact_dtype(w, fixed)
            return np.ascontiguousarray(w.T, dtype=dt), (w != 0).sum(axis=0).astype(np.float64)

        wt, fan = prepared(w, f"dense-{fixed}", make)
        cur = flat.astype(wt.dtype) @ wt
        e = int(node.weight_exp)
        if e > 0:
            cur = cur * float(2**e)
        elif e < 0:
            cur = cur * 2.0**e
            if fixed:
                cur = np.floor(cur)  # Lava's arithmetic >> (§2.2)
        synops = float(counts @ fan)
        return cur.reshape(n, t, w.shape[0]), int(round(synops))

    def _conv(self, node: Conv | Pool, spec: ConvSpec, cache_key: np.ndarray | None) -> np.ndarray:
        """A Conv or Pool (``spec``): its current from the whole input, then :meth:`_synapse`.
        ``cache_key``: the array whose lifetime keeps the prepared operands (a Conv's weight);
        ``None`` prepares them on each call (a Pool's weight is built from the node each time)."""
        s = self.env[self.preds[node.name][0]]
        in_shape = self.shapes[self.preds[node.name][0]]
        out_shape = self.shapes[node.name]
        n, t = s.shape[:2]
        flat = s.reshape(n * t, -1)
        graded = self._graded(s)  # graded payloads (sigma-delta): messages are the non-zero values
        if graded:
            counts = np.count_nonzero(flat, axis=0).astype(np.float64)
        else:
            counts = flat.sum(axis=0, dtype=np.int64).astype(np.float64)  # spikes per input neuron
        fixed = self.fixed
        w, stride, pad, dil, groups, weight_exp = spec

        def make():
            if fixed and cache_key is not None:  # a Pool's taps are not checked (as before)
                check_integer(node.name, w)
            dt = _exact_dtype(w, fixed)
            fan = _conv_fanout(w, in_shape, out_shape, stride, pad, dil, groups).reshape(-1)
            bound = np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)
            return np.array(w, dtype=dt), fan, bound

        if cache_key is None:
            wc, fan, bound = make()
        else:
            wc, fan, bound = prepared(cache_key, f"conv-{fixed}-{in_shape}", make)
        if graded:  # exact sums, the int32 cast and the 24-bit wrap of Lava's conv (§2.7)
            self._need_fixed(node)
            if cache_key is None:
                gw = graded_weights(w, dense=False)
            else:
                gw = prepared(cache_key, "conv-graded", lambda: graded_weights(w, dense=False))

            def conv(a, k):
                return _conv_currents(a, k, stride, pad, dil, groups)

            cur = graded_conv(flat.reshape(n * t, *in_shape), gw, conv)
            return self._synapse(node, cur.reshape(n, t, *out_shape), int(round(float(counts @ fan))))
        x = flat.reshape(n * t, *in_shape).astype(wc.dtype)
        cur = _conv_currents(x, wc, stride, pad, dil, groups)
        if fixed and bound >= STATE_WRAP:
            # Lava's conv wraps its output to signed 24 bits (signed_clamp, §2.3); below 2**23
            # in magnitude the wrap is the identity, so it is skipped then.
            cur = np.mod(cur.astype(np.float64) + STATE_WRAP, 2 * STATE_WRAP) - STATE_WRAP
        elif not fixed and weight_exp:
            cur = cur * 2.0**weight_exp
        synops = float(counts @ fan)
        return self._synapse(node, cur.reshape(n, t, *out_shape), int(round(synops)))

    # -- neurons: delayed current (N, T, *shape) -> spikes (N, T, *shape) uint8 ----------------
    def _population(self, node: Node, cur: np.ndarray) -> np.ndarray:
        name, shape = node.name, self.shapes[node.name]
        graded = is_graded(node.neuron)
        spk = self._sdnn(node, cur) if graded else self._lif(node, cur, shape)
        r = self.result
        # a graded population's spikes are its non-zero payloads (the messages it sends)
        r.spikes[name] = int(np.count_nonzero(spk)) if graded else int(spk.sum(dtype=np.int64))
        r.neurons[name] = int(np.prod(shape))
        r.cores[name] = node_cores(node)
        if self.record:
            r.layers[name] = np.moveaxis(spk, 1, -1).astype(np.int32 if graded else np.int8)
        return spk

    def _need_fixed(self, node: Node) -> None:
        if not self.fixed:
            raise SnncError(f"{node.name}: sigma-delta (graded) layers run in fixed-point graphs only")

    def _sdnn(self, node: Node, cur: np.ndarray) -> np.ndarray:
        """A sigma-delta population (:mod:`snnc.sim.sdnn`): its payloads ``(N, T, *shape)`` int64."""
        self._need_fixed(node)
        if getattr(node, "bn", None) is not None:
            raise SnncError(f"{node.name}: a fixed-point graph cannot hold batch-norm; run fold_bn first")
        trace = None
        if self.states is not None and (self.traced is None or node.name in self.traced):
            trace = self.states.setdefault(node.name, {})
        return sdnn_fixed(node.name, cur, node.neuron, trace)

    def _lif(self, node: Node, cur: np.ndarray, shape) -> np.ndarray:
        neuron = node.neuron
        bias = None
        bn = getattr(node, "bn", None)
        bshape = (shape[0],) + (1,) * (len(shape) - 1)
        if neuron.bias is not None:
            bias = np.asarray(neuron.bias, dtype=np.float64).reshape(bshape)
        if bn is not None:
            if self.fixed:
                raise SnncError(
                    f"{node.name}: a fixed-point graph cannot hold batch-norm; run fold_bn before quantize"
                )
            scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
            cur = cur * scale.reshape(bshape)
            shift = (bn.bias - scale * bn.running_mean).reshape(bshape)
            bias = shift if bias is None else bias + shift
        if self.fixed:
            trace = None
            if self.states is not None and (self.traced is None or node.name in self.traced):
                trace = self.states.setdefault(node.name, {})
            return _lif_fixed(node.name, cur, neuron, bias, trace)
        return _lif_float(cur, neuron, bias, self.dtype)


_CHUNK = 1 << 15  # neurons per chunk of the time loop: the state then stays in the CPU cache


def _lif_fixed(name: str, cur: np.ndarray, neuron, bias, trace: dict | None = None) -> np.ndarray:
    vth = fixed_threshold(name, neuron)
    n, t = cur.shape[:2]
    shape = cur.shape[2:]
    m = int(np.prod(shape))
    a = cur.reshape(n, t, m)
    b = None
    bmax = 0
    if bias is not None:
        check_integer(name, bias)
        b = np.ascontiguousarray(np.broadcast_to(bias.astype(np.int64) << ACTIVATION_SHIFT, shape).reshape(m))
        bmax = int(np.abs(b).max(initial=0))
    keep_u = DECAY_UNITY - neuron.current_decay
    keep_v = DECAY_UNITY - neuron.voltage_decay
    if a.dtype != np.int64:
        a = a.astype(np.int64)
    # Exact shortcuts: rounding toward zero never grows |u| or |v|, so |u| <= A / (1 - keep_u/4096)
    # (A = max |a_in << 6|); when that bound is below 2**23 the wrap never fires (likewise the
    # clip).
    amax = int(np.abs(a).max(initial=0)) << ACTIVATION_SHIFT
    ubound = amax * t if keep_u == DECAY_UNITY else (amax * DECAY_UNITY) // (DECAY_UNITY - keep_u) + 1
    need_wrap = ubound >= STATE_WRAP or trace is not None
    vin = min(ubound, STATE_WRAP) + bmax
    vbound = vin * t if keep_v == DECAY_UNITY else (vin * DECAY_UNITY) // (DECAY_UNITY - keep_v) + 1
    need_clip = vbound >= V_MAX or need_wrap
    out = np.empty((n, t, m), np.uint8)
    per = n if trace is not None else max(1, _CHUNK // max(m, 1))
    for i0 in range(0, n, per):
        i1 = min(n, i0 + per)
        ac = a[i0:i1]
        u = np.zeros((i1 - i0, m), np.int64)
        v = np.zeros_like(u)
        tmp = np.empty_like(u)
        s = np.empty(u.shape, np.bool_)
        for k in range(t):
            # keep == 4096 (decay 0) is the identity, keep == 0 forgets: skip the multiply-shift
            # then.
            if keep_u == 0:
                np.left_shift(ac[:, k], ACTIVATION_SHIFT, out=u)
            else:
                if keep_u != DECAY_UNITY:
                    _decay_inplace(u, keep_u, tmp)
                np.left_shift(ac[:, k], ACTIVATION_SHIFT, out=tmp)
                u += tmp
            if need_wrap:
                u[u > STATE_WRAP] -= 2 * STATE_WRAP
                u[u <= -STATE_WRAP] += 2 * STATE_WRAP
            if keep_v == 0:
                np.copyto(v, u)
            else:
                if keep_v != DECAY_UNITY:
                    _decay_inplace(v, keep_v, tmp)
                v += u
            if b is not None:
                v += b
            if need_clip:
                np.clip(v, -V_MAX, V_MAX, out=v)
            np.greater(v, vth, out=s)
            if trace is not None:
                trace.setdefault("u", []).append(u.copy().reshape(-1, *shape))
                trace.setdefault("v", []).append(v.copy().reshape(-1, *shape))
            np.copyto(v, 0, where=s)  # reset v only (§2.1)
            out[i0:i1, k] = s.view(np.uint8)
    if trace is not None:
        trace["u"], trace["v"] = np.stack(trace["u"], 1), np.stack(trace["v"], 1)
    return out.reshape(n, t, *shape)


_DISABLE_NUMBA = False  # tests set it to compare the numpy loop with the compiled kernels


def _decay_inplace(x: np.ndarray, keep: int, tmp: np.ndarray) -> None:
    """``x = sign(x) * (|x| * keep >> 12)``: Lava's round-toward-zero decay (§2.1), in place."""
    x *= keep
    # For negative x, adding 4095 before the floor shift rounds toward zero; (x >> 63) is -1 there.
    np.right_shift(x, 63, out=tmp)
    tmp &= DECAY_UNITY - 1
    x += tmp
    x >>= DECAY_BITS


def lif_fixed(current: np.ndarray, neuron, bias=None, trace: dict | None = None) -> np.ndarray:
    """Lava's fixed-point LIF alone (§2.1): ``current`` ``(N, T, *shape)`` integer ``a_in`` (already
    delayed) -> spikes ``(N, T, *shape)`` uint8. ``bias``: per channel mantissas ``(C,)`` (default:
    the neuron's). With ``trace`` given, stores ``u`` and ``v`` (before the reset) ``(N, T,
    *shape)`` int64.
    """
    cur = np.asarray(current)
    b = None
    bias = neuron.bias if bias is None else bias
    if bias is not None:
        shape = cur.shape[2:]
        b = np.asarray(bias, dtype=np.float64).reshape((shape[0],) + (1,) * (len(shape) - 1))
    return _lif_fixed("lif", cur, neuron, b, trace)


def _lif_float(cur: np.ndarray, neuron, bias, dtype) -> np.ndarray:
    keep_u = dtype((DECAY_UNITY - neuron.current_decay) / DECAY_UNITY)
    keep_v = dtype((DECAY_UNITY - neuron.voltage_decay) / DECAY_UNITY)
    theta = dtype(neuron.threshold)
    cur = cur.astype(dtype, copy=False)
    b = None if bias is None else np.broadcast_to(bias.astype(dtype), cur.shape[2:])
    u = np.zeros(cur.shape[:1] + cur.shape[2:], dtype)
    v = np.zeros_like(u)
    out = np.empty(cur.shape, np.uint8)
    for k in range(cur.shape[1]):
        u = u * keep_u + cur[:, k]  # same operation order as snnc.nn.neuron.cuba_lif
        v = v * keep_v + u
        if b is not None:
            v = v + b
        s = v > theta
        v[s] = 0
        out[:, k] = s
    return out


def _delay(cur: np.ndarray) -> np.ndarray:
    """``out[:, t] = cur[:, t-1]``, ``out[:, 0] = 0`` (time on axis 1): the synapse buffer, §2.2."""
    out = np.zeros_like(cur)
    out[:, 1:] = cur[:, :-1]
    return out


def simulate(graph: Graph, x: np.ndarray, record: bool = False, float_dtype=np.float64) -> SimResult:
    """Run ``graph`` (either precision) on spikes ``x`` ``(N, *input_shape, T)`` (0/1, int or
    float).

    Returns a :class:`SimResult`; ``output`` is ``(N, *output_shape, T)`` int8. ``float_dtype`` only
    matters for float graphs (``np.float32`` mimics a float32 torch model's arithmetic more
    closely). Samples are independent, so a large batch runs in chunks that fit the CPU caches.
    """
    graph.verify()
    fixed = graph.precision == "fixed"
    s_in = check_input(graph, x)
    n, t = s_in.shape[0], s_in.shape[-1]
    shapes = graph.shapes()
    widest = max(int(np.prod(s)) for s in shapes.values())
    # the compiled kernels have no input population: such graphs run here (docs/loihi2.md §1.7);
    # nor graded (sigma-delta) layers: those run here too, their neurons in a compiled loop (§2.7)
    compiled = graph.input.neuron is None and not _DISABLE_NUMBA and not has_graded(graph)
    if fixed and compiled and kernels.kernels() is not None:
        arena: dict = {}  # the chunks reuse one set of buffers
        chunk = lambda s, rec: kernels.run(graph, s, rec, arena)  # noqa: E731
        per = max(1, kernels.CHUNK_ELEMENTS // max(1, widest * t), kernels.threads())
    else:
        chunk = Interpreter(graph, fixed, float_dtype, shapes).run
        elements = _GRADED_CHUNK_ELEMENTS if has_graded(graph) else _CHUNK_ELEMENTS
        per = max(1, elements // max(1, widest * t))
    parts = [chunk(s_in[i : i + per], record) for i in range(0, n, per)]
    result = _merge(parts, n, t, record)
    result.stored_per_synop = stored_per_synop(graph)
    return result


def stored_per_synop(graph: Graph) -> dict[str, float]:
    """Per SynOps key (a synaptic layer; an ``Add`` for its synapse-only inputs), the stored synapses
    the chip reads per NeuroBench SynOp: 1 for a sparse-encoded dense layer (``node.meta["synapse"]``
    is ``"sparse"``, the loihi2 lowering's choice) and a pool; stored / non-zero weights for a
    dense-encoded dense layer and a conv, whose zero weights occupy memory and are read all the
    same (an estimate: exact when the zeros are hit as often as the non-zeros)."""

    def counts(node: Node) -> tuple[int, int]:
        if isinstance(node, Pool):
            return 1, 1
        w = np.asarray(node.weight)
        nnz = int(np.count_nonzero(w))
        stored = nnz if isinstance(node, Dense) and node.meta.get("synapse") == "sparse" else w.size
        return stored, nnz

    out: dict[str, float] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Add):
            parts = [counts(graph.nodes[p]) for p in graph.predecessors(name)]
        elif isinstance(node, Conv | Dense | Pool) and node.neuron is not None:
            parts = [counts(node)]
        else:
            continue
        stored, nnz = (sum(c) for c in zip(*parts, strict=True))
        out[name] = stored / nnz if nnz else 1.0
    return out


_CHUNK_ELEMENTS = 1 << 20  # (samples x steps x widest layer) per chunk: stays in L2/L3
# graded (sigma-delta) graphs: their per-layer calls cost more than a cache miss (PilotNet SDNN, batch
# 64: 0.91 ms CPU per sample-step at 2**20, 0.68 at 2**21, 0.66 at 2**22)
_GRADED_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class LayerTrace:
    """One neuron layer of a fixed-point graph, every step (:func:`trace_layers`).

    ``spikes`` ``(N, *shape, T)`` int8, as :attr:`SimResult.layers` and Lava's sink on the layer's
    output port record them (every synapse's one step of latency included, docs/loihi2.md §2.5);
    ``u``, ``v`` ``(N, *shape, T)`` int64: the state at the end of each step (``v`` after its reset),
    what Lava's ``Monitor`` reads from ``lif.u`` / ``lif.v``.
    """

    spikes: np.ndarray
    u: np.ndarray | None
    v: np.ndarray | None
    #: A sigma-delta layer (docs/loihi2.md §2.7; ``u``, ``v`` are ``None`` then, ``spikes`` its int32
    #: payloads): the states Lava's sigma-delta models hold at the end of each step, ``(N, *shape, T)``
    #: int64 (a ``Sigma`` has ``sigma`` only, a ``Delta`` no ``sigma``).
    sigma: np.ndarray | None = None
    act: np.ndarray | None = None
    residue: np.ndarray | None = None
    error: np.ndarray | None = None


def trace_layers(graph: Graph, x: np.ndarray, layers=None) -> dict[str, LayerTrace]:
    """Every neuron layer's spikes, ``u`` and ``v`` at every step, by the numpy reference.

    ``graph``: fixed point; ``x``: ``(N, *input_shape, T)`` 0/1 spikes. Runs :class:`Interpreter`
    on the whole batch (memory ``N x T x`` neurons ``x 8`` bytes per state), never the compiled
    kernels, which keep no state history; their spikes are ``simulate(graph, x, record=True).layers``.
    Keys: the neuron layers' node names, in graph order; ``layers`` (names) keeps only those (the
    others' state is never stored).
    """
    graph.verify()
    if graph.precision != "fixed":
        raise UsageError("trace_layers needs a fixed-point graph; compile it for a target first")
    s_in = check_input(graph, x)
    interp = Interpreter(graph, True, np.float64)
    interp.states = {}
    interp.traced = None if layers is None else frozenset(layers)
    run = interp.run(s_in, record=True)
    out = {}
    for name, spikes in run.layers.items():
        if name not in interp.states:
            continue
        st = interp.states[name]
        if is_graded(graph.nodes[name].neuron):
            moved = {k: np.moveaxis(a, 1, -1).reshape(spikes.shape) for k, a in st.items()}
            out[name] = LayerTrace(spikes, None, None, **moved)
            continue
        v = np.where(np.moveaxis(spikes, -1, 1) != 0, 0, st["v"])  # reset v only (§2.1)
        out[name] = LayerTrace(spikes, np.moveaxis(st["u"], 1, -1), np.moveaxis(v, 1, -1))
    return out


def _merge(parts: list[ChunkResult], n: int, t: int, record: bool) -> SimResult:
    """The chunks' results as one :class:`SimResult` (outputs and records concatenated, counts
    summed)."""
    first = parts[0]
    output = first.output if len(parts) == 1 else np.concatenate([p.output for p in parts])
    layers = None
    if record:
        layers = {k: np.concatenate([p.layers[k] for p in parts]) for k in first.layers}
    return SimResult(
        output=output,
        spikes={k: sum(p.spikes[k] for p in parts) for k in first.spikes},
        synops={k: sum(p.synops[k] for p in parts) for k in first.synops},
        neurons=first.neurons,
        batch=n,
        steps=t,
        cores=first.cores,
        layers=layers,
    )
