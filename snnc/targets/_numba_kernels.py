"""numba kernels of the compiled simulator; imported by :mod:`snnc.targets.kernels` only when numba
is installed. Module-level functions, so that numba's on-disk cache (``cache=True``) is reused
across processes (a kernel that calls a jitted closure is recompiled in every process)."""

# ruff: noqa: E501 - the kernels' arithmetic reads best on one line

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _add_rows(row, wt, idx, q, end):
    # row += sum of the weight rows wt[idx[q:end]]: eight rows per pass (the sums are loaded
    # and stored 8x less often), whole rows indexed from 0 (no slice bookkeeping; LLVM
    # vectorises the loop).
    acc = row.dtype.type
    while q + 8 <= end:
        w1, w2, w3, w4 = wt[idx[q]], wt[idx[q + 1]], wt[idx[q + 2]], wt[idx[q + 3]]
        w5, w6, w7, w8 = wt[idx[q + 4]], wt[idx[q + 5]], wt[idx[q + 6]], wt[idx[q + 7]]
        for o in range(row.shape[0]):
            row[o] += ((acc(w1[o]) + w2[o]) + (acc(w3[o]) + w4[o])) + (
                (acc(w5[o]) + w6[o]) + (acc(w7[o]) + w8[o])
            )
        q += 8
    while q < end:
        w1 = wt[idx[q]]
        for o in range(row.shape[0]):
            row[o] += w1[o]
        q += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _sum_step(row, short, wt, idx, q, end, wmax):
    # row = sum of the weight rows wt[idx[q:end]]: in int16 (twice the lanes per vector add),
    # widened once, when end - q spikes of at most wmax each cannot leave its range.
    if (end - q) * wmax < 32768:
        short[:] = 0
        _add_rows(short, wt, idx, q, end)
        for o in range(row.shape[0]):
            row[o] = short[o]
    else:
        row[:] = 0
        _add_rows(row, wt, idx, q, end)


@numba.njit(cache=True, nogil=True, inline="always")
def _wrap24(row):
    # Lava's conv wraps its output to signed 24 bits (§2.3).
    for j in range(row.shape[0]):
        row[j] = ((row[j] + 8388608) & 16777215) - 8388608


@numba.njit(cache=True, nogil=True)
def dense(s, wt, fan, wmax, out, synops, i0, i1):
    # Event-driven (Lava's Dense sums weight[:, s], §2.2): per step, the rows of the inputs
    # that spiked are added (_sum_step). SynOps are counted on the way (this loop reads every
    # input).
    n, t, m = s.shape
    idx = np.empty(t * m + 1, np.int32)  # the inputs that spiked, step by step
    ptr = np.zeros(t + 1, np.int64)
    short = np.zeros(wt.shape[1], np.int16)
    for i in range(i0, i1):
        c = 0
        ops = 0
        for k in range(t):
            for f in range(m):  # branch-free: a mispredicted branch costs more than a store
                idx[c] = f
                spiked = s[i, k, f] != 0
                c += spiked
                ops += fan[f] * spiked
            ptr[k + 1] = c
        synops[i] = ops
        for k in range(t):
            _sum_step(out[i, k], short, wt, idx, ptr[k], ptr[k + 1], wmax)


@numba.njit(cache=True, nogil=True, inline="always")
def _step_lists(xi, fan, idx, ptr, pos, per_step):
    # The spike lists of all steps of one sample held (M, T), steps last (the network input as
    # given), by a counting sort over each input's contiguous row of T steps instead of a strided
    # read per input and step: step k's inputs are idx[ptr[k]:ptr[k] + per_step[k]] (each list
    # has one spare slot for the branch-free writes). Returns the SynOps (spikes x fan-out).
    m, t = xi.shape
    per_step[:] = 0
    ops = 0
    for f in range(m):
        row = xi[f]
        c = 0
        for k in range(t):
            per_step[k] += row[k]
            c += row[k]
        ops += fan[f] * c
    for k in range(t):
        ptr[k + 1] = ptr[k] + per_step[k] + 1
        pos[k] = ptr[k]
    for f in range(m):
        row = xi[f]
        for k in range(t):  # branch-free: write, then advance only where f spiked
            idx[pos[k]] = f
            pos[k] += row[k]
    return ops


@numba.njit(cache=True, nogil=True)
def dense_steps_last(x, wt, fan, wmax, out, synops, i0, i1):
    # dense() for the network input, held (N, M, T): spike lists from _step_lists.
    n, m, t = x.shape
    idx = np.empty(t * m + t, np.int32)
    ptr = np.zeros(t + 1, np.int64)
    pos = np.zeros(t, np.int64)
    per_step = np.zeros(t, np.int64)
    short = np.zeros(wt.shape[1], np.int16)
    for i in range(i0, i1):
        synops[i] = _step_lists(x[i], fan, idx, ptr, pos, per_step)
        for k in range(t):
            _sum_step(out[i, k], short, wt, idx, ptr[k], ptr[k] + per_step[k], wmax)


@numba.njit(cache=True, nogil=True)
def conv_event_steps_last(x, c_in, wc, kt, groups, ip_ptr, ip_tap, ip_op, out, wrap, i0, i1):
    # conv_event() for the network input, held (N, M, T) in (C, H, W) order: spike lists from
    # _step_lists, then each spike adds its (channel, tap) weight row to the output positions
    # it reaches. out must be zero.
    n, m, t = x.shape
    hw = m // c_in
    o_all = wc.shape[1]
    og = o_all // groups
    cg = c_in // groups
    idx = np.empty(t * m + t, np.int32)
    ptr = np.zeros(t + 1, np.int64)
    pos = np.zeros(t, np.int64)
    per_step = np.zeros(t, np.int64)
    fan = np.zeros(m, np.int64)  # SynOps are counted by the caller
    for i in range(i0, i1):
        _step_lists(x[i], fan, idx, ptr, pos, per_step)
        for k in range(t):
            row = out[i, k]
            for q in range(ptr[k], ptr[k] + per_step[k]):
                # as conv_event's loop; kept inline: as a shared helper both ran ~45% slower
                f = idx[q]
                ch = f // hw
                p = f - ch * hw
                g = ch // cg
                r0 = (ch - g * cg) * kt
                c0 = g * og
                for e in range(ip_ptr[p], ip_ptr[p + 1]):
                    dst = row[ip_op[e] * o_all + c0 : ip_op[e] * o_all + c0 + og]
                    wv = wc[r0 + ip_tap[e], c0 : c0 + og]
                    for o in range(og):
                        dst[o] += wv[o]
            if wrap:
                _wrap24(row)


@numba.njit(cache=True, nogil=True)
def dense_dot(s, wd, out, i0, i1):
    # Few outputs and many spikes: a product of the spike row with each weight row is cheaper
    # than adding a short weight row per spike.
    n, t, m = s.shape
    for i in range(i0, i1):
        for k in range(t):
            srow = s[i, k]
            row = out[i, k]
            for o in range(wd.shape[0]):
                wr = wd[o]
                acc = 0
                for f in range(m):
                    acc += wr[f] * srow[f]
                row[o] = acc


@numba.njit(cache=True, nogil=True)
def conv_event(s, c_in, in_hwc, wc, kt, groups, ip_ptr, ip_tap, ip_op, out, wrap, i0, i1):
    # Scatter form, for sparse inputs: every input spike adds its weight row (input channel x
    # tap) to the C_out currents of each output position it reaches.
    n, t, m = s.shape
    hw = m // c_in
    o_all = wc.shape[1]
    og = o_all // groups
    cg = c_in // groups
    for i in range(i0, i1):
        for k in range(t):
            row = out[i, k]
            for p in range(hw):
                for ch in range(c_in):
                    if not s[i, k, p * c_in + ch if in_hwc else ch * hw + p]:
                        continue
                    g = ch // cg if groups > 1 else 0
                    r0 = (ch - g * cg) * kt
                    for e in range(ip_ptr[p], ip_ptr[p + 1]):
                        dst = row[ip_op[e] * o_all + g * og : ip_op[e] * o_all + g * og + og]
                        wv = wc[r0 + ip_tap[e], g * og : g * og + og]
                        for o in range(og):
                            dst[o] += wv[o]
            if wrap:
                _wrap24(row)


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def conv_gemm(s, c_in, h, w_in, in_hwc, wg, kh, kw, geo, groups, out, i0, i1):
    # Dense form (im2col), for busy inputs: per sample, P[(group, ch, tap), (step, position)]
    # holds the spike each output position sees through each tap; each output channel's
    # currents over all steps and positions are then long vectorised multiply-adds of weight
    # x P rows, in float32: exact, because the plan uses this kernel only while every sum
    # (and so every partial sum, fused or not) is an integer below 2**24.
    n, t, m = s.shape
    sy, sx, py, px, dy, dx, oh, ow = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7]
    o_all, rg8 = wg.shape  # rg8: (C_in / groups) x taps, padded to a multiple of 8
    kt = kh * kw
    n_op = oh * ow
    og = o_all // groups
    cg = c_in // groups
    tb = max(1, min(t, 40960 // (groups * rg8 * n_op)))  # steps per block: P stays in L2
    cols = tb * n_op
    pm = np.zeros((groups * rg8, cols), np.float32)  # entries off the input (padding) stay 0
    acc = np.empty((o_all, cols), np.float32)
    cstep = 1 if in_hwc else h * w_in  # input index = y * ystep + x * xstep + ch * cstep
    ystep = w_in * c_in if in_hwc else w_in
    xstep = c_in if in_hwc else 1
    for i in range(i0, i1):
        for k0 in range(0, t, tb):
            k1 = min(t, k0 + tb)
            cb = (k1 - k0) * n_op
            for ch in range(c_in):
                g = ch // cg
                for ky in range(kh):
                    oy0 = max(0, (py - ky * dy + sy - 1) // sy)  # first oy with y >= 0
                    oy1 = min(oh, (h - 1 + py - ky * dy) // sy + 1)
                    for kx in range(kw):
                        ox0 = max(0, (px - kx * dx + sx - 1) // sx)
                        ox1 = min(ow, (w_in - 1 + px - kx * dx) // sx + 1)
                        prow = pm[g * rg8 + (ch - g * cg) * kt + ky * kw + kx]
                        for k in range(k0, k1):
                            srow = s[i, k]
                            for oy in range(oy0, oy1):
                                src = (oy * sy - py + ky * dy) * ystep + ch * cstep
                                dst = (k - k0) * n_op + oy * ow
                                for ox in range(ox0, ox1):
                                    prow[dst + ox] = srow[src + (ox * sx - px + kx * dx) * xstep]
            for o in range(o_all):
                row = acc[o]
                row[:cb] = 0
                base = (o // og) * rg8
                w = wg[o]
                for r in range(0, rg8, 8):  # eight P rows per pass over the sums
                    w1, w2, w3, w4 = w[r], w[r + 1], w[r + 2], w[r + 3]
                    w5, w6, w7, w8 = w[r + 4], w[r + 5], w[r + 6], w[r + 7]
                    if (
                        w1 == 0
                        and w2 == 0
                        and w3 == 0
                        and w4 == 0
                        and w5 == 0
                        and w6 == 0
                        and w7 == 0
                        and w8 == 0
                    ):
                        continue
                    p1, p2, p3, p4 = pm[base + r], pm[base + r + 1], pm[base + r + 2], pm[base + r + 3]
                    p5, p6, p7, p8 = (
                        pm[base + r + 4],
                        pm[base + r + 5],
                        pm[base + r + 6],
                        pm[base + r + 7],
                    )
                    for j in range(cb):
                        row[j] += ((w1 * p1[j] + w2 * p2[j]) + (w3 * p3[j] + w4 * p4[j])) + (
                            (w5 * p5[j] + w6 * p6[j]) + (w7 * p7[j] + w8 * p8[j])
                        )
            dst = out[i, k0:k1].reshape(cb, o_all)  # (step, position) x channel: channels-last
            for c in range(cb):
                for o in range(o_all):
                    dst[c, o] = acc[o, c]


@numba.njit(cache=True, nogil=True)
def conv_lut(s, idx, lut, o_all, out, wrap, i0, i1):
    # Table form, for busy inputs: an output position's receptive field is cut into bytes of 8
    # (tap, channel) inputs, and each byte indexes a table holding the sums of the 8 weights for
    # every spike pattern (built once by the plan), so a position costs one vector add of its
    # group's output currents per 8 inputs instead of 8 multiply-adds. idx[op, q, b]: where bit
    # b of byte q of position op is in the step's spike row (a zero past the row for taps off
    # the input).
    n, t, m = s.shape
    n_op, nb, _ = idx.shape
    og = lut.shape[2]
    groups = o_all // og
    nq = nb // groups
    buf = np.zeros(m + 8, np.uint8)  # the step's spikes, then zeros
    acc = np.zeros(og, lut.dtype)
    for i in range(i0, i1):
        for k in range(t):
            src = s[i, k]
            for j in range(m):
                buf[j] = src[j]
            row = out[i, k]
            for op in range(n_op):
                for g in range(groups):
                    acc[:] = 0
                    for q in range(g * nq, (g + 1) * nq):
                        e = idx[op, q]
                        b = (
                            ((buf[e[0]] | (buf[e[1]] << 1)) | ((buf[e[2]] << 2) | (buf[e[3]] << 3)))
                            | ((buf[e[4]] << 4) | (buf[e[5]] << 5))
                            | ((buf[e[6]] << 6) | (buf[e[7]] << 7))
                        )
                        tb = lut[q, b]
                        for o in range(og):
                            acc[o] += tb[o]
                    row[op * o_all + g * og : op * o_all + g * og + og] = acc
            if wrap:
                _wrap24(row)


@numba.njit(cache=True, nogil=True)
def conv_lut_words(s, start, lut, o_all, out, wrap, i0, i1):
    # conv_lut when every byte's 8 inputs are 8 consecutive spikes from a multiple of 8 (channels-
    # last, 8k channels per group): a byte is read as one 64-bit word and packed by a multiply
    # (bit k of the top byte of x * 0x0102040810204080 is the low bit of x's byte k).
    # start[op, q]: the byte's first spike in the step's row (a zero word past it when off the
    # input).
    n, t, m = s.shape
    n_op, nb = start.shape
    og = lut.shape[2]
    groups = o_all // og
    nq = nb // groups
    buf = np.zeros((m + 15) // 8 * 8, np.uint8)
    w64 = buf.view(np.uint64)
    magic = np.uint64(0x0102040810204080)
    top = np.uint64(56)
    acc = np.zeros(og, lut.dtype)
    for i in range(i0, i1):
        for k in range(t):
            src = s[i, k]
            for j in range(m):
                buf[j] = src[j]
            row = out[i, k]
            for op in range(n_op):
                st = start[op]
                for g in range(groups):
                    acc[:] = 0
                    for q in range(g * nq, (g + 1) * nq):
                        tb = lut[q, (w64[st[q] >> 3] * magic) >> top]
                        for o in range(og):
                            acc[o] += tb[o]
                    row[op * o_all + g * og : op * o_all + g * og + og] = acc
            if wrap:
                _wrap24(row)


@numba.njit(cache=True, nogil=True)
def lif(a, b, keep_u, keep_v, vth, out, counts, i0, i1):
    # a[:, k] is the synapse's output at step k; the neuron receives it at k + 1 (§2.2, §2.5).
    # Two loops per step (current, then voltage and spikes): each touches few arrays, so
    # LLVM vectorises both. counts[i, j]: spikes of neuron j in sample i.
    n, t, m = a.shape
    w = 1 << 23
    u = np.empty(m, np.int64)
    v = np.empty(m, np.int64)
    for i in range(i0, i1):
        u[:] = 0
        v[:] = 0
        cnt = counts[i]
        for k in range(t):
            if k > 0:
                x = a[i, k - 1]
                for j in range(m):
                    d = u[j] * keep_u
                    uj = ((d + ((d >> 63) & 4095)) >> 12) + (np.int64(x[j]) << 6)  # toward 0
                    u[j] = uj - 2 * w * (uj > w) + 2 * w * (uj <= -w)  # Lava's 24-bit wrap
            row = out[i, k]
            for j in range(m):
                d = v[j] * keep_v
                vj = min(max(((d + ((d >> 63) & 4095)) >> 12) + u[j] + b[j], -w + 1), w - 1)
                sp = vj > vth
                row[j] = sp
                v[j] = vj * (1 - sp)  # reset v only
            for j in range(m):
                cnt[j] += row[j]


@numba.njit(cache=True, nogil=True)
def lif_f64(a, b, keep_u, keep_v, vth, out, counts, i0, i1):
    # lif with u and v held in float64 (AVX2 has no int64 multiply; float64 has 53 exact bits):
    # u * keep < 2**35 and the scale by 2**-12 are exact, trunc() is Lava's round toward zero,
    # and every sum stays below 2**53 when |a| < 2**46 (the plan checks), so each value equals
    # the int64 kernel's.
    n, t, m = a.shape
    w = float(1 << 23)
    ku = keep_u / 4096.0
    kv = keep_v / 4096.0
    th = float(vth)
    bf = b.astype(np.float64)
    u = np.empty(m, np.float64)
    v = np.empty(m, np.float64)
    for i in range(i0, i1):
        u[:] = 0.0
        v[:] = 0.0
        cnt = counts[i]
        for k in range(t):
            if k > 0:
                x = a[i, k - 1]
                for j in range(m):
                    uj = np.trunc(u[j] * ku) + np.float64(x[j]) * 64.0
                    u[j] = uj - 2.0 * w * (uj > w) + 2.0 * w * (uj <= -w)  # Lava's 24-bit wrap
            row = out[i, k]
            for j in range(m):
                vj = min(max(np.trunc(v[j] * kv) + u[j] + bf[j], -w + 1.0), w - 1.0)
                sp = vj > th
                row[j] = sp
                v[j] = vj * (1.0 - sp)  # reset v only
            for j in range(m):
                cnt[j] += row[j]


@numba.njit(cache=True, nogil=True)
def input_counts(x, counts, i0, i1):
    # counts[i, j]: spikes of input j in sample i, from x (N, M, T) as given (steps last).
    n, m, t = x.shape
    for i in range(i0, i1):
        for j in range(m):
            c = 0
            for k in range(t):
                c += x[i, j, k]
            counts[i, j] = c
