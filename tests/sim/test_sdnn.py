"""Sigma-delta (SDNN) neurons and graded spikes in the simulator (docs/loihi2.md §2.7).

References: hand-computed cases of Lava's fixed-point ``Delta`` / ``SigmaDelta`` / ``Sigma``
(``lava/proc/sdn/models.py``); Lava's own conv function and numpy's int32 ``dot`` for the graded
synapses; and, marked slow, Lava itself (``Loihi2SimCfg(select_tag='fixed_pt')``) on small hand-made
dense and conv SDNN nets with graded input, through netx and through Lava processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from graph_helpers import fixed_graph

from snnc.errors import SnncError, UsageError
from snnc.ir import Conv, Dense, Flatten, Graph, GraphError, Input, SigmaDelta
from snnc.ir.serialize import load_graph, save_graph
from snnc.sim import check_input, kernels, simulate, trace_layers
from snnc.sim.sdnn import graded_conv, graded_dense, graded_weights, sdnn_fixed

I32 = 1 << 31


def run_neuron(a_in, neuron: SigmaDelta, compiled: bool):
    """One neuron fed ``a_in`` (its delayed input, one value per step): payloads and states."""
    cur = np.asarray(a_in, np.int64).reshape(1, -1, 1)
    if compiled:
        return sdnn_fixed("n", cur, neuron).reshape(-1), None
    trace: dict = {}
    out = sdnn_fixed("n", cur, neuron, trace).reshape(-1)
    return out, {k: v.reshape(-1) for k, v in trace.items()}


def sd(threshold=0, bias=None, mode="sigma_delta", spike_exp=0, state_exp=0, **kw) -> SigmaDelta:
    return SigmaDelta(
        threshold=threshold,
        bias=None if bias is None else [bias],
        mode=mode,
        spike_exp=spike_exp,
        state_exp=state_exp,
        **kw,
    )


# -- hand-computed: sigma, activation, delta, threshold, residue, cum_error ---------------------
@pytest.mark.parametrize("compiled", [False, True])
def test_sigma_delta_by_hand(compiled):
    # vth 3, bias 1, ReLU, no scaling: sigma 5, 5, 3, -7, -6; act 6, 6, 4, 0, 0; at t2 the delta -2
    # stays below |3| and goes to the residue, which t3 sends with its own -4: -6
    out, st = run_neuron([5, 0, -2, -10, 1], sd(3, 1), compiled)
    assert out.tolist() == [6, 0, 0, -6, 0]
    if st is not None:
        assert st["sigma"].tolist() == [5, 5, 3, -7, -6]
        assert st["act"].tolist() == [6, 6, 4, 0, 0]
        assert st["residue"].tolist() == [0, 0, -2, 0, 0]


@pytest.mark.parametrize("compiled", [False, True])
def test_scaling_and_floor_shift_by_hand(compiled):
    # spike_exp 1, state_exp 2: vth = 3 << 3 = 24, bias = 1 << 3 = 8, payload = s >> 2
    out, _ = run_neuron([40, 0, -16, -80, 8], sd(3, 1, spike_exp=1, state_exp=2), compiled)
    assert out.tolist() == [12, 0, 0, -12, 0]
    # state_exp 2, vth 0: 5 >> 2 = 1 and -5 >> 2 = -2 (floor); the dropped bits are not kept
    out, st = run_neuron([5, -11], sd(0, state_exp=2), compiled)
    assert out.tolist() == [1, -2]
    if st is not None:
        assert st["residue"].tolist() == [0, 0]


@pytest.mark.parametrize("compiled", [False, True])
def test_cum_error_by_hand(compiled):
    # cum_error: the error 2, 6 (>= 5: send the delta 4, error back to 0), 2, -2
    out, st = run_neuron([2, 2, 2, -6], sd(5, cum_error=True), compiled)
    assert out.tolist() == [0, 4, 0, 0]
    if st is not None:
        assert st["error"].tolist() == [2, 0, 2, -2]
        assert st["residue"].tolist() == [2, 0, 2, -4]
    # without it the deltas 2, 4 stay below 5 and pile up in the residue: 6, then -6
    out, _ = run_neuron([2, 2, 2, -6], sd(5), compiled)
    assert out.tolist() == [0, 0, 6, -6]


@pytest.mark.parametrize("compiled", [False, True])
def test_delta_sigma_unit_by_hand(compiled):
    # Delta (the input layer): x = a_in << 3; vth 1 << 3 = 8; payload >> 2
    out, _ = run_neuron([3, 3, 4, 2], sd(1, mode="delta", spike_exp=1, state_exp=2), compiled)
    assert out.tolist() == [6, 0, 2, -4]  # deltas 24, 0, 8, -16
    # Sigma: the running sum, unshifted
    out, _ = run_neuron([3, -1, 4], sd(mode="sigma"), compiled)
    assert out.tolist() == [3, 2, 6]
    # UNIT activation: no ReLU
    out, _ = run_neuron([-5], sd(0, 1, activation="unit"), compiled)
    assert out.tolist() == [-4]


@pytest.mark.parametrize("compiled", [False, True])
def test_int32_wraps_as_lavas_int32_vars(compiled):
    out, _ = run_neuron([I32 - 1, 1], sd(mode="sigma"), compiled)
    assert out.tolist() == [I32 - 1, -I32]
    # Delta: a_in << 12 wraps in int32: 2**19 << 12 = 2**31 -> -2**31; |-2**31| stays negative in
    # numpy's int32 abs, below vth, so nothing is sent and all of it goes to the residue
    out, st = run_neuron([1 << 19], sd(1, mode="delta", spike_exp=6, state_exp=6), compiled)
    assert out.tolist() == [0]
    if st is not None:
        assert st["residue"].tolist() == [-I32]


def test_compiled_loop_equals_numpy_loop():
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 20), 1 << 20, size=(5, 30, 40))
    a[:, ::3] = 0
    for mode in ("delta", "sigma_delta", "sigma"):
        for cum in (False, True):
            for act in ("relu", "unit"):
                bias = rng.integers(-50, 50, size=4) if mode == "sigma_delta" else None
                n = SigmaDelta(threshold=3, bias=bias, mode=mode, activation=act, cum_error=cum)
                cur = a.reshape(5, 30, 4, 10)
                got = sdnn_fixed("n", cur, n)
                want = sdnn_fixed("n", cur, n, trace={})
                assert np.array_equal(got, want), (mode, cum, act)


# -- graded synapses against Lava's own arithmetic ------------------------------------------------
def test_graded_dense_is_lavas_int32_dot():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(7, 9)).astype(np.int32)
    s = rng.integers(-(1 << 27), 1 << 27, size=(4, 9)).astype(np.int32)  # sums beyond 2**31: wrap
    for exp in (-3, 0, 2):
        with np.errstate(over="ignore"):
            ref = np.stack([w.dot(row) for row in s])  # Lava's PyDenseModelBitAcc, num_message_bits > 0
            ref = np.left_shift(ref, exp) if exp > 0 else np.right_shift(ref, -exp)
        assert np.array_equal(graded_dense(s.astype(np.int64), graded_weights(w, dense=True), exp), ref)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_graded_conv_is_lavas_conv():
    from lava.proc.conv import utils

    from snnc.sim.interpreter import _conv_currents

    rng = np.random.default_rng(2)
    w = rng.integers(-100, 100, size=(3, 2, 3, 3))
    s = rng.integers(-(1 << 12), 1 << 12, size=(1, 2, 6, 7))
    s[0, 0, 2, 3] = 1 << 22  # a sum past 2**23: wraps at 24 bits
    s[0, 1, 4, 4] = 1 << 27  # a sum past 2**31: the int32 cast gives -2**31, wrapped to 0
    lava_w = w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32)  # netx's layout
    ref = utils.conv(s[0].transpose(2, 1, 0).astype(np.int32), lava_w, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    ref = utils.signed_clamp(ref, bits=24).transpose(2, 1, 0)
    got = graded_conv(
        s, graded_weights(w, dense=False), lambda a, k: _conv_currents(a, k, (1, 1), (1, 1), (1, 1), 1)
    )[0]
    assert np.array_equal(got, ref)
    assert (got == 0).sum() > 0 and np.abs(got).max() < 1 << 23


# -- graphs: input checks, serialisation, netx, simulate ----------------------------------------
def dense_net() -> Graph:
    rng = np.random.default_rng(3)
    return fixed_graph(
        [
            Input("in", shape=(6,), neuron=SigmaDelta(threshold=1, mode="delta")),
            Dense(
                "d1", weight=rng.integers(-64, 64, (5, 6)) * 2, neuron=SigmaDelta(2, rng.integers(-9, 9, 5))
            ),
            Dense("d2", weight=rng.integers(-64, 64, (3, 5)) * 2, neuron=SigmaDelta(mode="sigma")),
        ]
    )


def conv_net() -> Graph:
    rng = np.random.default_rng(4)
    return fixed_graph(
        [
            Input("in", shape=(2, 5, 5), neuron=SigmaDelta(threshold=0, mode="delta")),
            Conv(
                "c1",
                weight=rng.integers(-40, 40, (3, 2, 3, 3)) * 2,
                padding=1,
                neuron=SigmaDelta(1, rng.integers(-5, 5, 3)),
            ),
            Conv("c2", weight=rng.integers(-40, 40, (4, 3, 3, 3)) * 2, stride=2, neuron=SigmaDelta(0)),
            Flatten("f"),
            Dense(
                "d", weight=rng.integers(-60, 60, (3, 16)) * 2, neuron=SigmaDelta(3, rng.integers(-4, 4, 3))
            ),
        ]
    )


def graded_input(shape, n=2, t=8, seed=5) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-100, 101, size=(n, *shape, t))
    x[..., 4:] = x[..., 3:4]  # a constant stretch: the deltas fall to zero
    return x


def test_graded_input_check():
    g = dense_net()
    x = check_input(g, graded_input((6,)))
    assert x.dtype == np.int32
    with pytest.raises(UsageError, match="non-integer"):
        check_input(g, graded_input((6,)) + 0.5)
    with pytest.raises(UsageError, match="int32"):
        check_input(g, graded_input((6,)) * (1 << 30))
    with pytest.raises(UsageError, match="does not match"):
        check_input(g, graded_input((5,)))


def test_sigma_delta_neuron_checks():
    with pytest.raises(GraphError, match="mode"):
        SigmaDelta(mode="relu")
    with pytest.raises(GraphError, match="no bias"):
        SigmaDelta(mode="sigma", bias=[1])
    with pytest.raises(GraphError, match=">= 0"):
        SigmaDelta(threshold=-1)


def test_serialize_round_trip(tmp_path):
    g = conv_net()
    save_graph(g, tmp_path / "g.safetensors")
    back = load_graph(tmp_path / "g.safetensors")
    assert back.nodes["c1"].neuron.mode == "sigma_delta"
    assert np.array_equal(back.nodes["c1"].neuron.bias, g.nodes["c1"].neuron.bias)
    assert back.input.neuron == g.input.neuron
    x = graded_input((2, 5, 5))
    assert np.array_equal(simulate(back, x).output, simulate(g, x).output)


def test_netx_round_trip(tmp_path):
    from snnc.targets.loihi2 import read_netx, write_netx

    for g in (dense_net(), conv_net()):
        write_netx(g, tmp_path / "n.net")
        back = read_netx(tmp_path / "n.net")
        x = graded_input(g.input.shape)
        assert np.array_equal(simulate(back, x).output, simulate(g, x).output)
    bad = fixed_graph(
        [Input("in", shape=(6,)), Dense("d", weight=np.ones((2, 6)) * 2, neuron=SigmaDelta(cum_error=True))]
    )
    with pytest.raises(SnncError, match="cum_error"):
        write_netx(bad, tmp_path / "bad.net")


def test_simulate_graded_output_and_trace():
    g = conv_net()
    x = graded_input((2, 5, 5))
    r = simulate(g, x, record=True)
    assert r.output.dtype == np.int32 and r.output.shape == (2, 3, 8)
    assert r.layers["c1"].dtype == np.int32
    assert r.spikes["c1"] == np.count_nonzero(r.layers["c1"])
    tr = trace_layers(g, x)
    assert np.array_equal(tr["d"].spikes, r.output)
    assert tr["c1"].u is None and tr["c1"].sigma.shape == (2, 3, 5, 5, 8)
    # a Delta keeps no sigma; its act is the last input << 12
    assert tr["in"].sigma is None
    assert np.array_equal(tr["in"].act, x.astype(np.int64) << 12)


def test_numpy_and_compiled_neurons_agree_on_a_net(monkeypatch):
    g = conv_net()
    x = graded_input((2, 5, 5), n=3, t=12)
    want = simulate(g, x).output
    monkeypatch.setattr(kernels, "DISABLE_SDNN_KERNEL", True)
    assert np.array_equal(simulate(g, x).output, want)


# -- Lava itself ---------------------------------------------------------------------------------
def _run_processes(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Lava processes (:func:`build_processes`), one sample per run."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    from snnc.targets.loihi2.lava import build_processes, connect_source

    outs = []
    for sample in x:
        _, in_ports, last = build_processes(graph)
        data = (sample.transpose(2, 1, 0, 3) if sample.ndim == 4 else sample).astype(np.int32)
        src = io.source.RingBuffer(data=data)
        connect_source(src, in_ports, data.ndim)
        sink = io.sink.RingBuffer(shape=last.shape, buffer=data.shape[-1])
        last.connect(sink.a_in)
        try:
            src.run(condition=RunSteps(num_steps=data.shape[-1]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            y = np.asarray(sink.data.get())
        finally:
            src.stop()
        outs.append(y.transpose(2, 1, 0, 3) if y.ndim == 4 else y)
    return np.stack(outs)


@pytest.mark.slow
@pytest.mark.parametrize("make", [dense_net, conv_net])
def test_sim_equals_lava_netx(make):
    from snnc.targets.loihi2 import run_lava

    g = make()
    x = graded_input(g.input.shape)
    ours = simulate(g, x).output
    theirs = run_lava(g, x)
    assert theirs.dtype == np.int32
    assert np.count_nonzero(ours) > 5
    assert np.array_equal(ours, theirs)


@pytest.mark.slow
def test_sim_equals_lava_processes_cum_error_unit():
    import dataclasses

    g = dense_net()
    d1 = g.nodes["d1"]
    n1 = dataclasses.replace(d1.neuron, cum_error=True, activation="unit")
    g = g.replace(
        d1=dataclasses.replace(d1, neuron=n1),
        **{"in": dataclasses.replace(g.input, neuron=SigmaDelta(1, mode="delta", cum_error=True))},
    )
    x = graded_input((6,), n=1, t=10)
    assert np.array_equal(simulate(g, x).output, _run_processes(g, x))
