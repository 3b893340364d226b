"""numba kernels of the compiled simulator; imported by :mod:`snnc.sim.kernels` only when numba
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
    # it reaches.
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
            row[:] = 0
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


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def dense_dot_f32(s, wf, out, i0, i1):
    # dense_dot in float32 with the sums reassociated (8 lanes): exact, because the plan uses it
    # only while every sum of |weights| is below 2**24, so each partial sum in any order is an
    # exact float32 integer.
    n, t, m = s.shape
    sf = np.empty(m, np.float32)
    for i in range(i0, i1):
        for k in range(t):
            srow = s[i, k]
            for f in range(m):
                sf[f] = srow[f]
            row = out[i, k]
            for o in range(wf.shape[0]):
                wr = wf[o]
                acc = np.float32(0)
                for f in range(m):
                    acc += wr[f] * sf[f]
                row[o] = np.int32(acc)


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
            row[:] = 0
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


@numba.njit(cache=True, nogil=True, inline="always")
def _lanes_out(lanes, bias, og, nw, wrap, row):
    # row = one step's packed sums (lanes: per position and group, og outputs padded to whole
    # words) less their bias; in one long loop (it vectorises) when no lane is padding.
    lw = nw * 8 // lanes.itemsize  # lanes per (position, group)
    if lw == og:
        for j in range(row.shape[0]):
            row[j] = lanes[j] - bias
    else:
        for r in range(row.shape[0] // og):
            for o in range(og):
                row[r * og + o] = lanes[r * lw + o] - bias
    if wrap:
        _wrap24(row)


@numba.njit(cache=True, nogil=True, inline="always")
def _lut_stage(n_op, nb, og, lut, out, steps):
    # The table kernels' shapes and packed sums: (groups, bytes per group, words per (position,
    # group), lanes of out's dtype, the same memory as uint64 words) for `steps` steps.
    groups = out.shape[2] // n_op // og
    nw = lut.shape[2]
    lanes = np.zeros(steps * n_op * groups * nw * 8 // out.itemsize, out.dtype)  # as signed: same low bits
    return groups, nb // groups, nw, lanes, lanes.view(np.uint64)


@numba.njit(cache=True, nogil=True)
def conv_lut(s, idx, lut, og, bias, out, wrap, i0, i1):
    # Table form, for busy inputs: an output position's receptive field is cut into bytes of 8
    # (tap, channel) inputs, and each byte indexes a table holding the sums of the 8 weights for
    # every spike pattern (built once by the plan), so a position costs one add of its group's
    # output currents per 8 inputs instead of 8 multiply-adds. The table holds the sums plus a
    # bias that makes them non-negative, packed 4 (16-bit) or 2 (32-bit) to a 64-bit word: no lane
    # can carry into the next (the plan checks the largest sum), so one integer add sums 4 or 2
    # outputs. idx[op, q, b]: where bit b of byte q of position op is in the step's spike row (a
    # zero past the row for taps off the input).
    n, t, m = s.shape
    n_op, nb, _ = idx.shape
    groups, nq, nw, lanes, stage = _lut_stage(n_op, nb, og, lut, out, 1)
    buf = np.zeros(m + 8, np.uint8)  # the step's spikes, then zeros
    for i in range(i0, i1):
        for k in range(t):
            src = s[i, k]
            for j in range(m):
                buf[j] = src[j]
            for op in range(n_op):
                for g in range(groups):
                    acc = stage[(op * groups + g) * nw : (op * groups + g + 1) * nw]
                    acc[:] = 0
                    for q in range(g * nq, (g + 1) * nq):
                        e = idx[op, q]
                        b = (
                            ((buf[e[0]] | (buf[e[1]] << 1)) | ((buf[e[2]] << 2) | (buf[e[3]] << 3)))
                            | ((buf[e[4]] << 4) | (buf[e[5]] << 5))
                            | ((buf[e[6]] << 6) | (buf[e[7]] << 7))
                        )
                        tb = lut[q, b]
                        for w in range(nw):
                            acc[w] += tb[w]
            _lanes_out(lanes, bias, og, nw, wrap, out[i, k])


@numba.njit(cache=True, nogil=True)
def conv_lut_words(s, start, lut, og, bias, out, wrap, i0, i1):
    # conv_lut when every byte's 8 inputs are 8 consecutive spikes from a multiple of 8 (channels-
    # last, 8k channels per group): a byte is read as one 64-bit word and packed by a multiply
    # (bit k of the top byte of x * 0x0102040810204080 is the low bit of x's byte k).
    # start[op, q]: the byte's first spike in the step's row (a zero word past it when off the
    # input).
    n, t, m = s.shape
    n_op, nb = start.shape
    groups, nq, nw, lanes, stage = _lut_stage(n_op, nb, og, lut, out, 1)
    buf = np.zeros((m + 15) // 8 * 8, np.uint8)
    w64 = buf.view(np.uint64)
    magic = np.uint64(0x0102040810204080)
    top = np.uint64(56)
    for i in range(i0, i1):
        for k in range(t):
            src = s[i, k]
            for j in range(m):
                buf[j] = src[j]
            for op in range(n_op):
                st = start[op]
                for g in range(groups):
                    acc = stage[(op * groups + g) * nw : (op * groups + g + 1) * nw]
                    acc[:] = 0
                    for q in range(g * nq, (g + 1) * nq):
                        tb = lut[q, (w64[st[q] >> 3] * magic) >> top]
                        for w in range(nw):
                            acc[w] += tb[w]
            _lanes_out(lanes, bias, og, nw, wrap, out[i, k])


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
        cnt[:] = 0
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


@numba.njit(cache=True, nogil=True, inline="always")
def _current_f64(u, x, ku, w):
    # u = trunc(u * keep_u / 4096) + x << 6, wrapped to 24 bits as Lava does, in float64. Selects,
    # not arithmetic on the comparisons: 1.8x faster.
    for j in range(u.shape[0]):
        uj = np.trunc(u[j] * ku) + np.float64(x[j]) * 64.0
        uj = uj - 2.0 * w if uj > w else uj
        u[j] = uj + 2.0 * w if uj <= -w else uj


@numba.njit(cache=True, nogil=True, inline="always")
def _voltage_f64(v, u, bf, kv, th, w, row):
    # v = clip(trunc(v * keep_v / 4096) + u + bias), spikes where v > threshold, reset v only.
    for j in range(v.shape[0]):
        vj = min(max(np.trunc(v[j] * kv) + u[j] + bf[j], -w + 1.0), w - 1.0)
        sp = vj > th
        row[j] = sp
        v[j] = 0.0 if sp else vj


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
        cnt[:] = 0
        for k in range(t):
            if k > 0:
                _current_f64(u, a[i, k - 1], ku, w)
            row = out[i, k]
            _voltage_f64(v, u, bf, kv, th, w, row)
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


@numba.njit(cache=True, nogil=True)
def dense_chain(x, w, wd, lay, fan, bias, dec, out, counts, synops, i0, i1):
    # A chain input -> (dense + LIF) x L, one sample at a time and all layers per step, so that a
    # step's currents, voltages and spikes stay in cache. x (N, M0, T): the network input as given
    # (steps last). Layer ly: lay[ly] = (inputs, outputs, offset of its weights in w (in, out) and
    # wd (out, in), offset of its fan-outs in fan, offset of its neurons, weight_exp, largest
    # |weight|); dec[ly] = (current keep / 4096, voltage keep / 4096, threshold << 6); bias: the
    # neurons' bias << 6. out (N, O, T) int8: the last layer's spikes; counts / synops (N, L).
    # Per step and layer: the LIF as lif_f64 (it receives the current its synapse made from the
    # previous step's input, §2.5), then the synapse's new current from this step's input spikes,
    # as dense_steps_last / dense / dense_dot would compute it.
    n, m0, t = x.shape
    nl = lay.shape[0]
    tot = 0
    mmax = 1
    for ly in range(nl):
        tot += lay[ly, 1]
        mmax = max(mmax, lay[ly, 1])
    idx = np.empty(t * m0 + t, np.int32)
    ptr = np.zeros(t + 1, np.int64)
    pos = np.zeros(t, np.int64)
    per_step = np.zeros(t, np.int64)
    pend = np.zeros(tot, np.int32)
    short = np.zeros(mmax, np.int16)
    u = np.zeros(tot, np.float64)
    v = np.zeros(tot, np.float64)
    srow = np.zeros(tot, np.uint8)
    lists = np.zeros(tot + nl, np.int32)  # each layer's spike list of this step (a spare slot each)
    nlist = np.zeros(nl, np.int64)
    wrapf = float(1 << 23)
    for i in range(i0, i1):
        synops[i, 0] = _step_lists(x[i], fan[:m0], idx, ptr, pos, per_step)
        pend[:] = 0
        u[:] = 0.0
        v[:] = 0.0
        for ly in range(nl):
            counts[i, ly] = 0
            synops[i, ly] = synops[i, 0] if ly == 0 else 0
        for k in range(t):
            for ly in range(nl):
                mi, mo, wo, fo, oo, e, wmax = (
                    lay[ly, 0],
                    lay[ly, 1],
                    lay[ly, 2],
                    lay[ly, 3],
                    lay[ly, 4],
                    lay[ly, 5],
                    lay[ly, 6],
                )
                ku, kv, th = dec[ly, 0], dec[ly, 1], dec[ly, 2]
                uu = u[oo : oo + mo]
                vv = v[oo : oo + mo]
                pp = pend[oo : oo + mo]
                bb = bias[oo : oo + mo]
                ss = srow[oo : oo + mo]
                _current_f64(uu, pp, ku, wrapf)
                _voltage_f64(vv, uu, bb, kv, th, wrapf, ss)
                lst = lists[oo + ly : oo + ly + mo + 1]
                c = 0
                for j in range(mo):  # branch-free, as in _step_lists
                    lst[c] = j
                    c += ss[j]
                nlist[ly] = c
                counts[i, ly] += c
                if ly == nl - 1:
                    for j in range(mo):
                        out[i, j, k] = ss[j]
                # this layer's synapse on this step's input (the previous layer's spikes, just made)
                wt = w[wo : wo + mi * mo].reshape((mi, mo))
                if ly == 0:
                    src = idx[ptr[k] : ptr[k] + per_step[k]]
                else:
                    po = lay[ly - 1, 4]
                    src = lists[po + ly - 1 : po + ly - 1 + nlist[ly - 1]]
                    ops = 0
                    for q in range(src.shape[0]):
                        ops += fan[fo + src[q]]
                    synops[i, ly] += ops
                if ly > 0 and src.shape[0] * (mo + 64) > mo * mi:  # busy input, few outputs
                    prev = srow[lay[ly - 1, 4] : lay[ly - 1, 4] + mi]
                    wdl = wd[wo : wo + mi * mo].reshape((mo, mi))
                    for o in range(mo):
                        wr = wdl[o]
                        acc = 0
                        for f in range(mi):
                            acc += wr[f] * prev[f]
                        pp[o] = acc
                else:
                    _sum_step(pp, short[:mo], wt, src, 0, src.shape[0], wmax)
                if e > 0:
                    for j in range(mo):
                        pp[j] <<= e
                elif e < 0:
                    for j in range(mo):
                        pp[j] >>= -e  # Lava's arithmetic (floor) shift (§2.2)


@numba.njit(cache=True, nogil=True)
def conv_lut_steps_last(x, idx, lut, og, bias, out, wrap, i0, i1):
    # conv_lut for the network input, held (N, M, T): an input's T steps are one contiguous row,
    # so a (position, byte)'s patterns for all steps are built at once, 8 steps per 64-bit word,
    # before the table adds. Flat arrays and explicit offsets: measured 1.4x faster than views.
    n, m, t = x.shape
    n_op, nb, _ = idx.shape
    groups, nq, nw, lanes, stage = _lut_stage(n_op, nb, og, lut, out, t)
    lf = lut.reshape(-1)
    per_step = n_op * groups * nw
    tw = (t + 7) // 8  # words per input row
    rows = np.zeros((m + 1) * tw * 8, np.uint8)  # the sample's input, then a row of zeros
    rw = rows.view(np.uint64)
    pat = np.zeros(nq * tw * 8, np.uint8)
    pw = pat.view(np.uint64)
    for i in range(i0, i1):
        xi = x[i]
        for r in range(m):
            for k in range(t):
                rows[r * tw * 8 + k] = xi[r, k]
        for op in range(n_op):
            for g in range(groups):
                for qq in range(nq):
                    e = idx[op, g * nq + qq]
                    for w in range(tw):
                        v = rw[min(e[0], m) * tw + w]  # past the input: the zero row
                        for b in range(1, 8):
                            v |= rw[min(e[b], m) * tw + w] << np.uint64(b)
                        pw[qq * tw + w] = v
                base = (op * groups + g) * nw
                for k in range(t):
                    d = k * per_step + base
                    for w0 in range(0, nw, 4):  # nw is a multiple of 4: sums held in registers
                        a0 = np.uint64(0)
                        a1 = np.uint64(0)
                        a2 = np.uint64(0)
                        a3 = np.uint64(0)
                        for qq in range(nq):
                            o = ((g * nq + qq) * 256 + pat[qq * tw * 8 + k]) * nw + w0
                            a0 += lf[o]
                            a1 += lf[o + 1]
                            a2 += lf[o + 2]
                            a3 += lf[o + 3]
                        stage[d + w0] = a0
                        stage[d + w0 + 1] = a1
                        stage[d + w0 + 2] = a2
                        stage[d + w0 + 3] = a3
        step = per_step * 8 // out.itemsize
        for k in range(t):
            _lanes_out(lanes[k * step : (k + 1) * step], bias, og, nw, wrap, out[i, k])


@numba.njit(cache=True, nogil=True, inline="always")
def _abs32(x):
    # numpy's int32 abs of an int32 value held in an int64: |-2**31| stays -2**31
    return np.abs(x) if x != -2147483648 else x


@numba.njit(cache=True, nogil=True, inline="always")
def _send(x, j, act, res, err, cum, vth, down):
    # the delta step of Lava's Delta/SigmaDelta (docs/loihi2.md §2.7); the states are int32 arrays,
    # so every store wraps as Lava's int32 Vars do; returns the payload s >> state_exp
    d = np.int64(np.int32(x - act[j] + res[j]))
    if cum:
        e = np.int64(np.int32(err[j] + d))
        s = d if _abs32(e) >= vth else 0
        err[j] = 0 if _abs32(s) > 0 else e
    else:
        s = d if _abs32(d) >= vth else 0
    res[j] = d - s
    act[j] = x
    return s >> down


@numba.njit(cache=True, nogil=True, inline="always")
def _sd_row(row, o, b, sigma, act, res, err, mode, relu, cum, vth, up, down):
    # one step of one sample, one loop per case so that each vectorises
    m = row.shape[0]
    if mode == 2:
        for j in range(m):
            sigma[j] = np.int64(sigma[j]) + row[j]
            o[j] = sigma[j]
    elif mode == 0:
        for j in range(m):
            o[j] = _send(np.int64(np.int32(np.int64(row[j]) << up)), j, act, res, err, cum, vth, down)
    elif relu:
        for j in range(m):
            sg = np.int64(np.int32(np.int64(sigma[j]) + row[j]))
            sigma[j] = sg
            x = np.int64(np.int32(sg + b[j]))
            o[j] = _send(max(x, 0), j, act, res, err, cum, vth, down)
    else:
        for j in range(m):
            sg = np.int64(np.int32(np.int64(sigma[j]) + row[j]))
            sigma[j] = sg
            o[j] = _send(np.int64(np.int32(sg + b[j])), j, act, res, err, cum, vth, down)


@numba.njit(cache=True, nogil=True)
def sigma_delta(a, b, mode, relu, cum, vth, up, down, out, i0, i1):
    # Lava's fixed-point Delta (mode 0), SigmaDelta (1) and Sigma (2), docs/loihi2.md §2.7 and
    # snnc.sim.sdnn: a (N, T, M) int32 delayed inputs, b (M,) int32 bias << U, vth << U; out
    # (N, T, M) int32 payloads.
    n, t, m = a.shape
    sigma = np.zeros(m, np.int32)
    act = np.zeros(m, np.int32)
    res = np.zeros(m, np.int32)
    err = np.zeros(m, np.int32)
    for i in range(i0, i1):
        sigma[:] = 0
        act[:] = 0
        res[:] = 0
        err[:] = 0
        for k in range(t):
            if cum:
                _sd_row(a[i, k], out[i, k], b, sigma, act, res, err, mode, relu, True, vth, up, down)
            else:
                _sd_row(a[i, k], out[i, k], b, sigma, act, res, err, mode, relu, False, vth, up, down)
