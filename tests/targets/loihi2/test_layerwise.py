"""Layer by layer, step by step: snnc's simulator against Lava's fixed-point CPU model.

Every neuron layer's spikes (and ``u``/``v`` of chosen layers) are read from Lava
``Loihi2SimCfg(select_tag='fixed_pt')`` (:func:`snnc.targets.loihi2.probe.probe_lava`: a recorder
on every layer's output port, one reading ``lif.u``/``lif.v`` after every step) and compared with

- the numpy reference, :func:`snnc.sim.trace_layers` (spikes, ``u``, ``v``), and
- the compiled kernels, ``simulate(graph, x, record=True).layers`` (spikes only: they keep no state
  history).

Both sides record at the global step, each synapse's one step of latency included (docs/loihi2.md
§2.5), so they are compared without any shift. A silent layer proves nothing: each test demands a
minimum number of spikes per layer. Slow (~45 s together on 2 busy cores): every Lava network runs
as OS processes that synchronise every step.
"""

from __future__ import annotations

import time

import compile_helpers
import numpy as np
import pytest
from graph_helpers import even_weights, fixed_graph, neuron, spikes

from snnc.compile.pipeline import compile_model
from snnc.ir import Conv, CubaLIF, Dense, Flatten, Input
from snnc.ir.fixed import STATE_WRAP, V_MAX
from snnc.sim import simulate, trace_layers
from snnc.targets import TARGETS
from snnc.targets.loihi2 import netx_optimize_weight_bits
from snnc.targets.loihi2.probe import probe_lava
from snnc.targets.loihi2.spec import BIAS_MAX, BIAS_MIN, VTH_MAX

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def compare(label: str, graph, x, state=(), via=None, min_spikes: int = 20) -> dict:
    """Run ``x`` through Lava and the simulator; print one line per layer; assert 0 mismatches of
    spikes (numpy reference and compiled kernels) and of ``u``/``v`` (layers in ``state``), and at
    least ``min_spikes`` spikes in every layer. Returns ``{layer: (LavaLayer, LayerTrace)}``."""
    start = time.perf_counter()
    lava = probe_lava(graph, x, state=state, via=via)
    ref = trace_layers(graph, x)
    fast = simulate(graph, x, record=True).layers
    assert list(lava) == list(ref) == list(fast)
    n, t = x.shape[0], x.shape[-1]
    problems = []
    for name, got in lava.items():
        want = ref[name]
        counts = {
            "spikes(ref)": int(np.sum(got.spikes != want.spikes)),
            "spikes(kernels)": int(np.sum(got.spikes != fast[name])),
        }
        if name in state:
            counts["u"] = int(np.sum(got.u != want.u))
            counts["v"] = int(np.sum(got.v != want.v))
        lava_spikes, sim_spikes = int(got.spikes.sum()), int(want.spikes.sum())
        print(
            f"[{label}] {name}: {got.spikes.shape[1:-1]} lava {lava_spikes} sim {sim_spikes} "
            f"kernels {int(fast[name].sum())} spikes; mismatches {counts}; N={n} T={t}"
        )
        if any(counts.values()):
            diffs = {"spikes(ref)": got.spikes != want.spikes, "spikes(kernels)": got.spikes != fast[name]}
            if name in state:
                diffs.update(u=got.u != want.u, v=got.v != want.v)
            first = {k: np.argwhere(d)[0].tolist() for k, d in diffs.items() if d.any()}
            problems.append(f"{name}: {counts}, first mismatch (sample, *neuron, step): {first}")
        if lava_spikes < min_spikes:
            problems.append(f"{name}: only {lava_spikes} spikes (< {min_spikes}): the layer proves nothing")
    print(f"[{label}] {time.perf_counter() - start:.1f} s")
    assert not problems, "; ".join(problems)
    return {name: (lava[name], ref[name]) for name in lava}


def _zoo(monkeypatch, arch: str, shape, seed: int, keep: float):
    """A pruned zoo model (random channel and weight masks, :func:`compile_helpers.masked_model`) on
    ``shape`` inputs, compiled for Loihi 2."""
    monkeypatch.setattr(compile_helpers, "INPUT", tuple(shape))
    model = compile_helpers.masked_model(arch, seed, keep=keep)
    graph, _ = compile_model(model, TARGETS.get("loihi2"))
    return graph


def test_pruned_mnist_convnet_every_layer(monkeypatch):
    # The demo prunes half the channels (sparsity 0.5); so does this mask.
    g = _zoo(monkeypatch, "convnet", (1, 28, 28), seed=0, keep=0.5)
    kinds = [n.kind for n in g.nodes.values() if getattr(n, "neuron", None) is not None]
    assert kinds == ["conv", "conv", "pool", "conv", "dense"]
    x = (np.random.default_rng(1).random((3, 1, 28, 28, 100)) < 0.3).astype(np.uint8)
    conv2 = [n for n in g.nodes if g.nodes[n].kind == "conv"][1]
    compare("convnet", g, x, state=(conv2,))


@pytest.mark.parametrize("case", ["grouped", "dilated"])
def test_grouped_and_dilated_convs(case):
    rng = np.random.default_rng(21)
    if case == "grouped":  # groups 2 and 3, neither depthwise
        convs = [
            Conv(
                "g1",
                weight=2 * rng.integers(-30, 31, (6, 2, 3, 3)),
                groups=2,
                padding=1,
                neuron=neuron(rng, 6),
            ),
            Conv(
                "g2",
                weight=2 * rng.integers(-30, 31, (6, 2, 3, 3)),
                groups=3,
                stride=2,
                padding=(1, 0),
                neuron=neuron(rng, 6),
            ),
        ]
        in_shape = (4, 8, 8)
    else:  # a different dilation (and padding, stride) along y and x catches a swapped axis
        convs = [
            Conv(
                "d1",
                weight=2 * rng.integers(-30, 31, (4, 2, 3, 3)),
                dilation=(2, 3),
                padding=(2, 1),
                neuron=neuron(rng, 4),
            ),
            Conv(
                "d2",
                weight=2 * rng.integers(-25, 26, (3, 4, 3, 2)),
                dilation=2,
                stride=(1, 2),
                neuron=neuron(rng, 3),
            ),
        ]
        in_shape = (2, 12, 11)
    nodes = [Input("in", shape=in_shape), *convs, Flatten("flat")]
    flat = fixed_graph(nodes).shapes()["flat"][0]
    g = fixed_graph([*nodes, Dense("fc", weight=even_weights(rng, (5, flat)), neuron=neuron(rng, 5))])
    compare(case, g, spikes(rng, g, 3, 50, p=0.4), state=(convs[1].name,))


def test_weight_exp_nonzero():
    """Dense effective weight = weight * 2**weight_exp (§1.5, §2.2): exponents +2, -3 and -1; the
    small effective weights of ``e2`` make netx hand Lava a negative exponent of its own."""
    rng = np.random.default_rng(5)
    g = fixed_graph(
        [
            Input("in", shape=(24,)),
            Dense("e1", weight=rng.integers(-64, 64, (16, 24)), weight_exp=2, neuron=neuron(rng, 16)),
            Dense("e2", weight=16 * rng.integers(-12, 13, (12, 16)), weight_exp=-3, neuron=neuron(rng, 12)),
            Dense("e3", weight=4 * rng.integers(-60, 61, (6, 12)), weight_exp=-1, neuron=neuron(rng, 6)),
        ]
    )
    lava_exp = netx_optimize_weight_bits(g.nodes["e2"].weight * 2.0**-3)[2]
    assert lava_exp < 0  # Lava's Dense itself shifts the sums of e2
    compare("weight_exp", g, spikes(rng, g, 3, 50, p=0.4), state=("e2",))


def test_conv_weight_exp_nonzero():
    # One 1x1 conv, weight 1, weight_exp 1, one input spike at t = 0: Lava's u is 2 << 6 = 128 at
    # t = 1 (the writer hands Lava weight * 2**weight_exp; Lava's Conv has no exponent of its own).
    g = fixed_graph(
        [
            Input("in", shape=(1, 1, 1)),
            Conv("c", weight=np.ones((1, 1, 1, 1)), weight_exp=1, neuron=CubaLIF(1000, 0, 0)),
        ]
    )
    x = np.zeros((1, 1, 1, 1, 3), np.uint8)
    x[..., 0] = 1
    compare("conv weight_exp", g, x, state=("c",), min_spikes=0)


def test_bias_at_clip_limits():
    """13-bit bias mantissas at both ends, [-4096, 4095] (used << 6, spec.py / §2.1), on a dense and
    a conv layer; the largest 17-bit threshold, so a 4095 bias alone fires every ~32 steps and a
    -4096 bias drives v into negative saturation."""
    rng = np.random.default_rng(8)
    dense_bias = np.resize([BIAS_MIN, BIAS_MAX, 0, BIAS_MAX // 2], 12)
    conv_bias = np.array([BIAS_MAX, BIAS_MIN, BIAS_MAX])
    g = fixed_graph(
        [
            Input("in", shape=(2, 6, 6)),
            Conv(
                "cb",
                weight=2 * rng.integers(-45, 46, (3, 2, 3, 3)),
                padding=1,
                neuron=CubaLIF(VTH_MAX, 1024, 0, bias=conv_bias),
            ),
            Flatten("flat"),
            Dense(
                "db", weight=even_weights(rng, (12, 108), 254), neuron=CubaLIF(VTH_MAX, 512, 0, dense_bias)
            ),
            Dense("fc", weight=np.abs(even_weights(rng, (4, 12), 254)), neuron=CubaLIF(20, 2048, 1024)),
        ]
    )
    got = compare("bias limits", g, spikes(rng, g, 3, 100, p=0.4), state=("cb", "db"), min_spikes=4)
    lava_v = got["db"][0].v
    assert lava_v.min() == -V_MAX  # the -4096 neurons saturate
    assert got["cb"][0].spikes[:, 1].sum() == 0 and got["cb"][0].spikes[:, 0].sum() > 0


def test_u_wraps_and_v_saturates_at_24_bits():
    """No current decay and large same-sign weights push ``u`` past +-2**23, where it wraps (§2.1);
    no voltage decay saturates ``v`` at +-(2**23 - 1). A second population gets its current from a
    conv whose 24-bit sum itself wraps (§2.3: weights beyond 8 bits, which Lava does not clip)."""
    rng = np.random.default_rng(13)
    w = np.abs(even_weights(rng, (8, 32), 254))
    w[4:] *= -1  # four neurons driven up, four down
    g = fixed_graph(
        [
            Input("in", shape=(32,)),
            Dense("acc", weight=w, neuron=CubaLIF(VTH_MAX, 0, 0)),
            Dense("fc", weight=even_weights(rng, (6, 8), 254), neuron=neuron(rng, 6)),
        ]
    )
    got = compare("24-bit dense", g, spikes(rng, g, 3, 100, p=0.5), state=("acc",), min_spikes=4)
    u, v = got["acc"][0].u.astype(np.int64), got["acc"][0].v
    assert np.abs(np.diff(u, axis=-1)).max() > STATE_WRAP  # a wrap: u jumped by more than 2**23
    assert v.min() == -V_MAX

    big = np.array([[[[3, -2, 4], [5, 1, -6], [2, 7, 3]]]]) * 2**20  # |sum| up to 31 * 2**20 > 2**23
    gc = fixed_graph(
        [
            Input("in", shape=(1, 5, 5)),
            Conv("wrap", weight=big, padding=1, neuron=CubaLIF(VTH_MAX, 2048, 2048)),
            Flatten("flat"),
            Dense("fc", weight=even_weights(rng, (4, 25), 254), neuron=neuron(rng, 4)),
        ]
    )
    xc = spikes(rng, gc, 2, 50, p=0.6)
    got = compare("24-bit conv", gc, xc, state=("wrap",), via="processes", min_spikes=4)  # netx refuses them
    import torch

    sums = torch.nn.functional.conv2d(
        torch.from_numpy(np.moveaxis(xc, -1, 1).reshape(-1, 1, 5, 5).astype(np.float64)),
        torch.from_numpy(big.astype(np.float64)),
        padding=1,
    )
    assert sums.abs().max() > STATE_WRAP  # the 24-bit wrap of the conv sum did fire
    assert np.abs(got["wrap"][0].u).max() >= 2**22  # and the wrapped sums reached the state


def test_residual_zoo_net_as_lava_processes(monkeypatch):
    g = _zoo(monkeypatch, "resnet", (1, 28, 28), seed=1, keep=0.6)
    assert any(n.kind == "add" for n in g.nodes.values())
    adds = [n for n in g.nodes if g.nodes[n].kind == "add"]
    x = (np.random.default_rng(3).random((3, 1, 28, 28, 100)) < 0.3).astype(np.uint8)
    compare("resnet", g, x, state=(adds[0],))


def test_trace_layers_by_hand():
    """The simulator's recording alone, against a hand-computed case: weight 2, no decays, threshold 3
    (192 after << 6), one input spike at t = 0. From t = 1 on u = 2 << 6 = 128 stays (no decay); v
    climbs 128 per step and fires at 256 > 192, then resets to 0."""
    g = fixed_graph([Input("in", shape=(1,)), Dense("d", weight=[[2]], neuron=CubaLIF(3, 0, 0))])
    x = np.zeros((1, 1, 6), np.uint8)
    x[..., 0] = 1
    got = trace_layers(g, x)["d"]
    np.testing.assert_array_equal(got.u[0, 0], [0, 128, 128, 128, 128, 128])
    np.testing.assert_array_equal(got.v[0, 0], [0, 128, 0, 128, 0, 128])
    np.testing.assert_array_equal(got.spikes[0, 0], [0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(got.spikes, simulate(g, x, record=True).layers["d"])
