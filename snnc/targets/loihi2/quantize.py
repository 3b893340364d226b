"""``quantize``: float graph -> Loihi 2 fixed point (``graph.meta["precision"] = "fixed"``).

Invariant: the result is a valid fixed-point graph (conventions of ``snnc.ir``): integer
weights with ``weight_exp = 0`` and effective values in [-256, 254] (netx reproduces them exactly
and Lava's 8-bit clip keeps them, docs/loihi2.md §1.5), integer ``vth`` mantissas in [1, 2**17 - 1]
(§4), integer bias mantissas in the 13-bit signed range [-4096, 4095] (§4; used ``<< 6``, netx
``bias_exp = 6``), 12-bit decays (unchanged). A fixed-point input is returned unchanged (so the
pass is idempotent).

Per population (a Conv/Dense with neuron, or an ``Add`` with all the synapse-only nodes feeding it)
one real scale ``S`` maps float units to integers: ``w_int = round(w * S)``, ``vth = round(theta *
S)``, ``bias = round(b * S)``. The fixed neuron (docs/loihi2.md §2.6) then computes ``64 * S`` times
the float ``u`` and ``v`` up to rounding, so spikes agree wherever ``v`` is not within rounding of
the threshold. Spikes are binary, so every population's scale is independent of the others. ``S``
is the largest scale that keeps

- ``max |w_int| <= 254`` (8-bit weights; this is the binding limit in practice),
- ``vth <= 2**17 - 1`` and ``|bias| <= 4095``,
- ``|u| < 2**23``: ``u`` wraps at 24 bits (§2.1), a catastrophic error; with every input spiking
  each step ``|u| <= R * 4096 / current_decay`` where ``R`` is the largest per-channel sum of
  positive (or negative) weights, so ``S <= 2**17 * current_decay / (4096 * R)`` rules wrapping out
  (not bounded when ``current_decay == 0``: a pure integrator may wrap whatever the scale).

netx traps avoided (§1.5): a dense matrix with no positive weight and an odd value would be zeroed
by Lava's truncation, so such a matrix is rounded to even integers instead (and netx reproduces it
only when its minimum is exactly -254, as when the weight bound sets the scale; otherwise
``meta["quant"]["netx_exact"]`` is False and a note says so); a channel (row) or an input
channel (column, or ``C*H*W`` block after a Flatten) whose float weights are not all zero never
rounds to all zeros (its largest weight keeps the smallest non-zero mantissa), so a live channel
stays connected and ``remove_dead`` finds nothing new after quantization. A dense layer whose float
weights are all zero is noted (netx cannot load it; the ``loihi2`` emitter must refuse it).

A Pool (sum of binary spikes times one tap weight ``w`` against ``theta``) is quantized exactly
when a small integer ``m`` makes ``m * theta / w`` an integer: weight ``m``, vth ``m * theta / w``
(the default weight 1 / threshold 0.5 becomes weight 2 / vth 1).

Per-layer quantization error goes to ``node.meta["quant"]``: the scale, the bound that set it, the
relative weight RMSE ``||w_int/S - w|| / ||w||``, the relative threshold error, the largest bias
error (float units), the number of clipped biases, and the weight bits (magnitude bits + sign).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snnc import ir
from snnc.compile.passes import note
from snnc.errors import SnncError
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_UNITY, STATE_WRAP
from snnc.targets.loihi2.spec import BIAS_MAX, BIAS_MIN, U_LIMIT, VTH_MAX, W_MAX, W_MIN


def _row_sums(w: np.ndarray) -> np.ndarray:
    flat = w.reshape(w.shape[0], -1)
    return np.maximum(np.clip(flat, 0, None).sum(1), np.clip(-flat, 0, None).sum(1))


def _choose_scale(weights: list[np.ndarray], neuron: ir.CubaLIF, bias: np.ndarray | None):
    bounds = {}
    wmax = max(float(np.abs(w).max()) if w.size else 0.0 for w in weights)
    if wmax > 0:
        bounds["weight"] = W_MAX / wmax
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


def _round_weights(w: np.ndarray, s: float, even: bool, block: int, col_axis: int) -> np.ndarray:
    unit = 2 if even else 1
    q = unit * np.round(w * s / unit)
    q = np.clip(q, W_MIN, W_MAX)
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
        return np.moveaxis(qc, 0, 1)
    return qc.transpose(1, 0, 2).reshape(w.shape)


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
    m = int(np.abs(q).max()) if q.size else 0
    return max(1, m.bit_length()) + int(q.size > 0 and q.min() < 0)


def _dense_block(graph: ir.Graph, shapes, name: str) -> int:
    pred = graph.predecessors(name)[0]
    if isinstance(graph.nodes[pred], ir.Flatten):
        src = shapes[graph.predecessors(pred)[0]]
        return int(np.prod(src[1:])) if len(src) > 1 else 1
    return 1


def _quantize_pool(node: ir.Pool) -> tuple[ir.Pool, dict]:
    w, theta = float(node.weight), float(node.neuron.threshold)
    for m in range(1, W_MAX + 1):
        vth = m * theta / w
        if abs(vth - round(vth)) < 1e-9 and 1 <= round(vth) <= VTH_MAX:
            s, exact = m / w, True
            break
    else:
        s, exact = W_MAX / w, False
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


def _round_population(graph, shapes, name, members, weights, neuron, s, which, notes):
    """Round every member's weights at scale ``s``, shrinking ``s`` until ``u`` cannot wrap.

    Returns ``(rounded weights, even-rounded flags, scale, bound that set it)``.
    """
    shrink = 0
    while True:
        qs, evens = [], []
        for m, w in zip(members, weights, strict=True):
            dense = isinstance(graph.nodes[m], ir.Dense)
            block = _dense_block(graph, shapes, m) if dense else 1
            q = _round_weights(w, s, False, block, col_axis=1)
            # no positive weight left after rounding: an odd value would make Lava zero the
            # matrix (§1.5), so round to even instead
            even = dense and q.size > 0 and q.max() <= 0
            if even:
                q = _round_weights(w, s, True, block, col_axis=1)
            qs.append(q)
            evens.append(even)
        # rounding (up to 1 per synapse in even mode) may push u past 24 bits: shrink the scale
        if neuron.current_decay == 0 or _u_ok(qs, neuron.current_decay):
            return qs, evens, s, which
        if shrink == 200:  # only the kept non-zero mantissas are left: cannot do better
            notes.append(f"{name}: u may exceed 24 bits if every input spikes at once")
            return qs, evens, s, which
        s = _exact_threshold_scale(s * 0.97, float(neuron.threshold))
        shrink += 1
        which = "u_range"


def _member_updates(graph, name, members, weights, qs, evens, s, which, new, notes):
    """The members with their rounded weights (into ``new``); notes on netx's traps (§1.5).

    Returns ``(relative weight RMSE, weight bits, netx_exact)``.
    """
    err_num = err_den = 0.0
    bits = 0
    netx_exact = True
    for m, w, q, even in zip(members, weights, qs, evens, strict=True):
        mn = graph.nodes[m]
        dense = isinstance(mn, ir.Dense)
        if even and np.any(q) and q.min() != -W_MAX:
            # netx scales an all-non-positive matrix to min -256 and Lava's inhibitory clip and
            # truncation then change it unless its minimum is exactly -254 (§1.5, checked with
            # the real functions)
            netx_exact = False
            notes.append(
                f"{m}: all weights <= 0 and their minimum is not -254 (scale set by {which}); "
                "netx will not "
                "reproduce this layer exactly (docs/loihi2.md §1.5)"
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
    return rmse, bits, netx_exact


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
    s, which = _choose_scale(weights, neuron, bias)
    s = _exact_threshold_scale(s, float(neuron.threshold))
    qs, evens, s, which = _round_population(graph, shapes, name, members, weights, neuron, s, which, notes)
    rmse, bits, netx_exact = _member_updates(graph, name, members, weights, qs, evens, s, which, new, notes)
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


def quantize(graph: ir.Graph) -> ir.Graph:
    """Quantize a float graph to Loihi 2 fixed point (see the module docstring)."""
    if graph.precision == "fixed":
        return graph
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
