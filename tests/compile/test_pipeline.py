"""compile_model / compile_netx (Loihi 2) and the report (schema-validated)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from compile_helpers import masked_model, spikes

from snnc import ir
from snnc.compile.pipeline import compile_model
from snnc.compile.report import SCHEMA, graph_json, validate
from snnc.errors import SnncError
from snnc.sim import simulate
from snnc.targets.loihi2 import TARGET, compile_netx, run_lava, write_netx


def test_compile_model_report_is_valid():
    model = masked_model("resnet", seed=41)
    header = {"data": {"dataset": "digits", "steps": 12, "encoding": "rate"}}
    graph, report = compile_model(model, TARGET, header)
    assert graph.precision == "fixed"
    validate(report)
    assert report["data"] == header["data"]
    t = report["totals"]
    assert t["channels_after"] < t["channels_before"] and t["params_after"] < t["params_before"]
    assert t["cores"] == graph.meta["cores_used"]
    for layer in report["layers"]:
        assert layer["channels_after"] <= layer["channels_before"]
        assert layer["cores"] >= 1 and layer["sram_bytes"] > 0
        if layer["kind"] != "pool":
            assert layer["weight_bits"] == 8
    import json

    json.dumps(graph_json(graph))  # graph.json is JSON-serializable


def test_schema_rejects_bad_reports():
    _, report = compile_model(masked_model("mlp", seed=1), TARGET)
    bad = copy.deepcopy(report)
    del bad["layers"][0]["cores"]
    with pytest.raises(SnncError, match=r"layers\[0\].*cores"):
        validate(bad)
    bad = copy.deepcopy(report)
    bad["totals"]["cores"] = -1
    with pytest.raises(SnncError, match="minimum"):
        validate(bad, SCHEMA)
    bad = copy.deepcopy(report)
    bad["data"]["steps"] = "16"
    with pytest.raises(SnncError, match="report.data.steps"):
        validate(bad)


def _netx_with_dead_channels(tmp_path):
    """A fixed-point 3-layer MLP netx file like lava-dl writes after pruning: some rows all zero."""
    rng = np.random.default_rng(0)
    w1 = 2 * rng.integers(-40, 60, (12, 16))
    w1[[2, 5, 7]] = 0  # dead: no input, no bias
    w2 = 2 * rng.integers(-40, 60, (8, 12))
    w2[[1]] = 0
    w3 = 2 * rng.integers(-40, 60, (4, 8))
    bias1 = np.zeros(12)
    bias1[5] = 50  # a bias strong enough to fire: channel 5 must stay
    neuron = dict(threshold=200, current_decay=1024, voltage_decay=512)
    nodes = [
        ir.Input("input", shape=(16,)),
        ir.Dense("l1", weight=w1, neuron=ir.CubaLIF(**neuron, bias=bias1)),
        ir.Dense("l2", weight=w2, neuron=ir.CubaLIF(**neuron)),
        ir.Dense("l3", weight=w3, neuron=ir.CubaLIF(**neuron)),
        ir.Output("output"),
    ]
    g = ir.Graph.from_list(nodes, {"precision": "fixed"})
    path = tmp_path / "pruned.net"
    write_netx(g, path)
    return path


def test_compile_netx_removes_dead_channels_exactly(tmp_path):
    path = _netx_with_dead_channels(tmp_path)
    graph, report = compile_netx(path)
    validate(report)
    sh = graph.shapes()
    # read_netx names layers by their netx order
    assert list(sh.values())[1:4] == [(12 - 2,), (8 - 1,), (4,)]
    x = (np.random.default_rng(1).random((16, 16, 30)) < 0.4).astype(np.uint8)
    from snnc.targets.loihi2 import read_netx

    orig = simulate(read_netx(path), x).output
    assert orig.sum() > 0
    np.testing.assert_array_equal(simulate(graph, x).output, orig)
    out = tmp_path / "compressed.net"
    write_netx(graph, out)
    np.testing.assert_array_equal(simulate(read_netx(out), x).output, orig)


@pytest.mark.slow
def test_compile_netx_matches_original_in_lava(tmp_path):
    path = _netx_with_dead_channels(tmp_path)
    graph, _ = compile_netx(path)
    out = tmp_path / "compressed.net"
    write_netx(graph, out)
    x = (np.random.default_rng(2).random((2, 16, 20)) < 0.4).astype(np.uint8)
    lava_orig = run_lava(path, x)
    assert lava_orig.sum() > 0
    np.testing.assert_array_equal(run_lava(out, x), lava_orig)


def test_compile_model_with_calibration_is_lossy():
    model = masked_model("mlp", seed=5, keep=1.0, gain=1.0)
    calib = spikes(6, 12, seed=6, p=0.1)
    g_exact, r_exact = compile_model(model, TARGET)
    g_lossy, r_lossy = compile_model(model, TARGET, calibration=calib)
    assert r_lossy["lossy"] and not r_exact["lossy"]
    assert r_lossy["totals"]["params_after"] < r_exact["totals"]["params_after"]


def test_compile_netx_conv_net_removes_channels_through_pools(tmp_path):
    """A masked convnet written as netx (pools become per-channel grouped convs): the dead channels
    before and after the pools go, and the output spikes stay exactly the original's."""
    from compile_helpers import masked_model

    from snnc.compile.passes.fold_bn import fold_bn
    from snnc.compile.trace import trace
    from snnc.targets.loihi2 import read_netx
    from snnc.targets.loihi2.quantize import quantize

    fixed = quantize(fold_bn(trace(masked_model("lenet", seed=61, keep=0.6))))
    path = tmp_path / "masked.net"
    write_netx(fixed, path)
    original = read_netx(path)
    graph, report = compile_netx(path)
    assert report["totals"]["params_after"] < report["totals"]["params_before"]
    grouped = [n for n in graph.nodes.values() if isinstance(n, ir.Conv) and n.groups > 1]
    assert grouped and all(n.groups == n.weight.shape[0] for n in grouped)
    before = [n.weight.shape[0] for n in original.nodes.values() if isinstance(n, ir.Conv)]
    after = [n.weight.shape[0] for n in graph.nodes.values() if isinstance(n, ir.Conv)]
    assert all(a < b for a, b in zip(after, before, strict=True))
    x = spikes(4, 12, seed=62)
    ref = simulate(original, x).output
    assert ref.sum() > 0
    np.testing.assert_array_equal(simulate(graph, x).output, ref)
