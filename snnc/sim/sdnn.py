"""Sigma-delta neurons and graded synapses: Lava's fixed-point ``lava.proc.sdn`` models, bit for bit.

The semantics, read from Lava 0.10.0 (``proc/sdn/models.py``, ``PyDeltaModelFixed``,
``PySigmaDeltaModelFixed``, ``PySigmaModelFixed``; docs/loihi2.md §2.7). Every state is an int32
numpy array there, so every sum wraps modulo 2**32 (``w32`` below); ``U = spike_exp + state_exp``,
``vth = threshold << U``, ``bias = bias_mantissa << U``::

    Delta:       x = w32(a_in << U)                       # the input layer's neurons
    SigmaDelta:  sigma = w32(sigma + a_in)
                 x = relu(w32(sigma + bias))              # ActivationMode.UNIT: no relu
    both:        delta = w32(x - act + residue)
                 s = delta where |delta| >= vth else 0    # cum_error: error = w32(error + delta),
                                                          #   test |error|, error = 0 where s != 0
                 residue = w32(delta - s) ; act = x
                 send s >> state_exp                      # arithmetic (floor) shift
    Sigma:       sigma = w32(sigma + a_in) ; send sigma

``|x|`` is numpy's int32 ``abs`` (``|-2**31| = -2**31``). A payload ``p`` reaches the next synapse
unchanged (``num_message_bits = 16`` in netx): a Dense sends ``w32(W @ p)`` shifted by
``weight_exp`` (int32 ``dot``: wraps at 32 bits, unlike the binary path's int64 ``sum``, §2.2); a Conv
sums in float64 (``scipy.signal.convolve2d``), casts to int32 and wraps to 24 bits (§2.3); a sum
outside int32 casts to ``-2**31`` on x86 (numpy's float->int32 cast), which wraps to 0. One step of
latency per synapse, as for spikes (§2.5).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from snnc.errors import SnncError
from snnc.sim.common import prepared

I32 = 1 << 31
MODES = {"delta": 0, "sigma_delta": 1, "sigma": 2}


def w32(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values to signed 32 bits (numpy's int32 arithmetic), in place when possible."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + I32) & (2 * I32 - 1)) - I32


def abs32(x: np.ndarray) -> np.ndarray:
    """numpy's int32 ``abs``: ``|-2**31|`` stays ``-2**31``."""
    a = np.abs(x)
    return np.where(x == -I32, -I32, a)


def sdnn_operands(name: str, neuron, shape: tuple[int, ...]) -> tuple[np.ndarray, int, int, int]:
    """``(bias (M,) int64, vth, up, down)`` as Lava holds them for a population of ``shape``:
    the bias and threshold mantissas ``<< (spike_exp + state_exp)``, wrapped to int32 (Lava keeps
    them in int32 Vars); ``up = spike_exp + state_exp``, ``down = state_exp``."""
    up, down = neuron.spike_exp + neuron.state_exp, neuron.state_exp
    m = int(np.prod(shape))
    b = np.zeros(m, np.int64)
    if neuron.bias is not None:
        bias = np.asarray(neuron.bias)
        if bias.size and not np.all(bias == np.round(bias)):
            raise SnncError(f"{name}: a sigma-delta bias must be integer mantissas")
        per = (shape[0],) + (1,) * (len(shape) - 1)
        b = np.ascontiguousarray(np.broadcast_to(bias.astype(np.int64).reshape(per), shape).reshape(m))
        b = w32(w32(b) << up)
    vth = int(w32(np.int64(int(neuron.threshold)) << up))
    return b, vth, up, down


def sdnn_fixed(name: str, cur: np.ndarray, neuron, trace: dict | None = None) -> np.ndarray:
    """The population's sigma-delta dynamics (module docstring) on its delayed input ``cur``
    ``(N, T, *shape)`` (int, taken modulo 2**32 as Lava's int32 port does): its payloads ``(N, T,
    *shape)`` int32. With ``trace`` given (the numpy loop), stores the ``sigma``, ``act``, ``residue``
    and ``error`` states at the end of each step ``(N, T, *shape)`` int64."""
    n, t = cur.shape[:2]
    shape = cur.shape[2:]
    b, vth, up, down = prepared(neuron, f"sdnn-{shape}", lambda: sdnn_operands(name, neuron, shape))
    a = cur.reshape(n, t, -1).astype(np.int32)  # wraps modulo 2**32
    if trace is None:
        from snnc.sim import kernels

        args = (MODES[neuron.mode], neuron.activation == "relu", neuron.cum_error, vth, up, down)
        out = kernels.sigma_delta(a, b, *args)
        if out is not None:
            return out.reshape(n, t, *shape)
    return _sdnn_numpy(a.astype(np.int64), b, neuron, vth, up, down, trace).reshape(n, t, *shape)


def _sdnn_numpy(a, b, neuron, vth, up, down, trace):
    n, t, m = a.shape
    sigma = np.zeros((n, m), np.int64)
    act = np.zeros_like(sigma)
    residue = np.zeros_like(sigma)
    error = np.zeros_like(sigma)
    out = np.empty((n, t, m), np.int32)
    mode, relu = neuron.mode, neuron.activation == "relu"
    for k in range(t):
        if mode == "delta":
            x = w32(a[:, k] << up)
        else:
            sigma = w32(sigma + a[:, k])
            if mode == "sigma":
                out[:, k] = sigma
                _record(trace, sigma=sigma)
                continue
            x = w32(sigma + b)
            if relu:
                x = np.maximum(x, 0)
        delta = w32(x - act + residue)
        if neuron.cum_error:
            error = w32(error + delta)
            s = np.where(abs32(error) >= vth, delta, 0)
            error = np.where(abs32(s) > 0, 0, error)
        else:
            s = np.where(abs32(delta) >= vth, delta, 0)
        residue = w32(delta - s)
        act = x
        out[:, k] = s >> down
        if mode == "delta":
            _record(trace, act=act, residue=residue, error=error)
        else:
            _record(trace, sigma=sigma, act=act, residue=residue, error=error)
    if trace is not None:
        for key in list(trace):
            trace[key] = np.stack(trace[key], 1)
    return out


def _record(trace: dict | None, **states: np.ndarray) -> None:
    if trace is None:
        return
    for key, v in states.items():
        trace.setdefault(key, []).append(v.copy())


# -- graded synapses ---------------------------------------------------------------------------
_EXACT = float(1 << 53)  # float64 sums of integers are exact below this
_EXACT32 = float(1 << 24)  # float32 sums likewise


class GradedWeights(NamedTuple):
    """A synapse's integer weights prepared once for graded input (:func:`graded_weights`):
    ``wsum`` the largest sum of ``|w|`` into one output; float32 / float64 / int64 copies, a dense
    layer's transposed ``(M, O)``."""

    wsum: float
    f32: np.ndarray
    f64: np.ndarray
    i64: np.ndarray


def graded_weights(weight: np.ndarray, dense: bool) -> GradedWeights:
    w = np.asarray(weight)
    wsum = float(np.abs(w.astype(np.float64)).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
    w = np.ascontiguousarray(w.T) if dense else w
    return GradedWeights(wsum, w.astype(np.float32), w.astype(np.float64), w.astype(np.int64))


def _max_abs(s: np.ndarray) -> float:
    return float(max(int(s.max(initial=0)), -int(s.min(initial=0))))


def graded_dense(s: np.ndarray, gw: GradedWeights, weight_exp: int) -> np.ndarray:
    """Lava's Dense on graded input: ``s`` ``(R, M)`` int payloads, ``gw`` its ``(O, M)`` integer
    weights (:func:`graded_weights`) -> ``(R, O)``: ``w32(W @ s)``, then ``<< weight_exp`` (wrapped)
    or ``>>`` it (floor). Sums in float32 while exact (every partial sum an integer below 2**24),
    else float64, else int64 (whose wrap modulo 2**64 the 32-bit wrap does not see)."""
    bound = _max_abs(s) * gw.wsum
    if bound < _EXACT32:
        cur = s.astype(np.float32) @ gw.f32
    elif bound < _EXACT:
        cur = s.astype(np.float64) @ gw.f64
    else:
        cur = s.astype(np.int64) @ gw.i64
    cur = cur.astype(np.int64)
    if bound >= I32:
        cur = w32(cur)
    e = int(weight_exp)
    if e > 0:
        cur = w32(cur << e)
    elif e < 0:
        cur >>= -e
    return cur.astype(np.int32)


def graded_conv(s: np.ndarray, gw: GradedWeights, conv) -> np.ndarray:
    """Lava's Conv on graded input: ``s`` ``(R, C, H, W)`` int payloads -> ``(R, C_out, H', W')``
    int32, the exact sum cast to int32 (``-2**31`` outside it) and wrapped to 24 bits.

    ``conv(x, w)``: a convolution of two float arrays of one dtype. The sums run in float32 (exact
    while every partial sum is an integer below 2**24): in one pass when ``max|s| * max_o sum|w_o|``
    is below 2**24, else on ``k``-bit pieces of the payloads (``s = sum_i p_i 2**(k i)``, each piece
    small enough), recombined in int64; in float64 when even one bit per piece would not fit.
    """
    wsum = gw.wsum
    smax = _max_abs(s)
    if smax * wsum < 1 << 23:  # no wrap can happen
        return conv(s.astype(np.float32), gw.f32).astype(np.int32)
    if smax * wsum < _EXACT32:
        total = conv(s.astype(np.float32), gw.f32).astype(np.int64)
    elif wsum * 2 < _EXACT32:
        k = int(np.floor(np.log2((_EXACT32 - 1) / wsum)))  # bits per piece: 2**k * wsum < 2**24
        rest, shift, total = s.astype(np.int64), 0, None
        while True:
            last = _max_abs(rest) * wsum < _EXACT32
            piece = rest if last else rest & ((1 << k) - 1)
            part = conv(piece.astype(np.float32), gw.f32).astype(np.int64) << shift
            total = part if total is None else total + part
            if last:
                break
            rest, shift = rest >> k, shift + k
    elif smax * wsum < _EXACT:
        total = conv(s.astype(np.float64), gw.f64).astype(np.int64)
    else:
        raise SnncError("graded conv sums reach 2**53; the weights are too large for exact sums")
    big = (total >= I32) | (total < -I32)
    out = ((total + (1 << 23)) & ((1 << 24) - 1)) - (1 << 23)
    out[big] = 0  # the int32 cast gives -2**31, whose 24-bit wrap is 0
    return out.astype(np.int32)
