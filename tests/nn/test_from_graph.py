"""IR graphs (netx, NIR) as trainable models: the float model's spikes against snnc's simulator on the
same graph, and ``snnc prune NET.net|NET.nir`` -> ``snnc compile`` -> Lava."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_snnc

from snnc import ir
from snnc.errors import SnncError
from snnc.nn.from_graph import graph_to_model
from snnc.nn.zoo import LAYERS, build, describe
from snnc.sim import simulate


def oxford_like(seed: int = 7) -> ir.Graph:
    """lava-dl's Oxford netx net in shape and neurons (dense 200 -> 256 -> 200, CUBA with iDecay 4096
    and vDecay 415/409), with random even 8-bit weights from ``seed`` and thresholds for ~10% rates."""
    rng = np.random.default_rng(seed)

    def w(o, i):
        return np.clip(np.round(rng.normal(0, 24, (o, i)) / 2) * 2, -128, 126).astype(np.int64)

    return ir.Graph.from_list(
        [
            ir.Input("input", shape=(200,)),
            ir.Dense("dense0", weight=w(256, 200), neuron=ir.CubaLIF(40, 4096, 415)),
            ir.Dense("dense1", weight=w(200, 256), neuron=ir.CubaLIF(40, 4096, 409)),
            ir.Output("output"),
        ],
        meta={"precision": "fixed"},
    )


def spikes(shape, t, p, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((*shape, t)) < p).astype(np.uint8)


def model_spikes(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.double()(torch.from_numpy(x).double()).numpy().astype(np.int8)


def test_oxford_like_netx_float_model_equals_float_graph_and_nearly_fixed():
    graph = oxford_like()
    model = graph_to_model(graph)
    assert model.arch["name"] == LAYERS and model.input_shape == (200,)
    thresholds = [spec["neuron"]["threshold"] for spec in model.arch["config"]["layers"]]
    assert thresholds == [40 / 32, 40 / 32]  # divided by 2**round(log2 40) = 32
    x = spikes((16, 200), 64, 0.05)
    ours = model_spikes(model, x)
    float_ref = simulate(graph.with_meta(precision="float"), x).output
    fixed_ref = simulate(graph, x).output  # what Lava computes (docs/loihi2.md §2.6)
    assert float_ref.sum() > 500  # the layers do fire
    assert np.array_equal(ours, float_ref)  # the same equations: identical spikes
    # fixed point rounds u and v toward zero each step: rare differences only
    assert (ours == fixed_ref).mean() > 0.99


def conv_models():
    """Zoo nets with every block kind the importer maps (conv, pool, flatten, dense, residual),
    with random biases so every neuron parameter is exercised."""
    torch.manual_seed(3)
    out = []
    for arch in ("lenet", "resnet"):
        m = build(arch, {"input_shape": [1, 8, 8], "num_classes": 10, "neuron": {"threshold": 0.6}})
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.endswith("bias") and "bn" not in name:
                    p.normal_(0, 0.1)
                elif name.endswith("weight") and "bn" not in name:
                    p.mul_(3.0)
        out.append(m.eval())
    return out


@pytest.mark.parametrize("model", conv_models(), ids=["lenet", "resnet"])
def test_traced_graph_round_trips_through_the_importer(model):
    from snnc.compile.passes.fold_bn import fold_bn
    from snnc.compile.trace import trace

    graph = fold_bn(trace(model))  # batch-norm folded: the form a NIR or netx file holds
    imported = graph_to_model(graph)
    x = spikes((8, 1, 8, 8), 24, 0.3, seed=1)
    ref = simulate(graph, x).output
    assert ref.sum() > 0
    assert np.array_equal(model_spikes(imported, x), ref)


def test_nir_file_round_trip(tmp_path):
    from snnc.compile.passes.fold_bn import fold_bn
    from snnc.compile.trace import trace
    from snnc.targets.nir import read_nir, write_nir

    model = conv_models()[0]
    write_nir(fold_bn(trace(model)), tmp_path / "net.nir")
    graph = read_nir(tmp_path / "net.nir")
    x = spikes((8, 1, 8, 8), 24, 0.3, seed=2)
    assert np.array_equal(model_spikes(graph_to_model(graph), x), simulate(graph, x).output)


def test_describe_rebuilds_a_hand_assembled_net():
    from snnc.nn import Conv, Dense, Flatten, NeuronParams, Pool, SpikingNet

    n = NeuronParams(threshold=0.7, current_decay=1024, voltage_decay=512)
    torch.manual_seed(0)
    net = SpikingNet(
        [Conv(1, 3, 3, padding=1, neuron=n, pool=2), Pool(2), Flatten(), Dense(12, 5, n)], (1, 8, 8), {}
    )
    rebuilt = build(LAYERS, describe(net))
    rebuilt.load_state_dict(net.state_dict())
    x = torch.from_numpy(spikes((4, 1, 8, 8), 10, 0.5)).float()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_refusals_are_one_line():
    lif = ir.CubaLIF(10, 4096, 0)
    w = np.ones((4, 4))
    cases = {
        "input layer has a neuron": [
            ir.Input("input", shape=(4,), neuron=lif),
            ir.Dense("d", weight=w, neuron=lif),
        ],
        "threshold 0": [
            ir.Input("input", shape=(4,)),
            ir.Dense("d", weight=w, neuron=ir.CubaLIF(0, 4096, 0)),
        ],
        "not square": [
            ir.Input("input", shape=(1, 4, 4)),
            ir.Pool("p", kernel=(2, 1), stride=(2, 1), neuron=lif),
            ir.Flatten("f"),
            ir.Dense("d", weight=np.ones((2, 8)), neuron=lif),
        ],
        "not flat": [ir.Input("input", shape=(1, 4, 4)), ir.Pool("p", kernel=2, stride=2, neuron=lif)],
    }
    for needle, nodes in cases.items():
        graph = ir.Graph.from_list([*nodes, ir.Output("output")], meta={"precision": "fixed"})
        with pytest.raises(SnncError, match=needle) as e:
            graph_to_model(graph)
        assert "\n" not in str(e.value)


# -- the commands ---------------------------------------------------------------------------------
def spike_dataset(path, seed=11, t=32):
    """10 classes over 200 inputs: class c raises the rate of inputs 20c..20c+19."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n)
        p = np.full((n, 200), 0.02)
        for i, c in enumerate(y):
            p[i, c * 20 : (c + 1) * 20] = 0.3
        return (rng.random((n, 200, t)) < p[..., None]).astype(np.uint8), y

    (xtr, ytr), (xte, yte) = make(600), make(200)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return xte


@pytest.mark.slow
def test_netx_prune_compile_and_lava(tmp_path):
    """The acceptance run: an Oxford-shaped lava-dl netx net, pruned by ``snnc prune`` on a ``.npz``
    dataset, compiled back, and run in Lava (``snnc simulate --backend lava``)."""
    from snnc.targets.loihi2.netx import write_netx

    net, data = tmp_path / "oxford.net", tmp_path / "spk.npz"
    write_netx(oxford_like(), net)
    x_test = spike_dataset(data)
    p = run_snnc(
        "prune", net, "--dataset", data, "--method", "relief", "--sparsity", "0.5", "--epochs", "4",
        "--lr", "1e-2", "-o", tmp_path / "pruned.pt", "--json", "--quiet",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["connection_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert rep["accuracy_before"] < 0.2 < 0.8 < rep["accuracy_after"]  # fine-tuned from chance
    from snnc.checkpoint import read_tensors

    _, header = read_tensors(tmp_path / "pruned.pt")
    assert header["arch"]["name"] == LAYERS and header["meta"]["source"]["kind"] == "netx"
    build_dir = tmp_path / "build"
    c = run_snnc("compile", tmp_path / "pruned.pt", "--target", "loihi2", "-o", build_dir, "--quiet")
    assert c.returncode == 0, c.stderr
    assert (build_dir / "network.net").is_file()
    e = run_snnc("evaluate", build_dir, "--dataset", data, "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["accuracy"] > 0.8
    np.save(tmp_path / "x.npy", x_test[:3])
    pytest.importorskip("lava.lib.dl.netx")
    s = run_snnc(
        "simulate", build_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
        "--backend", "lava", "--json",
    )  # fmt: skip
    assert s.returncode == 0, s.stderr
    out = json.loads(s.stdout)
    assert out["mismatches_vs_sim"] == 0 and out["output_spikes"] > 0


@pytest.mark.slow
def test_nir_prune_l1_and_compile(tmp_path):
    """``snnc prune NET.nir --method l1`` on a conv net that snnc exported to NIR."""
    from snnc.commands.train import TrainOptions, run_train

    run_train(TrainOptions(output=str(tmp_path / "m.pt"), arch="lenet", epochs=2, train_limit=400))
    c = run_snnc("compile", tmp_path / "m.pt", "--target", "nir", "-o", tmp_path / "nirb", "--quiet")
    assert c.returncode == 0, c.stderr
    nir_file = tmp_path / "nirb" / "network.nir"
    p = run_snnc(
        "prune", nir_file, "--dataset", "digits", "--method", "l1", "--sparsity", "0.5", "--epochs", "1",
        "--train-limit", "300", "-o", tmp_path / "p.pt", "--json", "--quiet",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["channel_sparsity"] == pytest.approx(0.5, abs=0.1)
    assert rep["accuracy_before"] > 0.3  # the imported net computes what the model file did
    c = run_snnc("compile", tmp_path / "p.pt", "--target", "loihi2", "-o", tmp_path / "b", "--quiet")
    assert c.returncode == 0, c.stderr


def test_prune_refuses_arch_for_a_network_file(tmp_path):
    from snnc.targets.loihi2.netx import write_netx

    write_netx(oxford_like(), tmp_path / "n.net")
    p = run_snnc(
        "prune", tmp_path / "n.net", "--method", "relief", "--sparsity", "0.5", "--arch", "a.b:c",
        "--dataset", "digits", "-o", tmp_path / "p.pt",
    )  # fmt: skip
    assert_one_line_error(p, "drop --arch")
