"""quantize: float -> Loihi 2 fixed point, within the hardware ranges and close to the float net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compile_helpers import ARCHS, graphs_equal, masked_model, spikes
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snnc import data as D
from snnc import ir
from snnc.compile.passes.fold_bn import fold_bn
from snnc.compile.passes.remove_dead import remove_dead
from snnc.compile.pipeline import compile_graph
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.sim import simulate
from snnc.targets.loihi2 import TARGET
from snnc.targets.loihi2.quantize import quantize
from snnc.targets.loihi2.spec import BIAS_MAX, BIAS_MIN, VTH_MAX, W_MAX

floats = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)


def _netx_lava_effective(w: np.ndarray) -> np.ndarray:
    """The effective weights after lava-dl netx's ``optimize_weight_bits`` and Lava Dense's own
    clip and truncation at its first step (the real library functions, docs/loihi2.md §1.5)."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils import weightutils as wu

    stored, nwb, exp, _ = optimize_weight_bits(w.astype(int))
    mode = wu.determine_sign_mode(stored)
    eff = wu.truncate_weights(wu.clip_weights(stored, mode, 8), mode, nwb)
    return eff * 2.0**exp


def _lava_keeps(w: np.ndarray) -> bool:
    """Lava's own 8-bit clip and truncation (``num_weight_bits = max_num_weight_bits = 8``, the real
    library functions) leave the integers ``w`` unchanged: what one Loihi 2 synapse holds."""
    from lava.utils import weightutils as wu

    wi = np.asarray(w).astype(np.int64)
    assert np.array_equal(wi, w)
    mode = wu.determine_sign_mode(wi)
    kept = wu.truncate_weights(wu.clip_weights(wi, mode, 8), mode, 8, max_num_weight_bits=8)
    return bool(np.array_equal(kept, wi))


def _netx_nwb(w: np.ndarray) -> int:
    from lava.lib.dl.netx.utils import optimize_weight_bits

    return optimize_weight_bits(np.asarray(w).astype(int))[1]


def _check_8bit(graph: ir.Graph) -> dict[str, str]:
    """Every Dense/Conv/Pool of a fixed graph fits the 8-bit synapse (Lava's functions); a dense
    one also comes out of netx + Lava exactly with ``num_weight_bits <= 8``. Returns the sign mode
    of each synapse."""
    from lava.utils.weightutils import determine_sign_mode

    modes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Pool):
            w = np.array([node.weight])
        elif isinstance(node, ir.Dense | ir.Conv):
            assert node.weight_exp == 0, name
            w = node.weight
        else:
            continue
        assert _lava_keeps(w), (name, w.min(), w.max())
        if isinstance(node, ir.Dense) and np.any(w):
            np.testing.assert_array_equal(_netx_lava_effective(w), w)
            assert _netx_nwb(w) <= 8, name
        bits = node.meta.get("quant", {}).get("weight_bits")
        assert bits is None or 1 <= bits <= 8, (name, bits)
        modes[name] = determine_sign_mode(w.astype(np.int64)).name
    return modes


def _dense_graph(w, bias, threshold, cdecay=2048):
    nodes = [
        ir.Input("in", shape=(w.shape[1],)),
        ir.Dense("d", weight=w, neuron=ir.CubaLIF(threshold, cdecay, 1024, bias)),
        ir.Output("o"),
    ]
    return ir.Graph.from_list(nodes, {"precision": "float"})


@settings(max_examples=150, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    w=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=floats),
    bias=st.one_of(st.none(), hnp.arrays(np.float64, 6, elements=floats)),
    threshold=st.floats(0.01, 10.0),
    cdecay=st.integers(0, 4096),
)
def test_dense_ranges_and_netx_exactness(w, bias, threshold, cdecay):
    b = None if bias is None else bias[: w.shape[0]]
    q = quantize(_dense_graph(w, b, threshold, cdecay))
    assert q.precision == "fixed"
    d = q.nodes["d"]
    assert d.weight_exp == 0
    assert np.all(d.weight == np.round(d.weight))
    assert d.weight.min() >= -256 and d.weight.max() <= 255
    assert _lava_keeps(d.weight)  # one 8-bit synapse holds every weight
    assert 1 <= d.neuron.threshold <= VTH_MAX and d.neuron.threshold == int(d.neuron.threshold)
    if d.neuron.bias is not None:
        assert np.all(d.neuron.bias >= BIAS_MIN) and np.all(d.neuron.bias <= BIAS_MAX)
    # live rows and columns stay live
    np.testing.assert_array_equal(np.any(d.weight != 0, 1), np.any(w != 0, 1))
    np.testing.assert_array_equal(np.any(d.weight != 0, 0), np.any(w != 0, 0))
    # what netx + Lava make of the stored weights is exactly the integers (docs/loihi2.md §1.5)
    if not d.meta["quant"]["netx_exact"]:  # netx's trap: minus a power of two, all <= 0 (§1.5)
        m = -int(d.weight.min())
        assert d.weight.max() <= 0 and m & (m - 1) == 0
    elif np.any(d.weight):
        np.testing.assert_array_equal(_netx_lava_effective(d.weight), d.weight)
        assert _netx_nwb(d.weight) <= 8
    assert 1 <= d.meta["quant"]["weight_bits"] <= 8
    # the scale keeps u inside 24 bits when every input spikes every step
    s = d.meta["quant"]["scale"]
    assert s > 0
    if cdecay > 0 and np.any(w):
        pos = np.clip(d.weight, 0, None).sum(1).max()
        neg = np.clip(-d.weight, 0, None).sum(1).max()
        assert max(pos, neg) * 4096 / cdecay * 64 < 2**23


@settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    w=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)), elements=st.floats(-3.0, 0.0))
)
def test_non_positive_dense_is_even(w):
    q = quantize(_dense_graph(w, None, 1.0)).nodes["d"].weight
    assert np.all(q % 2 == 0)  # odd non-positive weights would be zeroed by Lava (docs/loihi2.md §1.5)


def test_tiny_positive_weight_rounding_to_zero_still_gives_even_matrix():
    w = np.array([[-0.05, 0.0, 0.0], [1e-5, 0.0, -0.34], [0.0, -0.01, 0.0]])
    q = quantize(_dense_graph(w, None, 1.0)).nodes["d"].weight
    assert q.max() <= 0 and np.all(q % 2 == 0)
    np.testing.assert_array_equal(_netx_lava_effective(q), q)


def _conv_graph(w, threshold=1.0, cdecay=2048):
    nodes = [
        ir.Input("in", shape=(w.shape[1], 5, 5)),
        ir.Conv("c", weight=w, padding=1, neuron=ir.CubaLIF(threshold, cdecay, 1024)),
        ir.Output("o"),
    ]
    return ir.Graph.from_list(nodes, {"precision": "float"})


_SIGNED = {"mixed": lambda w: w, "excitatory": np.abs, "inhibitory": lambda w: -np.abs(w)}


@settings(max_examples=120, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    w=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
        elements=floats,
    ),
    sign=st.sampled_from(sorted(_SIGNED)),
    threshold=st.floats(0.01, 10.0),
    cdecay=st.integers(0, 4096),
)
def test_random_conv_fits_8_bit_synapse(w, sign, threshold, cdecay):
    """Conv weights reach Lava raw with num_weight_bits = 8 (docs/loihi2.md §1.4): Lava's clip and
    truncation keep them, in every sign mode; live output and input channels stay live."""
    w = _SIGNED[sign](w)
    q = quantize(_conv_graph(w, threshold, cdecay))
    c = q.nodes["c"]
    _check_8bit(q)
    np.testing.assert_array_equal(np.any(c.weight != 0, (1, 2, 3)), np.any(w != 0, (1, 2, 3)))
    np.testing.assert_array_equal(np.any(c.weight != 0, (0, 2, 3)), np.any(w != 0, (0, 2, 3)))
    if sign != "mixed" and np.any(w):
        assert (c.weight.min() >= 0) == (sign == "excitatory")


@settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    w=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=floats),
    sign=st.sampled_from(sorted(_SIGNED)),
)
def test_random_dense_fits_8_bit_synapse_in_every_sign_mode(w, sign):
    q = quantize(_dense_graph(_SIGNED[sign](w), None, 1.0))
    d = q.nodes["d"]
    assert _lava_keeps(d.weight)
    if d.meta["quant"]["netx_exact"] and np.any(d.weight):
        np.testing.assert_array_equal(_netx_lava_effective(d.weight), d.weight)
        assert _netx_nwb(d.weight) <= 8


@pytest.mark.parametrize(
    ("kind", "sign", "lo", "hi", "even"),
    [
        ("dense", "mixed", -254, 254, True),
        ("conv", "mixed", -254, 254, True),
        ("dense", "excitatory", 0, 255, False),
        ("conv", "excitatory", 0, 255, False),
        ("dense", "inhibitory", -254, 0, True),  # netx: odd <= 0 values can be zeroed (§1.5)
        ("conv", "inhibitory", -255, 0, False),
    ],
)
def test_each_sign_mode_uses_its_whole_8_bit_range(kind, sign, lo, hi, even):
    """The weight bound puts the largest weight at the edge of its mode's range: 8 bits used."""
    rng = np.random.default_rng(3)
    w = _SIGNED[sign](rng.normal(0, 0.3, (6, 4) if kind == "dense" else (6, 4, 3, 3)))
    w.flat[0] = {"mixed": 1.0, "excitatory": 1.0, "inhibitory": -1.0}[sign]  # the largest magnitude
    g = _dense_graph(w, None, 1.0) if kind == "dense" else _conv_graph(w)
    node = quantize(g).nodes["d" if kind == "dense" else "c"]
    q = node.weight
    assert q.flat[0] == (hi if sign != "inhibitory" else lo)
    assert q.min() >= lo and q.max() <= hi and _lava_keeps(q)
    assert np.all(q % 2 == 0) if even else np.any(q % 2)  # odd values where the mode allows them
    assert node.meta["quant"]["weight_bits"] == 8
    assert node.meta["quant"]["limited_by"] == "weight"


def test_negative_dominated_mixed_layer_reaches_minus_256():
    w = np.array([[-1.0, 0.5, 0.2], [0.1, -0.3, 0.0]])
    d = quantize(_dense_graph(w, None, 1.0)).nodes["d"]
    assert d.weight.min() == -256 and d.weight.max() == 128 and _lava_keeps(d.weight)
    np.testing.assert_array_equal(_netx_lava_effective(d.weight), d.weight)


def test_mixed_layer_rounding_to_inhibitory_stays_in_range():
    """-256 is only legal in mixed mode: a layer whose positive weights vanish keeps to -255..0."""
    w = np.array([[-1.0, 1e-6], [-0.3, -0.5]])
    for g, n in ((_dense_graph(w, None, 1.0), "d"), (_conv_graph(w.reshape(2, 2, 1, 1)), "c")):
        q = quantize(g).nodes[n].weight
        assert q.max() == 0 and q.min() == -254 and _lava_keeps(q)


def test_power_of_two_inhibitory_dense_is_made_exact_for_netx():
    """netx turns an all-<=0 matrix with minimum -128 into -127 (§1.5): the scale moves off it."""
    w = np.array([[-1.0, -0.25, 0.0], [-0.5, 0.0, -0.125]])
    d = quantize(_dense_graph(w, np.array([500.0, 0.0]), 1.0)).nodes["d"]  # bias sets the scale
    assert d.meta["quant"]["netx_exact"]
    np.testing.assert_array_equal(_netx_lava_effective(d.weight), d.weight)
    assert -int(d.weight.min()) & (-int(d.weight.min()) - 1) != 0


@pytest.mark.parametrize("arch", ARCHS)
def test_compiled_zoo_models_fit_8_bit_synapses(arch):
    """Every synapse of a compiled zoo model (random masks, biases, BN) survives Lava's own 8-bit
    clip and truncation, and every dense matrix netx's scaling, with num_weight_bits <= 8."""
    for seed in (7, 8):
        c = compile_graph(trace(masked_model(arch, seed=seed)), TARGET)
        modes = _check_8bit(c.final)
        assert modes and set(modes.values()) <= {"MIXED", "EXCITATORY", "INHIBITORY"}
        quant = [n.meta.get("quant", {}) for n in c.final.nodes.values()]
        bits = [q["weight_bits"] for q in quant if "weight_bits" in q]
        assert max(bits) == 8


def test_writer_refuses_weights_beyond_8_bits(tmp_path):
    from graph_helpers import fixed_graph

    from snnc.targets.loihi2 import write_netx

    n = ir.CubaLIF(threshold=10, current_decay=0, voltage_decay=0)
    odd = fixed_graph([ir.Input("in", shape=(3,)), ir.Dense("fc", weight=[[253, -2, 4]], neuron=n)])
    with pytest.raises(SnncError, match="8-bit synapse.*even"):
        write_netx(odd, tmp_path / "a.net")
    conv = ir.Conv("c", weight=np.array([-3, 2]).reshape(2, 1, 1, 1), neuron=ir.CubaLIF(10, 0, 0))
    with pytest.raises(SnncError, match="c: conv weights do not fit.*even"):
        write_netx(fixed_graph([ir.Input("in", shape=(1, 2, 2)), conv]), tmp_path / "b.net")
    assert not list(tmp_path.iterdir())


def test_relative_error_is_small_and_reported():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (20, 30))
    q = quantize(_dense_graph(w, rng.normal(0, 0.1, 20), 1.0))
    info = q.nodes["d"].meta["quant"]
    assert info["limited_by"] == "weight" and np.abs(q.nodes["d"].weight).max() >= W_MAX - 1
    assert info["weight_rmse_rel"] < 0.01 and info["threshold_rel_err"] < 1e-12  # vth exact
    assert info["bias_clipped"] == 0 and info["weight_bits"] == 8


def test_pool_is_exact():
    nodes = [
        ir.Input("in", shape=(2, 4, 4)),
        ir.Pool("p", neuron=ir.CubaLIF(0.5, 4096, 4096)),
        ir.Output("o"),
    ]
    q = quantize(ir.Graph.from_list(nodes, {"precision": "float"})).nodes["p"]
    assert q.weight == 2 and q.neuron.threshold == 1
    x = spikes(3, 10, seed=1)[:, :1].repeat(2, axis=1)[:, :, :4, :4]
    g = ir.Graph.from_list(nodes, {"precision": "float"})
    np.testing.assert_array_equal(simulate(quantize(g), x).output, simulate(g, x).output)


def test_unfolded_bn_is_an_error():
    with pytest.raises(SnncError, match="fold_bn"):
        quantize(trace(masked_model("convnet", seed=1)))


@pytest.mark.parametrize("arch", ARCHS)
def test_pipeline_is_idempotent(arch):
    """fold_bn -> remove_dead -> quantize, run twice, gives the same graph."""
    graph = trace(masked_model(arch, seed=31))
    once = quantize(remove_dead(fold_bn(graph)))
    twice = quantize(remove_dead(fold_bn(once)))
    assert graphs_equal(once, twice)
    assert once.precision == "fixed"


def _all_digits(steps: int, encoding: str):
    ds = D.load("digits")
    x = np.concatenate([ds.train[0], ds.val[0], ds.test[0]])
    y = np.concatenate([ds.train[1], ds.val[1], ds.test[1]])
    gen = torch.Generator().manual_seed(0)
    return D.encode(x, steps, encoding, generator=gen).numpy().astype(np.uint8), y


def _fixed_vs_float(model) -> tuple[float, float]:
    c = compile_graph(trace(model), TARGET)
    _check_8bit(c.final)  # the trained model's synapses fit 8 bits too
    x, y = _all_digits(16, "rate")
    acc_float = float((simulate(c.source, x).output.sum(-1).argmax(1) == y).mean())
    acc_fixed = float((simulate(c.final, x).output.sum(-1).argmax(1) == y).mean())
    return acc_float, acc_fixed


@pytest.mark.slow
def test_fixed_point_mlp_within_one_point(trained_mlp):
    model, _ = trained_mlp
    acc_float, acc_fixed = _fixed_vs_float(model)
    assert acc_float > 0.8
    assert abs(acc_fixed - acc_float) <= 0.01, (acc_float, acc_fixed)


@pytest.mark.slow
def test_fixed_point_convnet_within_one_point(trained_convnet):
    model, _ = trained_convnet
    acc_float, acc_fixed = _fixed_vs_float(model)
    assert acc_float > 0.7
    assert abs(acc_fixed - acc_float) <= 0.01, (acc_float, acc_fixed)


def test_unreachable_readout_threshold_is_deployed_in_17_bits_with_a_note():
    """A fixed graph's readout with netx's non-spiking default ``vThMant = 1 << 17`` (above every
    24-bit voltage) is deployed with ``VTH_MAX``; while its ``v`` stays below ``VTH_MAX << 6`` the
    readout's voltage and the output are those of the file (hand-checked: ``v`` = the summed weights
    of the inputs that spiked one step earlier, ``dv = 4096``)."""
    from snnc.sim.interpreter import trace_layers

    w = np.array([[40, -20, 10], [5, 5, 5]], np.int64)
    nodes = [
        ir.Input("input", shape=(3,)),
        ir.Dense("readout", weight=w, neuron=ir.CubaLIF(1 << 17, 4096, 4096)),
        ir.Output("output"),
    ]
    graph = ir.Graph.from_list(nodes, {"precision": "fixed"})
    built = compile_graph(graph, TARGET).final
    assert built.nodes["readout"].neuron.threshold == VTH_MAX
    (line,) = [n for n in built.meta["notes"] if "threshold mantissa" in n]
    assert "readout" in line and f"deployed as {VTH_MAX}" in line
    x = (np.random.default_rng(3).random((4, 3, 6)) < 0.5).astype(np.uint8)
    v = trace_layers(built, x)["readout"].v
    expected = np.zeros_like(v)
    expected[..., 1:] = np.einsum("oi,nit->not", w, x[..., :-1].astype(np.int64)) << 6
    np.testing.assert_array_equal(v, expected)
    np.testing.assert_array_equal(v, trace_layers(graph, x)["readout"].v)
    assert simulate(built, x).output.sum() == 0
