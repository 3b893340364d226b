"""Sparse synapses where pruning made a dense layer sparse: map_cores' choice and memory count, the
netx file's per-layer ``synapse`` key, Lava ``Sparse`` processes (netx and the process builder)
equal to ``sim``, and the report counting what is deployed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from snnc import ir
from snnc.cli import cli
from snnc.sim import simulate
from snnc.targets import TARGETS
from snnc.targets.loihi2.lava import build_processes, connect_source, netx_network, run_lava
from snnc.targets.loihi2.map_cores import map_cores
from snnc.targets.loihi2.netx import netx_synapses, write_netx
from snnc.targets.loihi2.spec import CoreLimits


def _one_dense(weight: np.ndarray, bits: int = 8) -> ir.Graph:
    fc = ir.Dense("fc", weight=weight, neuron=ir.CubaLIF(100, 1024, 512))
    fc = ir.replace(fc, meta={"quant": {"weight_bits": bits}})
    nodes = [ir.Input("in", shape=(weight.shape[1],)), fc, ir.Output("o")]
    return ir.Graph.from_list(nodes, {"precision": "fixed"})


def test_map_cores_counts_sparse_layer_memory_hand_computed():
    # 10 neurons x 64 inputs; rows 0-4 hold 3 nonzeros, rows 5-9 one (20 in all, 20 distinct inputs).
    # Weights 2..20: netx deploys them with num_weight_bits 4, so a synapse is 4 + 13 bits (§4.1).
    w = np.zeros((10, 64), np.int64)
    for r in range(10):
        w[r, [(7 * r + k) % 64 for k in range(3 if r < 5 else 1)]] = 2 * (r + 1)
    g = map_cores(_one_dense(w))
    node = g.nodes["fc"]
    m = node.meta["mapping"]
    # sparse: each of the 20 inputs holds one synapse of 17 + ceil(log2 10) = 21 bits: one 64-bit word
    # each; dense: 64 inputs x ceil(10 * 17 / 64) = 3 words
    assert node.meta["synapse"] == "sparse" and m["synapse_encoding"] == "sparse"
    assert m["synapses"] == m["nonzero_synapses"] == 20
    assert m["synapse_bytes"] == 20 * 8
    assert m["sram_bytes_per_core"] == 20 * 8 and m["synapse_words_per_core"] == 20
    assert m["zero_weight_bytes"] == 0 and m["synops_per_input_spike"] == pytest.approx(20 / 64)
    # two cores of 5 neurons: the fuller chunk (rows 0-4, 15 inputs of one synapse) sets the need
    m2 = map_cores(_one_dense(w), CoreLimits(neurons_per_core=5)).nodes["fc"].meta["mapping"]
    assert m2["cores"] == 2 and m2["sram_bytes_per_core"] == 15 * 8
    assert m2["sram_bytes"] == 20 * 8
    # the same layer kept dense: every weight, zeros included
    d = map_cores(_one_dense(w), sparse=False).nodes["fc"]
    assert d.meta["synapse"] == "dense" and d.meta["mapping"]["synapses"] == 640
    assert d.meta["mapping"]["synapse_bytes"] == 64 * 3 * 8  # 1536, of which 620/640 zeros
    assert d.meta["mapping"]["zero_weight_bytes"] == 1536 * 620 // 640


def test_unpruned_and_mildly_pruned_dense_layers_stay_dense():
    rng = np.random.default_rng(0)
    w = 2 * rng.integers(1, 60, (10, 64))
    assert map_cores(_one_dense(w)).nodes["fc"].meta["synapse"] == "dense"
    # 40% zeros (weights up to 118: 6 bits, 19 per synapse): each input keeps 6 synapses, sparse
    # 6 * (19 + 4) bits = 3 words per input, no fewer than dense's ceil(10 * 19 / 64) = 3
    w[:4] = 0
    g = map_cores(_one_dense(w))
    assert g.nodes["fc"].meta["synapse"] == "dense"
    assert g.nodes["fc"].meta["mapping"]["zero_weight_bytes"] == 64 * 3 * 8 * 4 // 10


def test_conv_zero_taps_are_reported_as_occupying_memory():
    from snnc.compile.report import build_report

    w = np.full((4, 2, 3, 3), 2)
    w[:, :, 0, :] = 0  # a third of every kernel is zero
    conv = ir.replace(
        ir.Conv("c", weight=w, neuron=ir.CubaLIF(100, 1024, 512)), meta={"quant": {"weight_bits": 8}}
    )
    g = ir.Graph.from_list([ir.Input("in", shape=(2, 6, 6)), conv, ir.Output("o")], {"precision": "fixed"})
    mapped = map_cores(g)
    m = mapped.nodes["c"].meta["mapping"]
    # 2 input channels x 9 taps = 18 rows of the 4 output channels' 8-bit weights: one word each
    assert m["synapse_encoding"] == "conv" and m["synapse_bytes"] == 18 * 8 and m["zero_weight_bytes"] == 48
    report = build_report(
        g, mapped, {"kind": "graph", "path": ""}, {"dataset": None, "steps": 4, "encoding": "rate"}
    )
    assert report["layers"][0]["zero_weight_bytes"] == 48
    assert any("c: 48 of 144 bytes" in n and "still occupy" in n for n in report["notes"])


def _mixed_graph() -> ir.Graph:
    """16 -> 12 (all weights nonzero: dense) -> 6 (80% zeros: sparse), even weights netx keeps."""
    rng = np.random.default_rng(3)
    w1 = 2 * rng.integers(1, 40, (12, 16)) * rng.choice([-1, 1, 1], (12, 16))
    w2 = 2 * rng.integers(10, 60, (6, 12)) * (rng.random((6, 12)) < 0.2)
    w2[:, 0] = 60  # every neuron keeps an input
    nodes = [
        ir.Input("in", shape=(16,)),
        ir.Dense("d1", weight=w1, neuron=ir.CubaLIF(60, 1024, 512)),
        ir.Dense("d2", weight=w2, neuron=ir.CubaLIF(40, 1024, 512)),
        ir.Output("o"),
    ]
    return map_cores(ir.Graph.from_list(nodes, {"precision": "fixed"}))


def _run_processes(graph: ir.Graph, sample: np.ndarray) -> tuple[np.ndarray, dict]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    procs, in_ports, last = build_processes(graph)
    src = io.source.RingBuffer(data=sample.astype(np.int32))
    connect_source(src, in_ports, sample.ndim)
    sink = io.sink.RingBuffer(shape=last.shape, buffer=sample.shape[-1])
    last.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=sample.shape[-1]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        y = np.asarray(sink.data.get())
    finally:
        src.stop()
    return y, procs


@pytest.mark.slow
def test_mixed_dense_and_sparse_layers_run_in_lava_as_sim(tmp_path):
    g = _mixed_graph()
    assert [g.nodes[n].meta["synapse"] for n in ("d1", "d2")] == ["dense", "sparse"]
    x = (np.random.default_rng(1).random((2, 16, 12)) < 0.5).astype(np.uint8)
    want = simulate(g, x).output
    assert want.sum() > 0
    path = tmp_path / "n.net"
    write_netx(g, path)
    assert netx_synapses(path) == ["dense", "sparse"]
    net = netx_network(path)  # netx's sparse_fc_layer is all-or-none: per layer through create_dense
    assert [type(b.synapse).__name__ for b in net.layers] == ["Dense", "Sparse"]
    np.testing.assert_array_equal(run_lava(path, x[:1]), want[:1])
    y, procs = _run_processes(g, x[1])  # the direct process builder
    assert [type(procs[n]).__name__ for n in ("d1", "d2")] == ["Dense", "Sparse"]
    np.testing.assert_array_equal(y, want[1])
    build = tmp_path / "build"  # the standalone runner shipped in a build
    build.mkdir()
    TARGETS.get("loihi2").emit(g, build)
    np.testing.assert_array_equal(_run_runner(build, x[1:], tmp_path), want[1:])


def _run_runner(build, x: np.ndarray, tmp_path) -> np.ndarray:
    np.save(tmp_path / "x.npy", x)
    args = ["--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    proc = subprocess.run(
        [sys.executable, str(build / "run_loihi2.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(tmp_path / "y.npy")


def _cli(*args: str) -> None:
    res = CliRunner().invoke(cli, [*args, "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_relief_pruned_mlp_deploys_sparse_synapses(tmp_path):
    """snnc train -> prune --method relief -> compile: sparse synapses, fewer bytes than the same
    graph kept dense, Lava (netx through the shipped runner and run_lava) equal to sim."""
    import torch

    from snnc.data import encode, load
    from snnc.ir.serialize import load_graph

    m, p = tmp_path / "m.pt", tmp_path / "p.pt"
    common = ["--train-limit", "256", "--seed", "0"]
    train = ["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--steps", "8"]
    _cli(*train, "-o", str(m), *common)
    _cli("prune", str(m), "--method", "relief", "--sparsity", "0.8", "--epochs", "1", "-o", str(p), *common)
    dense_build, build = tmp_path / "dense", tmp_path / "b"
    _cli("compile", str(m), "--target", "loihi2", "-o", str(dense_build))
    _cli("compile", str(p), "--target", "loihi2", "-o", str(build))

    unpruned = json.loads((dense_build / "report.json").read_text())
    assert {r["synapse_encoding"] for r in unpruned["layers"]} == {"dense"}  # unpruned stays dense
    report = json.loads((build / "report.json").read_text())
    assert "sparse" in {r["synapse_encoding"] for r in report["layers"]}
    g = load_graph(build / "graph.safetensors")
    dense = map_cores(g, sparse=False)  # the same graph with every dense layer kept dense
    sparse_bytes = sum(r["synapse_bytes"] for r in report["layers"])
    dense_bytes = sum(dense.nodes[r["name"]].meta["mapping"]["synapse_bytes"] for r in report["layers"])
    assert report["totals"]["synapse_bytes"] == sparse_bytes < dense_bytes
    dense_sram = sum(dense.nodes[r["name"]].meta["mapping"]["sram_bytes"] for r in report["layers"])
    assert report["totals"]["sram_bytes"] < dense_sram
    sram = report["totals"]["sram_bytes"]
    print(f"synapse bytes: sparse {sparse_bytes}, dense {dense_bytes}; SRAM {sram} vs {dense_sram}")
    for r in report["layers"]:
        node = g.nodes[r["name"]]
        if r["synapse_encoding"] == "sparse":
            assert r["synapses"] == int(np.count_nonzero(node.weight)) < node.weight.size

    images = load("digits").split("test")[0][:2]
    x = encode(images, 12, "rate", torch.Generator().manual_seed(0)).numpy().astype(np.uint8)
    want = simulate(g, x).output
    assert want.sum() > 0
    kinds = netx_synapses(build / "network.net")
    assert kinds == [r["synapse_encoding"] for r in report["layers"]]
    np.testing.assert_array_equal(_run_runner(build, x, tmp_path), want)  # 0 mismatches
    np.testing.assert_array_equal(run_lava(build / "network.net", x[:1]), want[:1])
