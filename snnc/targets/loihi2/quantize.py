"""``quantize``: float graph -> Loihi 2 fixed point (``graph.meta["precision"] = "fixed"``).

Invariant: the result is a valid fixed-point graph (conventions of ``snnc.ir``) whose every synapse
fits Loihi 2's 8-bit weight field: integer weights with ``weight_exp = 0`` that Lava's own
``truncate_weights(clip_weights(w, mode, 8), mode, 8)`` leaves unchanged (docs/loihi2.md §1.5,
§2.2; ``lava/utils/weightutils.py``), i.e. per sign mode (Lava's ``determine_sign_mode`` of the
integers)

- excitatory (all >= 0): integers in [0, 255],
- inhibitory (all <= 0): integers in [-255, 0] (a Dense: even values in [-254, 0], see below),
- mixed: even integers in [-256, 254] (8 bits with the sign; the truncation drops bit 0),

for Dense and Conv alike (netx hands conv weights to Lava raw with ``num_weight_bits = 8``,
§1.4; Lava's CPU conv model ignores it, §2.3, but the chip does not). Dense matrices also come out
of netx's ``optimize_weight_bits`` and Lava's clip/truncate exactly, with ``num_weight_bits <= 8``
(checked with :func:`~snnc.targets.loihi2.netx.netx_dense_weights`). ``weight_exp`` stays 0:
netx derives a dense layer's exponent from its integer weights, so the effective weights of a
netx file are always those integers, and Lava's conv ignores the exponent. Further: integer
``vth`` mantissas in [1, 2**17 - 1] (§4), integer bias mantissas in the 13-bit signed range
[-4096, 4095] (§4; used ``<< 6``, netx ``bias_exp = 6``), 12-bit decays (unchanged). A
fixed-point input is returned unchanged (so the pass is idempotent).

Per population (a Conv/Dense with neuron, or an ``Add`` with all the synapse-only nodes feeding it)
one real scale ``S`` maps float units to integers: ``w_int = round(w * S)`` (to even integers
where the sign mode asks for it), ``vth = round(theta * S)``, ``bias = round(b * S)``. The fixed
neuron (docs/loihi2.md §2.6) then computes ``64 * S`` times the float ``u`` and ``v`` up to
rounding, so spikes agree wherever ``v`` is not within rounding of the threshold. Spikes are
binary, so every population's scale is independent of the others. ``S`` is the largest scale that
keeps

- every member's weights in its sign mode's range (the float weights' signs: ``255 / max`` when
  all >= 0, ``255 / |min|`` (a Dense: 254) when all <= 0, else ``min(254 / max, 256 / |min|)``);
  this is the binding limit in practice,
- ``vth <= 2**17 - 1`` and ``|bias| <= 4095``,
- ``|u| < 2**23``: ``u`` wraps at 24 bits (§2.1), a catastrophic error; with every input spiking
  each step ``|u| <= R * 4096 / current_decay`` where ``R`` is the largest per-channel sum of
  positive (or negative) weights, so ``S <= 2**17 * current_decay / (4096 * R)`` rules wrapping out
  (not bounded when ``current_decay == 0``: a pure integrator may wrap whatever the scale).

A mixed layer whose positive (or negative) weights all round to zero changes sign mode; its
integers are then clipped into the new mode's range (at most -254). netx traps avoided (§1.5): a
dense matrix with no positive weight is rounded to even integers (netx calls one with a zero
"mixed", and Lava then zeroes odd values above 128 in magnitude), and one whose minimum is minus a
power of two is altered by netx and Lava's clip to -255; the scale is lowered (up to 8 steps of 3
%) until netx reproduces every dense member exactly, else ``meta["quant"]["netx_exact"]`` is False
and a note says so. A channel (row) or an input channel (column, or ``C*H*W`` block after a
Flatten) whose float weights are not all zero never rounds to all zeros (its largest weight keeps
the smallest non-zero integer of its mode), so a live channel stays connected and ``remove_dead``
finds nothing new after quantization. A dense layer whose float weights are all zero is noted
(netx cannot load it; the ``loihi2`` emitter must refuse it).

A Pool (sum of binary spikes times one tap weight ``w`` against ``theta``) is quantized exactly
when a small integer ``m`` makes ``m * theta / w`` an integer: weight ``m``, vth ``m * theta / w``
(the default weight 1 / threshold 0.5 becomes weight 2 / vth 1).

Per-layer quantization error goes to ``node.meta["quant"]``: the scale, the bound that set it, the
relative weight RMSE ``||w_int/S - w|| / ||w||``, the relative threshold error, the largest bias
error (float units), the number of clipped biases, and ``weight_bits``: the deployed bits per
synapse (at most 8): the magnitude bits in an excitatory or inhibitory layer, the bits of the
signed mantissa ``w_int / 2`` in a mixed one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snnc import ir
from snnc.compile.passes import note
from snnc.errors import SnncError
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_UNITY, STATE_WRAP
from snnc.targets.loihi2.netx import netx_dense_weights
from snnc.targets.loihi2.spec import (
    BIAS_MAX,
    BIAS_MIN,
    U_LIMIT,
    VTH_MAX,
    W_EXC_MAX,
    W_INH_MIN,
    W_MAX,
    W_MIN,
    weight_field_problem,
    weight_sign_mode,
)

_NETX_TRIES = 8  # scale steps tried to make a dense matrix exact through netx (§1.5)


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The integers one member's weights round to: multiples of ``unit`` in ``[lo, hi]``."""

    unit: int
    lo: int
    hi: int

    def bound(self, w: np.ndarray) -> float:
        """The largest scale that keeps ``round(w * scale)`` in ``[lo, hi]`` (inf if ``w`` is 0)."""
        pos, neg = float(max(w.max(initial=0.0), 0.0)), float(max(-w.min(initial=0.0), 0.0))
        return min(self.hi / pos if pos > 0 else math.inf, -self.lo / neg if neg > 0 else math.inf)


def _grid(w: np.ndarray, dense: bool) -> _Grid:
    """The 8-bit grid of a member with float weights ``w`` (its sign mode, docs/loihi2.md §1.5)."""
    mode = weight_sign_mode(w)
    if mode == "excitatory":
        return _Grid(1, 0, W_EXC_MAX)
    if mode == "inhibitory":
        # netx calls a dense matrix with a zero "mixed" and Lava "inhibitory": odd values above
        # 128 in magnitude are then zeroed (§1.5), so a dense one keeps to even values
        return _Grid(2, -W_MAX, 0) if dense else _Grid(1, W_INH_MIN, 0)
    return _Grid(2, W_MIN, W_MAX)


def _row_sums(w: np.ndarray) -> np.ndarray:
    flat = w.reshape(w.shape[0], -1)
    return np.maximum(np.clip(flat, 0, None).sum(1), np.clip(-flat, 0, None).sum(1))


def _choose_scale(weights: list[np.ndarray], grids: list[_Grid], neuron: ir.CubaLIF, bias):
    bounds = {}
    wbound = min(g.bound(w) for w, g in zip(weights, grids, strict=True))
    if wbound < math.inf:
        bounds["weight"] = wbound
    bounds["threshold"] = VTH_MAX / float(neuron.threshold)
    if bias is not None and np.any(bias != 0):
        bounds["bias"] = BIAS_MAX / float(np.abs(bias).max())
    if neuron.current_decay > 0:
        r = float(np.max(sum(_row_sums(w) for w in weights)))
        if r > 0:
            # +0.5 per synapse of rounding: stay 2% under the limit
            bounds["u_range"] = 0.98 * U_LIMIT * neuron.current_decay / (DECAY_UNITY * r)
    which = min(bounds, key=bounds.get)
    return bounds[which], which


def _round_weights(w: np.ndarray, s: float, grid: _Grid, block: int, col_axis: int) -> np.ndarray:
    unit = grid.unit
    q = unit * np.round(w * s / unit)
    q = np.clip(q, grid.lo, grid.hi)
    # a row (output channel) that is live in float must stay live in fixed point
    flat_w, flat_q = w.reshape(w.shape[0], -1), q.reshape(q.shape[0], -1).copy()
    for r in np.nonzero(~np.any(flat_q != 0, axis=1) & np.any(flat_w != 0, axis=1))[0]:
        j = int(np.argmax(np.abs(flat_w[r])))
        flat_q[r, j] = unit * np.sign(flat_w[r, j])
    q = flat_q.reshape(w.shape)
    # same for an input channel (conv axis 1; dense column blocks of size ``block``)
    if col_axis == 1 and w.ndim == 4:
        wc, qc = np.moveaxis(w, 1, 0), np.moveaxis(q, 1, 0).copy()
    else:
        cin = w.shape[1] // block
        wc = w.reshape(w.shape[0], cin, block).transpose(1, 0, 2)
        qc = q.reshape(w.shape[0], cin, block).transpose(1, 0, 2).copy()
    wc2, qc2 = wc.reshape(wc.shape[0], -1), qc.reshape(qc.shape[0], -1)
    for c in np.nonzero(~np.any(qc2 != 0, axis=1) & np.any(wc2 != 0, axis=1))[0]:
        j = int(np.argmax(np.abs(wc2[c])))
        qc2[c, j] = unit * np.sign(wc2[c, j])
    qc = qc2.reshape(qc.shape)
    if col_axis == 1 and w.ndim == 4:
        q = np.moveaxis(qc, 0, 1)
    else:
        q = qc.transpose(1, 0, 2).reshape(w.shape)
    if weight_field_problem(q) is not None:
        # a mixed layer whose positive weights all rounded to zero is inhibitory: -256 leaves
        # its range [-255, 0] (a no-op otherwise: even values in [-254, 254] fit every mode)
        q = np.clip(q, -W_MAX, W_MAX)
    return q


def _exact_threshold_scale(s: float, theta: float) -> float:
    """The largest scale ``<= s`` that makes ``theta * scale`` an integer (so ``vth`` is exact).

    Every spike depends on ``v > theta``; an error in the threshold shifts every neuron's firing the
    same way (measured: a 0.2 % larger ``vth`` gave about 2 % fewer spikes in a BN-normalized conv
    layer), while weight rounding errors are unbiased. Lowering the scale by less than one part in
    ``theta * s`` keeps every bound.
    """
    vth = math.floor(theta * s)
    return vth / theta if vth >= 1 else s


def _u_ok(qs: list[np.ndarray], current_decay: int) -> bool:
    """|u| stays below 2**23 with every input spiking every step (steady state R * 4096 / decay)."""
    r = float(np.max(sum(_row_sums(q) for q in qs)))
    return r * DECAY_UNITY / current_decay * (1 << ACTIVATION_SHIFT) < STATE_WRAP


def _bits(q: np.ndarray) -> int:
    """Deployed bits per synapse: the magnitude bits in an excitatory or inhibitory matrix, the
    two's-complement bits of the mantissa ``q / 2`` in a mixed one (docs/loihi2.md §1.5)."""
    if not q.size:
        return 1
    mode = weight_sign_mode(q)
    if mode != "mixed":
        return max(1, int(np.abs(q).max()).bit_length())
    hi, lo = int(q.max()) // 2, int(q.min()) // 2
    return 1 + max(hi.bit_length(), (-lo - 1).bit_length())


def _netx_exact(q: np.ndarray) -> bool:
    """netx + Lava reproduce the dense integers ``q`` exactly (an all-zero matrix counts as exact:
    it is noted apart)."""
    if not np.any(q):
        return True
    stored, exp = netx_dense_weights(q)
    got = np.floor(stored * 2.0**exp) if exp < 0 else stored * 2**exp
    return bool(np.array_equal(got, q))


def _dense_block(graph: ir.Graph, shapes, name: str) -> int:
    pred = graph.predecessors(name)[0]
    if isinstance(graph.nodes[pred], ir.Flatten):
        src = shapes[graph.predecessors(pred)[0]]
        return int(np.prod(src[1:])) if len(src) > 1 else 1
    return 1


def _quantize_pool(node: ir.Pool) -> tuple[ir.Pool, dict]:
    w, theta = float(node.weight), float(node.neuron.threshold)
    for m in range(1, W_EXC_MAX + 1):
        vth = m * theta / w
        if abs(vth - round(vth)) < 1e-9 and 1 <= round(vth) <= VTH_MAX:
            s, exact = m / w, True
            break
    else:
        s, exact = W_EXC_MAX / w, False
    wq, vth = round(w * s), max(1, round(theta * s))
    bias = node.neuron.bias
    bq = None if bias is None else np.clip(np.round(bias * s), BIAS_MIN, BIAS_MAX)
    neuron = dataclasses.replace(node.neuron, threshold=int(vth), bias=bq)
    info = {
        "scale": s,
        "limited_by": "exact" if exact else "weight",
        "weight_rmse_rel": 0.0 if exact else abs(wq / s - w) / abs(w),
        "threshold_rel_err": abs(vth / s - theta) / theta,
        "weight_bits": _bits(np.array([wq])),
    }
    return ir.replace(node, weight=float(wq), neuron=neuron, meta={"quant": info}), info


# -- one population: its members' weights, threshold and bias under one scale ---------------------
def _check_folded(graph: ir.Graph) -> None:
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Conv | ir.Dense) and node.bn is not None:
            raise SnncError(
                f"{name}: batch-norm is not folded, so it cannot be quantized; run fold_bn "
                "first (see its notes for why it declined)"
            )


def _population_members(graph: ir.Graph, name: str, node: ir.Node) -> list[str] | None:
    """The nodes whose weights share ``name``'s scale: the synapses feeding an ``Add``, a Conv or
    Dense with its own neuron; ``None`` for a node that is not a (non-pool) population."""
    if isinstance(node, ir.Add):
        return graph.predecessors(name)
    if isinstance(node, ir.Conv | ir.Dense) and node.neuron is not None:
        return [name]
    return None


def _round_population(graph, shapes, name, members, weights, grids, neuron, s, which, notes):
    """Round every member's weights at scale ``s``, shrinking ``s`` until ``u`` cannot wrap and
    netx reproduces every dense member (§1.5; given up after ``_NETX_TRIES`` steps).

    Returns ``(rounded weights, scale, bound that set it, netx exact)``.
    """
    shrink = netx_tries = 0
    first_u_ok = None
    while True:
        qs = []
        for m, w, grid in zip(members, weights, grids, strict=True):
            dense = isinstance(graph.nodes[m], ir.Dense)
            block = _dense_block(graph, shapes, m) if dense else 1
            qs.append(_round_weights(w, s, grid, block, col_axis=1))
        # rounding (up to 1 per synapse, 2 on an even grid) may push u past 24 bits: shrink
        if neuron.current_decay != 0 and not _u_ok(qs, neuron.current_decay):
            if shrink == 200:  # only the kept non-zero mantissas are left: cannot do better
                notes.append(f"{name}: u may exceed 24 bits if every input spikes at once")
                return qs, s, which, _all_netx_exact(graph, members, qs)
            s = _exact_threshold_scale(s * 0.97, float(neuron.threshold))
            shrink += 1
            which = "u_range"
            continue
        if _all_netx_exact(graph, members, qs):
            return qs, s, which, True
        if first_u_ok is None:
            first_u_ok = (qs, s, which)
        if netx_tries == _NETX_TRIES:  # keep the best scale; the note says netx alters it
            qs, s, which = first_u_ok
            return qs, s, which, False
        s = _exact_threshold_scale(s * 0.97, float(neuron.threshold))
        netx_tries += 1
        which = "netx"


def _all_netx_exact(graph, members, qs) -> bool:
    return all(
        _netx_exact(q) for m, q in zip(members, qs, strict=True) if isinstance(graph.nodes[m], ir.Dense)
    )


def _member_updates(graph, name, members, weights, qs, s, new, notes):
    """The members with their rounded weights (into ``new``); notes on netx's traps (§1.5).

    Returns ``(relative weight RMSE, weight bits)``.
    """
    err_num = err_den = 0.0
    bits = 0
    for m, w, q in zip(members, weights, qs, strict=True):
        mn = graph.nodes[m]
        dense = isinstance(mn, ir.Dense)
        if dense and not _netx_exact(q):
            notes.append(
                f"{m}: netx will not reproduce this layer exactly: all weights <= 0 and the "
                "minimum is minus a power of two (docs/loihi2.md §1.5)"
            )
        if dense and not np.any(q):
            notes.append(
                f"{m}: every weight is zero; netx cannot load an all-zero dense layer "
                "(docs/loihi2.md §1.5)"
            )
        err_num += float(((q / s - w) ** 2).sum())
        err_den += float((w**2).sum())
        bits = max(bits, _bits(q))
        wmeta = {} if m == name else {"quant": {"scale": s, "group": name}}
        new[m] = ir.replace(new.get(m, mn), weight=q, weight_exp=0, meta=wmeta)
    rmse = float(np.sqrt(err_num / err_den)) if err_den > 0 else 0.0
    return rmse, bits


def _quantize_bias(bias: np.ndarray | None, s: float, name: str, notes: list[str]):
    """``(bias mantissas, number clipped, largest error in float units)`` at scale ``s``."""
    if bias is None:
        return None, 0, 0.0
    raw = np.round(bias * s)
    bq = np.clip(raw, BIAS_MIN, BIAS_MAX)
    clipped = int((raw != bq).sum())
    berr = float(np.abs(bq / s - bias).max()) if bias.size else 0.0
    if clipped:
        notes.append(
            f"{name}: {clipped} bias value(s) clipped to the 13-bit range "
            f"[{BIAS_MIN}, {BIAS_MAX}] (docs/loihi2.md §4)"
        )
    return bq, clipped, berr


def _quantize_population(graph, shapes, name, members, new, notes) -> None:
    """Quantize the population ``name`` (its neuron and its members' weights) into ``new``."""
    node = graph.nodes[name]
    neuron = node.neuron
    weights = [graph.nodes[m].weight * 2.0 ** graph.nodes[m].weight_exp for m in members]
    bias = neuron.bias
    grids = [_grid(w, isinstance(graph.nodes[m], ir.Dense)) for m, w in zip(members, weights, strict=True)]
    s, which = _choose_scale(weights, grids, neuron, bias)
    s = _exact_threshold_scale(s, float(neuron.threshold))
    qs, s, which, netx_exact = _round_population(
        graph, shapes, name, members, weights, grids, neuron, s, which, notes
    )
    rmse, bits = _member_updates(graph, name, members, weights, qs, s, new, notes)
    vth = int(min(max(1, round(float(neuron.threshold) * s)), VTH_MAX))
    bq, clipped, berr = _quantize_bias(bias, s, name, notes)
    info = {
        "scale": s,
        "limited_by": which,
        "weight_rmse_rel": rmse,
        "threshold_rel_err": abs(vth / s - float(neuron.threshold)) / float(neuron.threshold),
        "bias_max_abs_err": berr,
        "bias_clipped": clipped,
        "weight_bits": bits,
        "netx_exact": netx_exact,
    }
    qneuron = dataclasses.replace(neuron, threshold=vth, bias=bq)
    new[name] = ir.replace(new.get(name, node), neuron=qneuron, meta={"quant": info})


def _unreachable_thresholds(graph: ir.Graph) -> ir.Graph:
    """A fixed graph's CUBA-LIF whose threshold mantissa is beyond the 17-bit ``vth`` *and* beyond
    every voltage (``vth << 6 > 2**23 - 1``: netx's default for a layer without a neuron, ``1 << 17``,
    and slayer's ``(1 << 18) - 1``, docs/loihi2.md §1): a non-spiking readout. Loihi 2 cannot hold that
    mantissa, so it is deployed as ``VTH_MAX``, the largest one; the layer then spikes only where
    its ``v`` exceeds ``VTH_MAX << 6`` (8388544 of at most 8388607), written in the report's notes."""
    new, notes = {}, []
    for name, node in graph.nodes.items():
        neuron = getattr(node, "neuron", None)
        if not isinstance(neuron, ir.CubaLIF):
            continue
        vth = float(neuron.threshold)
        if vth > VTH_MAX and int(vth) << ACTIVATION_SHIFT > STATE_WRAP - 1:
            new[name] = ir.replace(node, neuron=dataclasses.replace(neuron, threshold=VTH_MAX))
            notes.append(
                f"{name}: threshold mantissa {int(vth)} (a non-spiking readout: above every 24-bit "
                f"voltage) is beyond Loihi 2's 17-bit vth; deployed as {VTH_MAX}, so the layer spikes "
                f"only if its v exceeds {VTH_MAX << ACTIVATION_SHIFT}"
            )
    return note(graph.replace(**new), *notes) if new else graph


def quantize(graph: ir.Graph) -> ir.Graph:
    """Quantize a float graph to Loihi 2 fixed point (see the module docstring). A graph already in
    fixed point (a netx file) keeps its integers, but for unreachable thresholds
    (:func:`_unreachable_thresholds`)."""
    if graph.precision == "fixed":
        return _unreachable_thresholds(graph)
    _check_folded(graph)
    shapes = graph.shapes()
    new: dict[str, ir.Node] = {}
    notes: list[str] = []
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Pool):
            new[name], _ = _quantize_pool(node)
            continue
        members = _population_members(graph, name, node)
        if members is not None:
            _quantize_population(graph, shapes, name, members, new, notes)
    out = graph.replace(**new).with_meta(precision="fixed")
    return note(out, *notes)
