"""netx HDF5 reader/writer: schema, round trips, refusals; weight preparation vs netx's code."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from graph_helpers import fixed_graph, random_convnet, random_mlp, spikes

from snnc.errors import SnncError, UsageError
from snnc.ir import Add, Conv, CubaLIF, Dense, Graph, Input, Output
from snnc.sim import simulate
from snnc.targets.loihi2 import (
    describe_netx,
    lava_dense_weights,
    netx_dense_weights,
    netx_optimize_weight_bits,
    read_netx,
    write_netx,
)


def test_writer_schema_matches_lava_dl(tmp_path, rng):
    g = random_convnet(rng)
    path = tmp_path / "network.net"
    write_netx(g, path)
    with h5py.File(path, "r") as f:
        layers = f["layer"]
        kinds = [layers[str(i)]["type"][()] for i in range(len(layers))]
        assert [k[0] for k in kinds] == [b"input", b"conv", b"conv", b"conv", b"flatten", b"dense"]
        for i in range(len(layers)):
            t = layers[str(i)]["type"]
            assert t.shape == (1,) and t.dtype == np.dtype("S10")
            assert "messageBits" not in layers[str(i)].get("neuron", {})
        assert "neuron" not in layers["0"]
        assert layers["0"]["shape"][()].tolist() == [2, 9, 9]  # PyTorch order
        pool = layers["2"]  # the sum-pool, as a grouped conv
        assert int(pool["groups"][()]) == 4 and pool["weight"].shape == (4, 1, 2, 2)
        for i in (1, 2, 3, 5):
            w = layers[str(i)]["weight"][()]
            assert w.dtype == np.float32 and np.all(w == np.round(w))


def test_round_trip_is_identical_in_simulation(tmp_path, rng):
    for g in (random_mlp(rng), random_convnet(rng)):
        path = tmp_path / "n.net"
        write_netx(g, path)
        back = read_netx(path)
        x = spikes(rng, g, 3, 15)
        np.testing.assert_array_equal(simulate(back, x).output, simulate(g, x).output)


def test_writer_refuses_what_netx_cannot_run(tmp_path):
    n = CubaLIF(threshold=10, current_decay=0, voltage_decay=0)
    zero = fixed_graph([Input("in", shape=(3,)), Dense("fc", weight=np.zeros((2, 3)), neuron=n)])
    with pytest.raises(SnncError, match="all dense weights are zero"):
        write_netx(zero, tmp_path / "a.net")
    big = fixed_graph([Input("in", shape=(2,)), Dense("fc", weight=[[300, 2]], neuron=n)])
    with pytest.raises(SnncError, match=r"\[-256, 254\]"):
        write_netx(big, tmp_path / "b.net")
    odd_inh = fixed_graph([Input("in", shape=(3,)), Dense("fc", weight=[[-256, -1, -3]], neuron=n)])
    with pytest.raises(SnncError, match="netx would alter"):
        write_netx(odd_inh, tmp_path / "c.net")
    res = Graph(
        {
            "in": Input("in", shape=(1, 2, 2)),
            "a": Conv("a", weight=np.ones((1, 1, 1, 1))),
            "b": Conv("b", weight=np.ones((1, 1, 1, 1))),
            "add": Add("add", neuron=n),
            "out": Output("out"),
        },
        (("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("add", "out")),
        {"precision": "fixed"},
    )
    with pytest.raises(SnncError, match="Add"):
        write_netx(res, tmp_path / "d.net")
    assert not list(tmp_path.iterdir())  # nothing written on refusal


def _file(path, layers: list[dict]):
    with h5py.File(path, "w") as f:
        for i, d in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            for k, v in d.items():
                if k == "type":
                    g.create_dataset("type", (1,), "S10", [v.encode()])
                else:
                    g.create_dataset(k, data=v)
    return path


NEURON = {"neuron/type": "CUBA", "neuron/iDecay": 100, "neuron/vDecay": 200, "neuron/vThMant": 50}


@pytest.mark.parametrize(
    "layers, needle",
    [
        ([{"type": "dense", "weight": np.zeros((2, 3)), **NEURON}], "layer 0: key 'weight'"),
        ([{"type": "dense", **NEURON}], "layer 0: missing key 'weight'"),
        (
            [{"type": "dense", "weight": np.ones((2, 3)), "neuron/type": "CUBA"}],
            "layer 0: missing key 'neuron/iDecay'",
        ),
        ([{"type": "dense_rec", "weight": np.ones((2, 2)), **NEURON}], "dense_rec"),
        ([{"type": "conv", "weight": np.ones((2, 1, 3, 3)), **NEURON}], "input shape could not be"),
        (
            [
                {"type": "input", "shape": [4]},
                {"type": "dense", "weight": np.ones((2, 3)), **NEURON},
            ],
            "layer 1: key 'weight' has 3 inputs",
        ),
        (
            [
                {"type": "input", "shape": [1, 4, 4]},
                {"type": "conv", "weight": np.ones((2, 1, 3, 3)), **NEURON},
                {"type": "dense", "weight": np.ones((2, 8)), **NEURON},
            ],
            "needs a flatten",
        ),
        (
            [
                {"type": "input", "shape": [3]},
                {"type": "dense", "weight": np.ones((2, 3)), "bias": np.ones(5), **NEURON},
            ],
            "layer 1: key 'bias'",
        ),
        ([{"type": "average", "shape": [3]}], "average"),
        ([{"type": "mystery", "shape": [3]}], "unknown layer type"),
    ],
)
def test_reader_errors_name_layer_and_key(tmp_path, layers, needle):
    path = _file(tmp_path / "bad.net", layers)
    with pytest.raises(UsageError, match=needle) as e:
        read_netx(path)
    assert "\n" not in str(e.value)


def test_reader_refuses_non_hdf5_and_missing(tmp_path):
    p = tmp_path / "x.net"
    p.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(UsageError, match="not an HDF5 file"):
        read_netx(p)
    with pytest.raises(UsageError, match="does not exist"):
        read_netx(tmp_path / "missing.net")
    with h5py.File(tmp_path / "empty.net", "w"):
        pass
    with pytest.raises(UsageError, match="missing group 'layer'"):
        read_netx(tmp_path / "empty.net")


def test_reader_models_netx_default_neuron(tmp_path):
    # a dense layer without neuron: netx's integrator, iDecay 0, vDecay 4096, vth 1 << 17
    # (docs/loihi2.md §1.4)
    path = _file(tmp_path / "n.net", [{"type": "dense", "weight": np.full((2, 3), 4.0)}])
    g = read_netx(path)
    n = g.nodes["dense0"].neuron
    assert (n.threshold, n.current_decay, n.voltage_decay) == (1 << 17, 0, 4096)


def test_weight_preparation_matches_netx_and_lava_functions(rng):
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    cases = [
        np.array([[-256, 254, 2, -2]]),
        np.array([[-101, 99, 3, -1]]),
        np.array([[-12, 10, 2, -2]]),
        np.array([[-256, -1, 0, -3]]),
        np.array([[7, 1, 0, 3]]),
    ]
    cases += [
        rng.integers(lo, hi, (4, 6)) for lo, hi in ((-256, 255), (-20, 21), (0, 255), (-255, 1), (-3, 4))
    ]
    for w in cases:
        if not w.any():
            continue
        want_w, want_bits, want_exp, _ = optimize_weight_bits(w.copy())
        got_w, got_bits, got_exp = netx_optimize_weight_bits(w)
        np.testing.assert_array_equal(got_w, want_w)
        assert (got_bits, got_exp) == (want_bits, want_exp)
        mode = determine_sign_mode(want_w)
        lava = truncate_weights(clip_weights(want_w, mode, num_bits=8), mode, want_bits)
        np.testing.assert_array_equal(lava_dense_weights(got_w, got_bits), lava)
        stored, exp = netx_dense_weights(w)
        np.testing.assert_array_equal(stored, lava)
        assert exp == want_exp


def test_describe_netx(tmp_path, rng):
    path = tmp_path / "n.net"
    write_netx(random_convnet(rng), path)
    info = describe_netx(path)
    assert info["type"] == "netx-hdf5" and info["input_shape"] == [2, 9, 9]
    assert [r[1] for r in info["rows"]] == ["conv", "conv", "conv", "flatten", "dense"]
    assert all(len(r) == len(info["columns"]) for r in info["rows"])
    assert info["layers"][0]["weight_bits"] <= 8
