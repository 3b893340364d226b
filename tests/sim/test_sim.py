"""The simulator vs hand-computed fixed-point cases (docs/loihi2.md §2.1-2.6) and the torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_helpers import fixed_graph, random_convnet, random_mlp, random_residual, spikes

from snnc.errors import SnncError, UsageError
from snnc.ir import BatchNorm, Conv, CubaLIF, Dense, Flatten, Graph, Input, Output, Pool
from snnc.sim import lif_fixed, simulate


def lif(threshold=100, cd=0, vd=0, bias=None) -> CubaLIF:
    return CubaLIF(threshold=threshold, current_decay=cd, voltage_decay=vd, bias=bias)


def one_neuron(weight, neuron: CubaLIF, weight_exp: int = 0) -> Graph:
    return fixed_graph(
        [
            Input("in", shape=(1,)),
            Dense("fc", weight=[[weight]], neuron=neuron, weight_exp=weight_exp),
        ]
    )


# -- the neuron alone: u wrap, v saturation, rounding toward zero
# -----------------------------------
def test_u_wraps_at_24_bits_with_lavas_asymmetric_tests():
    # a_in << 6 = 2**23: exactly 2**23 is kept (the test is u > 2**23); the next step reaches 2**24
    # and
    # wraps to 0. Negative: -2**23 is wrapped (u <= -2**23) to +2**23.
    trace: dict = {}
    cur = np.array([[2**17, 2**17, 0]])[..., None]
    lif_fixed(cur, lif(threshold=2**17, vd=4096), trace=trace)
    assert trace["u"][0, :, 0].tolist() == [2**23, 0, 0]
    trace = {}
    lif_fixed(np.array([[-(2**17)]])[..., None], lif(threshold=2**17, vd=4096), trace=trace)
    assert trace["u"][0, :, 0].tolist() == [2**23]


def test_v_saturates_and_never_reaches_the_largest_threshold():
    trace: dict = {}
    s = lif_fixed(np.full((1, 4, 1), 2**16), lif(threshold=2**17 - 1, cd=4096), trace=trace)
    # v: 2**22, 2**23 - 1 (clipped from 2**23), clipped again; vth << 6 = 2**23 - 64 -> spikes at
    # step 2.
    assert trace["v"][0, :, 0].tolist() == [2**22, 2**23 - 1, 2**22, 2**23 - 1]
    assert s[0, :, 0].tolist() == [0, 1, 0, 1]
    trace = {}
    s = lif_fixed(np.full((1, 3, 1), -(2**16)), lif(cd=4096), trace=trace)
    assert trace["v"][0, :, 0].tolist() == [-(2**22), -(2**23) + 1, -(2**23) + 1]


def test_decay_rounds_toward_zero_for_both_signs():
    # u1 = +-64, u2 = trunc(+-64 * 3096 / 4096) = trunc(+-48.375) = +-48 (floor would give -49).
    for sign in (1, -1):
        trace: dict = {}
        lif_fixed(np.array([[sign, 0, 0]])[..., None], lif(cd=1000, vd=4096), trace=trace)
        assert trace["u"][0, :, 0].tolist() == [sign * 64, sign * 48, sign * 36]


def test_bias_is_shifted_and_threshold_is_strict():
    # vd 4096: v = u + bias << 6 each step; cd 4096: u = a << 6.
    s = lif_fixed(np.array([[1, 0, 2]])[..., None], lif(threshold=1, cd=4096, vd=4096, bias=[0]))
    assert s[0, :, 0].tolist() == [0, 0, 1]  # v = 64 is not > 64; v = 128 is
    s = lif_fixed(np.zeros((1, 3, 1), int), lif(threshold=1, cd=4096, vd=4096, bias=[2]))
    assert s[0, :, 0].tolist() == [1, 1, 1]


def test_reset_is_v_only():
    trace: dict = {}
    s = lif_fixed(np.array([[3, 0, 0]])[..., None], lif(threshold=2, cd=0, vd=4096), trace=trace)
    # u stays 192 (no current decay) after the spike; v = u again every step (vd 4096).
    assert trace["u"][0, :, 0].tolist() == [192, 192, 192]
    assert s[0, :, 0].tolist() == [1, 1, 1]


# -- whole graphs
# ------------------------------------------------------------------------------------
def test_latency_is_one_step_per_synaptic_layer():
    memoryless = lif(threshold=0, cd=4096, vd=4096)
    nodes = [Input("in", shape=(1,))]
    for i in range(3):
        nodes.append(Dense(f"fc{i}", weight=[[2]], neuron=memoryless))
    x = np.zeros((1, 1, 8), np.int8)
    x[0, 0, 1] = 1
    out = simulate(fixed_graph(nodes), x).output
    assert out[0, 0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # input at 1 + 3 synapses -> 4


def test_negative_weight_exp_floors_the_sum():
    # Lava Dense: sum of stored weights, then arithmetic >> 1: (3) >> 1 = 1, (-3) >> 1 = -2.
    trace_pos = simulate(
        one_neuron(3, lif(threshold=1, cd=4096, vd=4096), weight_exp=-1),
        np.ones((1, 1, 3), np.int8),
    )
    assert trace_pos.output[0, 0].tolist() == [0, 0, 0]  # a = 1 -> v = 64, not > 64
    g = fixed_graph(
        [
            Input("in", shape=(2,)),
            Dense("fc", weight=[[3, 3]], weight_exp=-1, neuron=lif(threshold=2, cd=4096, vd=4096)),
        ]
    )
    assert simulate(g, np.ones((1, 2, 3), np.int8)).output[0, 0].tolist() == [0, 1, 1]  # 6 >> 1 = 3


def test_conv_current_wraps_to_24_bits():
    # One input channel, 1x1 conv of weight 2**23 + 5: Lava's signed_clamp wraps it to -2**23 + 5.
    g = fixed_graph(
        [
            Input("in", shape=(1, 1, 1)),
            Conv(
                "c",
                weight=np.full((1, 1, 1, 1), 2**23 + 5),
                neuron=lif(threshold=0, cd=4096, vd=4096),
            ),
        ]
    )
    # a_in = -2**23 + 5 -> v saturates negative: no spike; unwrapped it would be positive and spike.
    out = simulate(g, np.ones((1, 1, 1, 1, 3), np.int8)).output
    assert out.sum() == 0


def test_add_sums_delayed_currents_of_both_branches():
    inp = Input("in", shape=(1, 1, 1))
    a = Conv("a", weight=np.full((1, 1, 1, 1), 1))
    b = Conv("b", weight=np.full((1, 1, 1, 1), 1))
    from snnc.ir import Add

    add = Add("add", neuron=lif(threshold=1, cd=4096, vd=4096))
    g = Graph(
        {"in": inp, "a": a, "b": b, "add": add, "out": Output("out")},
        (("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("add", "out")),
        {"precision": "fixed"},
    ).verify()
    x = np.zeros((1, 1, 1, 1, 4), np.int8)
    x[..., 0] = 1
    # each branch alone gives v = 64 (not > 64); their sum 128 spikes, one step after the input.
    assert simulate(g, x).output[0, 0, 0, 0].tolist() == [0, 1, 0, 0]


def test_synops_count_nonzero_fanout_per_input_spike():
    w = np.array([[2, 0, 4], [0, 0, 6]])  # input 0 fans out to 1, input 1 to 0, input 2 to 2
    g = fixed_graph([Input("in", shape=(3,)), Dense("fc", weight=w, neuron=lif())])
    x = np.zeros((2, 3, 5), np.int8)
    x[0, 0, :3] = 1  # 3 spikes x 1
    x[1, 1, :] = 1  # 5 spikes x 0
    x[1, 2, 4] = 1  # 1 spike x 2
    res = simulate(g, x)
    assert res.synops["fc"] == 5
    # conv: a 3x3 kernel with 4 non-zero taps on a 3x3 input, padding 1: a centre spike reaches 4
    # outputs,
    # a corner spike only the taps that land inside the output.
    k = np.zeros((1, 1, 3, 3))
    k[0, 0, 0, 0] = k[0, 0, 1, 1] = k[0, 0, 2, 2] = k[0, 0, 0, 2] = 2
    g = fixed_graph([Input("in", shape=(1, 3, 3)), Conv("c", weight=k, padding=1, neuron=lif())])
    x = np.zeros((1, 1, 3, 3, 1), np.int8)
    x[0, 0, 1, 1, 0] = 1
    assert simulate(g, x).synops["c"] == 4
    x[:] = 0
    x[0, 0, 0, 0, 0] = 1  # reaches outputs (0,0) via tap (1,1) and (1,1) via tap (2,2): 2
    assert simulate(g, x).synops["c"] == 2


def test_record_spike_counts_and_energy_keys(rng):
    g = random_convnet(rng)
    x = spikes(rng, g, 3, 10)
    res = simulate(g, x, record=True)
    for name, s in res.layers.items():
        assert s.shape == (3, *g.shapes()[name], 10)
        assert int(s.sum()) == res.spikes[name]
    np.testing.assert_array_equal(res.layers["fc"], res.output)
    summary = res.summary()
    assert summary["energy_per_inference_j_loihi1_figures"] > 0
    assert summary["latency_per_inference_s_loihi1_figures"] > 0


def test_batch_equals_one_sample_at_a_time(rng):
    for g in (random_mlp(rng), random_convnet(rng), random_residual(rng)):
        x = spikes(rng, g, 4, 12)
        whole = simulate(g, x).output
        for i in range(4):
            np.testing.assert_array_equal(simulate(g, x[i : i + 1]).output, whole[i : i + 1])


@pytest.mark.parametrize(
    "x, needle",
    [
        (np.zeros((2, 12)), "rank"),
        (np.zeros((2, 11, 5)), "shape"),
        (np.full((1, 12, 3), 0.5), "non-integer"),
        (np.full((1, 12, 3), 2), "non-binary"),
        (np.zeros((1, 12, 3), dtype="U1"), "dtype"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(rng, x, needle):
    g = random_mlp(rng)
    with pytest.raises(UsageError, match=needle):
        simulate(g, x)


def test_fixed_graph_with_fractional_weights_is_refused():
    g = fixed_graph([Input("in", shape=(1,)), Dense("fc", weight=[[0.5]], neuron=lif())])
    with pytest.raises(SnncError, match="integer"):
        simulate(g, np.ones((1, 1, 2), np.int8))


# -- float graphs reproduce the float torch model
# ---------------------------------------------------
def test_float_graph_equals_the_torch_model():
    from snnc.nn.blocks import Conv as TConv
    from snnc.nn.blocks import Dense as TDense
    from snnc.nn.blocks import Flatten as TFlatten
    from snnc.nn.blocks import Pool as TPool
    from snnc.nn.neuron import NeuronParams

    torch.manual_seed(0)
    p1 = NeuronParams(threshold=0.8, current_decay=1000, voltage_decay=300)
    p2 = NeuronParams(threshold=0.6, current_decay=2048, voltage_decay=100)
    conv = TConv(1, 4, 3, padding=1, neuron=p1, bias=True, batch_norm=True)
    pool = TPool(2)
    dense = TDense(4 * 3 * 3, 5, neuron=p2)
    with torch.no_grad():
        conv.weight.mul_(3)
        conv.bias.uniform_(-0.2, 0.2)
        conv.bn.weight.uniform_(0.5, 1.5)
        conv.bn.bias.uniform_(-0.3, 0.3)
        conv.bn.running_mean.uniform_(-0.2, 0.2)
        conv.bn.running_var.uniform_(0.5, 2)
        dense.weight.mul_(4)
        dense.bias.uniform_(-0.1, 0.1)
    model = torch.nn.Sequential(conv, pool, TFlatten(), dense).double().eval()

    def lif_of(p, bias):
        return CubaLIF(
            threshold=p.threshold,
            current_decay=p.current_decay,
            voltage_decay=p.voltage_decay,
            bias=bias.detach().numpy(),
        )

    bn = conv.bn
    pn = pool.neuron
    g = Graph.from_list(
        [
            Input("in", shape=(1, 6, 6)),
            Conv(
                "c",
                weight=conv.weight.detach().numpy(),
                padding=1,
                neuron=lif_of(p1, conv.bias),
                bn=BatchNorm(
                    bn.weight.detach().numpy(),
                    bn.bias.detach().numpy(),
                    bn.running_mean.numpy(),
                    bn.running_var.numpy(),
                    bn.eps,
                ),
            ),
            Pool(
                "p",
                kernel=2,
                stride=2,
                weight=1.0,
                neuron=CubaLIF(pn.threshold, pn.current_decay, pn.voltage_decay),
            ),
            Flatten("f"),
            Dense("d", weight=dense.weight.detach().numpy(), neuron=lif_of(p2, dense.bias)),
            Output("out"),
        ],
        meta={"precision": "float"},
    ).verify()
    x = (torch.rand(8, 1, 6, 6, 20) < 0.4).double()
    with torch.no_grad():
        want = model(x).numpy()
    got = simulate(g, x.numpy().astype(np.int8), record=True)
    assert want.sum() > 10  # the comparison is not vacuous
    np.testing.assert_array_equal(got.output, want)


def test_large_batches_run_in_chunks_with_the_same_result(rng, monkeypatch):
    import snnc.sim.interpreter as sim_mod

    g = random_convnet(rng)
    x = spikes(rng, g, 7, 9)
    whole = simulate(g, x, record=True)
    monkeypatch.setattr(sim_mod, "_CHUNK_ELEMENTS", 1)  # one sample per chunk
    parts = simulate(g, x, record=True)
    np.testing.assert_array_equal(parts.output, whole.output)
    assert parts.spikes == whole.spikes and parts.synops == whole.synops
    for name in whole.layers:
        np.testing.assert_array_equal(parts.layers[name], whole.layers[name])


def test_a_node_kind_the_simulator_has_not_learnt_fails_loudly(rng, monkeypatch):
    """The interpreter and the compiled path dispatch on node kind (one visit_<kind> each): a new
    kind without a handler is an error naming it, never a silent fall-back."""
    from dataclasses import dataclass

    import snnc.sim.interpreter as sim_mod
    from snnc.ir import GraphError, Node

    @dataclass(frozen=True)
    class Identity(Node):
        kind = "identity"

        def out_shape(self, in_shape, src):
            return in_shape

    g = Graph.from_list(
        [Input("in", shape=(3,)), Identity("id"), Output("out")], meta={"precision": "fixed"}
    ).verify()
    x = np.ones((1, 3, 4), np.uint8)
    with pytest.raises(GraphError, match="id: the simulator does not support node kind 'identity'"):
        simulate(g, x)
    monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", True)
    with pytest.raises(GraphError, match="id: the simulator does not support node kind 'identity'"):
        simulate(g, x)
