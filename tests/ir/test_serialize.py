"""graph.safetensors round trips, validation, load_net and emit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from graph_helpers import random_convnet, random_mlp, random_residual, spikes

from snnc.errors import UsageError
from snnc.ir import BatchNorm, Conv, CubaLIF, Graph, Input, Output
from snnc.ir.serialize import load_graph, save_graph
from snnc.sim import simulate
from snnc.targets import TARGETS, load_net


def test_round_trip_keeps_every_field(tmp_path, rng):
    for g in (random_mlp(rng), random_convnet(rng), random_residual(rng)):
        g = g.replace(**{n: v for n, v in g.nodes.items()})  # same graph
        path = tmp_path / "graph.safetensors"
        save_graph(g.with_meta(note="x"), path)
        back = load_graph(path)
        assert back.edges == g.edges and back.precision == "fixed" and back.meta["note"] == "x"
        assert list(back.nodes) == list(g.nodes)
        x = spikes(rng, g, 2, 12)
        np.testing.assert_array_equal(simulate(back, x).output, simulate(g, x).output)


def test_float_graph_with_batch_norm_round_trips(tmp_path, rng):
    bn = BatchNorm(rng.random(2) + 0.5, rng.random(2), rng.random(2), rng.random(2) + 0.5)
    g = Graph.from_list(
        [
            Input("in", shape=(1, 4, 4)),
            Conv(
                "c",
                weight=rng.normal(size=(2, 1, 3, 3)),
                padding=1,
                bn=bn,
                neuron=CubaLIF(0.7, 1000, 200, bias=[0.1, -0.2]),
                meta={"cores": 1},
            ),
            Output("out"),
        ],
        meta={"precision": "float"},
    )
    save_graph(g, tmp_path / "g.safetensors")
    back = load_graph(tmp_path / "g.safetensors")
    c = back.nodes["c"]
    np.testing.assert_array_equal(c.bn.running_var, bn.running_var)
    assert c.neuron.threshold == 0.7 and c.meta == {"cores": 1}
    x = spikes(rng, g, 2, 10, p=0.5)
    np.testing.assert_array_equal(simulate(back, x).output, simulate(g, x).output)


def test_damaged_files_give_one_line(tmp_path, rng):
    bad = tmp_path / "graph.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(UsageError, match="not a readable safetensors"):
        load_graph(bad)
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(2)}, str(bad), metadata={"snnc": json.dumps({"format": "other"})})
    with pytest.raises(UsageError, match="not an snnc graph"):
        load_graph(bad)
    g = random_mlp(rng)
    save_graph(g, bad)
    from safetensors import safe_open

    with safe_open(str(bad), framework="numpy") as f:
        header = json.loads(f.metadata()["snnc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["fc0.weight"] = tensors["fc0.weight"][:, :3]  # shape no longer fits the input
    save_file(tensors, str(bad), metadata={"snnc": json.dumps(header)})
    with pytest.raises(UsageError, match="inconsistent graph") as e:
        load_graph(bad)
    assert "\n" not in str(e.value)


def test_load_net_and_emit(tmp_path, rng):
    g = random_convnet(rng)
    out = tmp_path / "build"
    out.mkdir()
    assert sorted(TARGETS.get("loihi2").emit(g, out)) == ["graph.safetensors", "network.net", "run_loihi2.py"]
    x = spikes(rng, g, 2, 10)
    want = simulate(g, x).output
    np.testing.assert_array_equal(simulate(load_net(out), x).output, want)
    np.testing.assert_array_equal(simulate(load_net(out / "network.net"), x).output, want)
    (out / "graph.safetensors").unlink()  # falls back to network.net
    np.testing.assert_array_equal(simulate(load_net(out), x).output, want)
    res = tmp_path / "res"
    res.mkdir()
    assert sorted(TARGETS.get("loihi2").emit(random_residual(rng), res)) == [
        "graph.safetensors",
        "run_loihi2.py",
    ]
    assert sorted(TARGETS.get("onnx").emit(g, res)) == ["graph.safetensors", "model.onnx"]
    with pytest.raises(UsageError, match="neither"):
        load_net(tmp_path / "build" / "run_loihi2.py")
    with pytest.raises(UsageError, match="does not exist"):
        load_net(tmp_path / "nope")
