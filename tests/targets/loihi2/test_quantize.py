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
    assert d.weight.min() >= -256 and d.weight.max() <= W_MAX
    assert 1 <= d.neuron.threshold <= VTH_MAX and d.neuron.threshold == int(d.neuron.threshold)
    if d.neuron.bias is not None:
        assert np.all(d.neuron.bias >= BIAS_MIN) and np.all(d.neuron.bias <= BIAS_MAX)
    # live rows and columns stay live
    np.testing.assert_array_equal(np.any(d.weight != 0, 1), np.any(w != 0, 1))
    np.testing.assert_array_equal(np.any(d.weight != 0, 0), np.any(w != 0, 0))
    # what netx + Lava make of the stored weights is exactly the integers (docs/loihi2.md §1.5)
    if not d.meta["quant"]["netx_exact"]:
        assert d.weight.max() <= 0 and d.weight.min() != -W_MAX
    elif np.any(d.weight):
        np.testing.assert_array_equal(_netx_lava_effective(d.weight), d.weight)
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


def test_relative_error_is_small_and_reported():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (20, 30))
    q = quantize(_dense_graph(w, rng.normal(0, 0.1, 20), 1.0))
    info = q.nodes["d"].meta["quant"]
    assert info["limited_by"] == "weight" and np.abs(q.nodes["d"].weight).max() >= W_MAX - 1
    assert info["weight_rmse_rel"] < 0.01 and info["threshold_rel_err"] < 1e-12  # vth exact
    assert info["bias_clipped"] == 0 and info["weight_bits"] == 9


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
