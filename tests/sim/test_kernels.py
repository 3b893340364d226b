"""The compiled simulator (snnc.sim.kernels) against the numpy simulator, on random graphs.

The numpy path is the reference that the hand-computed cases of test_sim.py and the Lava runs of
test_lava.py pin down; here every kernel (dense event/dot, conv scatter/im2col, LIF) and every
layout change (channels-last convs, flatten permutations, Add) must reproduce it exactly: the
output, every layer's spikes and the SynOps.
"""

from __future__ import annotations

import numpy as np
import pytest
from graph_helpers import fixed_graph, random_convnet, random_mlp, random_residual, spikes

import snnc.sim.interpreter as sim_mod
from snnc.ir import Add, Conv, CubaLIF, Dense, Flatten, Graph, Input, Output, Pool
from snnc.sim import kernels, simulate


def test_kernels_are_compiled():
    """numba is a dependency: without it every comparison below would be numpy against numpy."""
    assert kernels.kernels() is not None


def neuron(rng, c, big=False) -> CubaLIF:
    return CubaLIF(
        threshold=int(rng.integers(1, 400 if big else 150)),
        current_decay=int(rng.choice([0, 4096, int(rng.integers(0, 4097))])),
        voltage_decay=int(rng.choice([0, 4096, int(rng.integers(0, 4097))])),
        bias=rng.integers(-20, 21, c),
    )


def random_conv_graph(rng) -> Graph:
    """Input (C, H, W) -> 1-3 convs / pools with random geometry -> [flatten -> dense] or not."""
    c, h, w = int(rng.integers(1, 5)), int(rng.integers(5, 12)), int(rng.integers(5, 12))
    nodes: list = [Input("in", shape=(c, h, w))]
    for i in range(int(rng.integers(1, 4))):
        shape = Graph.from_list([*nodes, Output("o")]).shapes()["o"]
        c, h, w = shape
        if rng.random() < 0.25 and min(h, w) >= 2:
            nodes.append(
                Pool(
                    f"p{i}",
                    kernel=2,
                    stride=int(rng.integers(1, 3)),
                    weight=float(rng.integers(10, 80)),
                    neuron=neuron(rng, c),
                )
            )
            continue
        groups = int(rng.choice([g for g in (1, 2, c) if c % g == 0]))
        out = groups * int(rng.integers(1, 6))
        k = int(rng.integers(1, 4))
        dil = int(rng.integers(1, 3)) if k > 1 else 1
        pad = int(rng.integers(0, 3))
        if h + 2 * pad < dil * (k - 1) + 1 or w + 2 * pad < dil * (k - 1) + 1:
            pad, dil = k, 1
        scale = int(rng.choice([60, 3000]))  # 3000: int32 sums; a few layers pass 2**23 (wrap)
        nodes.append(
            Conv(
                f"c{i}",
                weight=rng.integers(-scale, scale + 1, (out, c // groups, k, k)),
                stride=int(rng.integers(1, 3)),
                padding=pad,
                dilation=dil,
                groups=groups,
                neuron=neuron(rng, out, big=scale > 100),
            )
        )
    nodes.append(Flatten("flat"))
    if rng.random() < 0.7:
        flat = Graph.from_list([*nodes, Output("o")]).shapes()["o"][0]
        nodes.append(
            Dense(
                "fc",
                weight=2 * rng.integers(-40, 41, (5, flat)),
                weight_exp=int(rng.integers(-2, 2)),
                neuron=neuron(rng, 5),
            )
        )
    elif rng.random() < 0.5:
        nodes.pop()  # the conv layer itself is the output: (N, C, H, W, T) back in PyTorch order
    return fixed_graph(nodes)


def both_paths(g: Graph, x: np.ndarray, monkeypatch):
    compiled = simulate(g, x, record=True)
    monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", True)
    plain = simulate(g, x, record=True)
    monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", False)
    return compiled, plain


def assert_same(compiled, plain) -> None:
    np.testing.assert_array_equal(compiled.output, plain.output)
    assert compiled.layers.keys() == plain.layers.keys()
    for name in plain.layers:
        np.testing.assert_array_equal(compiled.layers[name], plain.layers[name], err_msg=name)
    assert compiled.synops == plain.synops
    assert compiled.spikes == plain.spikes


@pytest.mark.parametrize("conv_kernel", ["event", "gemm", "lut", None])
@pytest.mark.parametrize("seed", range(8))
def test_random_conv_graphs_equal_the_numpy_simulator(seed, conv_kernel, monkeypatch):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(kernels, "FORCE_CONV", conv_kernel)
    for _ in range(20):  # draw until the net spikes at all, so that the comparison means something
        g = random_conv_graph(rng)
        n, t, p = int(rng.integers(1, 5)), int(rng.integers(3, 12)), float(rng.choice([0.05, 0.3, 0.8]))
        compiled, plain = both_paths(g, spikes(rng, g, n, t, p=p), monkeypatch)
        if sum(plain.spikes.values()) > 0:
            break
    assert sum(plain.spikes.values()) > 0
    assert_same(compiled, plain)


@pytest.mark.parametrize("conv_kernel", ["event", "gemm", "lut"])
def test_residual_and_zoo_like_graphs_equal_the_numpy_simulator(rng, conv_kernel, monkeypatch):
    monkeypatch.setattr(kernels, "FORCE_CONV", conv_kernel)
    for g in (random_mlp(rng), random_convnet(rng), random_convnet(rng, pool=False), random_residual(rng)):
        x = spikes(rng, g, 3, 25, p=0.4)
        assert_same(*both_paths(g, x, monkeypatch))


def test_dense_sums_in_every_width_equal_the_numpy_simulator(rng, monkeypatch):
    """int8 (even weights, factored), int16 and int32 weights; int32 and int64 sums; weight_exp both
    ways; a busy input with few outputs (the dot-product kernel) and a sparse one (event)."""
    graphs = [
        [Dense("fc", weight=2 * rng.integers(-60, 61, (40, 30)), weight_exp=-2, neuron=neuron(rng, 40))],
        [
            Dense(
                "fc", weight=rng.integers(-900, 901, (40, 30)), weight_exp=1, neuron=neuron(rng, 40, big=True)
            )
        ],
        [
            Dense(
                "fc",
                weight=rng.integers(-(2**16), 2**16, (70, 30)),
                neuron=CubaLIF(50, 100, 3000, bias=rng.integers(-9, 9, 70)),
            ),
            Dense("fc2", weight=rng.integers(-7, 8, (3, 70)), weight_exp=-1, neuron=CubaLIF(3, 0, 4096)),
        ],
        [Dense("fc", weight=rng.integers(-(2**30), 2**30, (4, 30)), neuron=CubaLIF(2**20, 0, 4096))],
    ]
    for body in graphs:
        g = fixed_graph([Input("in", shape=(30,)), *body])
        for p in (0.05, 0.9):
            assert_same(*both_paths(g, spikes(rng, g, 3, 20, p=p), monkeypatch))


def test_thread_count_does_not_change_results(rng, monkeypatch):
    g = random_convnet(rng)
    x = spikes(rng, g, 9, 12, p=0.5)
    monkeypatch.setenv("SNNC_THREADS", "1")
    one = simulate(g, x, record=True)
    monkeypatch.setenv("SNNC_THREADS", "3")
    three = simulate(g, x, record=True)
    assert_same(one, three)


def test_add_of_dense_synapses_equals_the_numpy_simulator(rng, monkeypatch):
    nodes = {
        "in": Input("in", shape=(12,)),
        "a": Dense("a", weight=rng.integers(-50, 51, (6, 12)), weight_exp=-1),
        "b": Dense("b", weight=2 * rng.integers(-50, 51, (6, 12))),
        "add": Add("add", neuron=neuron(rng, 6)),
        "out": Output("out"),
    }
    edges = (("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("add", "out"))
    g = Graph(nodes, edges, {"precision": "fixed"}).verify()
    assert_same(*both_paths(g, spikes(rng, g, 4, 15, p=0.4), monkeypatch))


@pytest.mark.parametrize("scale", [20, 3000, 2**19])  # 16-bit lanes, 32-bit lanes, sums past 2**23 (wrap)
@pytest.mark.parametrize("groups", [1, 2])
def test_table_conv_reads_whole_bytes_of_channels(rng, scale, groups, monkeypatch):
    """A conv on a channels-last input with 16 channels per group packs each byte from one 64-bit
    word of spikes (the table kernel's fast read); it must equal the numpy simulator, border taps,
    stride and the 24-bit wrap included."""
    monkeypatch.setattr(kernels, "FORCE_CONV", "lut")
    c = 16 * groups
    g = fixed_graph(
        [
            Input("in", shape=(3, 9, 10)),
            Conv("c0", weight=rng.integers(-40, 41, (c, 3, 3, 3)), padding=1, neuron=neuron(rng, c)),
            Conv(
                "c1",
                weight=rng.integers(-scale, scale + 1, (8, c // groups, 3, 3)),
                stride=2,
                padding=1,
                groups=groups,
                neuron=neuron(rng, 8, big=scale > 100),
            ),
        ]
    )
    tables = {step.name: step.ops.lut for step in kernels.plan(g).steps if step.kind == "conv"}
    assert tables["c0"] is not None and not tables["c0"].words  # 3 channels: bits gathered one by one
    assert tables["c1"] is not None and tables["c1"].words  # whole words
    bias = tables["c1"].bias  # sums packed in 16-bit lanes (4 a word) or 32-bit ones (2 a word)
    assert (bias < 2**15) == (scale == 20)
    x = spikes(rng, g, 3, 12, p=0.4)
    compiled, plain = both_paths(g, x, monkeypatch)
    assert plain.spikes["c0"] > 0 and plain.spikes["c1"] > 0
    assert_same(compiled, plain)


@pytest.mark.parametrize("seed", range(4))
def test_float64_lif_equals_the_int64_lif_at_the_extremes(seed):
    """The float64 LIF (used for int16/int32 currents) against the int64 one on currents that hit
    the 24-bit wrap of u, the clipping of v, negative decays' rounding toward zero and thresholds
    at both ends."""
    nk = pytest.importorskip("snnc.sim._numba_kernels")
    rng = np.random.default_rng(seed)
    n, t, m = 3, 40, 257
    a = np.concatenate(
        [
            rng.integers(-(2**31), 2**31, (n, t, m // 3)),
            rng.integers(-(2**18), 2**18, (n, t, m // 3)),
            rng.integers(-300, 300, (n, t, m // 6)),
            rng.integers(-3, 4, (n, t, m - 2 * (m // 3) - m // 6)),  # v of a few units: every +-1 shows
        ],
        axis=2,
    ).astype(np.int32)
    b = np.concatenate([rng.integers(-(2**20), 2**20, m // 2), rng.integers(-200, 200, m - m // 2)])
    fired = []
    settings = [(0, 0, 0), (4096, 4096, 2**23 - 2), (3072, 3840, 64 * 60), (1, 4095, 1), (2000, 3000, 90)]
    for keep_u, keep_v, vth in settings:
        ref_out, ref_cnt = np.zeros((n, t, m), np.uint8), np.zeros((n, m), np.int32)
        out, cnt = np.zeros((n, t, m), np.uint8), np.zeros((n, m), np.int32)
        nk.lif(a, b, keep_u, keep_v, vth, ref_out, ref_cnt, 0, n)
        nk.lif_f64(a, b, keep_u, keep_v, vth, out, cnt, 0, n)
        fired.append(ref_out.mean())
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(cnt, ref_cnt)
    assert all(0.05 < f < 0.95 for f in fired), fired


def random_chain(rng) -> Graph:
    """Input ((F,) or (C, H, W) + Flatten) -> 1-4 dense layers with LIF: weights even (int8 after
    the shared factor) or up to +-3000 (int16), weight_exp both ways, widths 1-90."""
    image = rng.random() < 0.3
    width = int(rng.integers(2, 60))
    nodes: list = [Input("in", shape=(2, 3, width // 2 + 1) if image else (width,))]
    if image:
        nodes.append(Flatten("flat"))
        width = 2 * 3 * (width // 2 + 1)
    for i in range(int(rng.integers(1, 5))):
        out = int(rng.integers(1, 90))
        big = rng.random() < 0.4
        w = rng.integers(-3000, 3001, (out, width)) if big else 2 * rng.integers(-60, 61, (out, width))
        exp = int(rng.integers(-2, 2))
        nodes.append(Dense(f"fc{i}", weight=w, weight_exp=exp, neuron=neuron(rng, out, big)))
        width = out
    return fixed_graph(nodes)


@pytest.mark.parametrize("seed", range(10))
def test_dense_chains_run_fused_and_equal_the_numpy_simulator(seed, monkeypatch):
    """input -> (dense + LIF) x L runs in one dense_chain pass (all layers per step): the output,
    every layer's spike count and SynOps must equal the numpy simulator and the layer-by-layer
    kernels, for sparse inputs (event sums, int16 shortcut) and busy ones (dot products)."""
    rng = np.random.default_rng(seed)
    g = random_chain(rng)
    assert kernels.plan(g).chain is not None
    for p in (0.05, 0.5, 0.95):
        x = spikes(rng, g, int(rng.integers(1, 6)), int(rng.integers(2, 30)), p=p)
        fused = simulate(g, x)
        monkeypatch.setattr(kernels, "CHAIN", False)
        layered = simulate(g, x)
        monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", True)
        plain = simulate(g, x)
        monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", False)
        monkeypatch.setattr(kernels, "CHAIN", True)
        for other in (layered, plain):
            np.testing.assert_array_equal(fused.output, other.output)
            assert fused.spikes == other.spikes
            assert fused.synops == other.synops


def test_graphs_that_are_not_dense_chains_run_layer_by_layer(rng):
    """A conv, an Add or sums past int32's float64-exact LIF keep the layer-by-layer kernels."""
    assert kernels.plan(random_convnet(rng)).chain is None
    assert kernels.plan(random_residual(rng)).chain is None
    big = rng.integers(-(2**30), 2**30, (4, 30))
    wide = fixed_graph([Input("in", shape=(30,)), Dense("fc", weight=big, neuron=CubaLIF(2**20, 0, 4096))])
    assert kernels.plan(wide).chain is None


@pytest.mark.parametrize("make", [random_convnet, random_mlp, random_residual])
def test_chunks_reuse_their_buffers_exactly(make, rng, monkeypatch):
    """Many chunks (the last one shorter) share one set of buffers: the same results as one chunk."""
    g = make(rng)
    x = spikes(rng, g, 7, 11, p=0.4)
    one = simulate(g, x, record=True)
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 1)  # chunks of threads() samples
    monkeypatch.setenv("SNNC_THREADS", "2")
    many = simulate(g, x, record=True)
    assert_same(one, many)
    np.testing.assert_array_equal(simulate(g, x).output, one.output)  # the fused chain too
