"""``snnc simulate --record [LAYER:]KIND``: a layer's spikes, ``u`` or ``v`` as ``Y`` (a non-spiking
readout's output is its voltage), in ``sim`` and ``--backend lava``, against a hand computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from snnc.cli import cli
from snnc.ir import CubaLIF, Dense, Graph, Input, Output
from snnc.sim import simulate
from snnc.targets.loihi2 import write_netx

W = np.array([[2, -4, 6, 8], [-6, 10, 0, 4]], np.int64)
READOUT = CubaLIF(threshold=131071, current_decay=4096, voltage_decay=0)  # integrator, never fires here


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def readout_net(tmp_path):
    """input (4) -> hidden dense (3, spiking) -> readout dense (2): a net whose output layer never
    spikes, so its plain ``Y`` is all zero."""
    hidden = np.array([[20, 0, 0], [0, 20, 0], [0, 0, 20], [20, 20, 0]], np.int64).T  # (3, 4)
    graph = Graph.from_list(
        [
            Input("input", shape=(4,)),
            Dense(
                "hidden", weight=hidden, neuron=CubaLIF(threshold=10, current_decay=4096, voltage_decay=4096)
            ),
            Dense("readout", weight=W[:, :3], neuron=READOUT),
            Output("output"),
        ],
        meta={"precision": "fixed"},
    )
    path = tmp_path / "readout.net"
    write_netx(graph, path)
    x = (np.random.default_rng(5).random((2, 4, 10)) < 0.5).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    return path, graph, x


def _hand(graph, x):
    """The hidden layer fires exactly when its input does (weight 20 << 6 = 1280 > 10 << 6, v forgets
    every step), one step late; the readout integrates ``u = a_in << 6`` without decay."""
    s_hidden = np.zeros((x.shape[0], 3, x.shape[-1]), np.int64)
    drive = np.einsum("ji,nit->njt", graph.nodes["hidden"].weight.astype(np.int64), x)
    s_hidden[..., 1:] = drive[..., :-1] > 0
    u = np.zeros((x.shape[0], 2, x.shape[-1]), np.int64)
    u[..., 1:] = np.einsum("ji,nit->njt", W[:, :3], s_hidden)[..., :-1] << 6
    return s_hidden, u, np.cumsum(u, axis=-1)


def test_plain_y_of_a_readout_net_is_all_zero_and_record_v_is_its_voltage(readout_net, tmp_path):
    path, graph, x = readout_net
    s_hidden, u, v = _hand(graph, x)
    assert np.count_nonzero(v) > 5 and s_hidden.sum() > 10
    res = _invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert res.exit_code == 0, res.stderr
    assert not np.load(tmp_path / "y.npy").any()  # the readout never spikes: plain Y says nothing
    for record, want, dtype in (
        ("v", v, np.int32),
        ("dense2:v", v, np.int32),  # netx layers are read back by index: hidden dense1, readout dense2
        ("dense2:u", u, np.int32),
        ("dense1:spikes", s_hidden, np.int8),
    ):
        res = _invoke(
            "simulate",
            path,
            "--input",
            tmp_path / "x.npy",
            "--output",
            tmp_path / "y.npy",
            "--record",
            record,
            "--json",
        )
        assert res.exit_code == 0, (record, res.stderr)
        y = np.load(tmp_path / "y.npy")
        assert y.dtype == dtype, record
        np.testing.assert_array_equal(y, want, err_msg=record)
        out = json.loads(res.stdout)
        assert out["record"]["layer"] in record or record == "v"
    np.testing.assert_array_equal(simulate(graph, x, record=True).layers["hidden"], s_hidden)


@pytest.mark.slow
def test_record_in_lava_equals_sim(readout_net, tmp_path):
    path, graph, x = readout_net
    _, _, v = _hand(graph, x)
    args = ["simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"]
    res = _invoke(*args, "--backend", "lava", "--record", "v", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["mismatches_vs_sim"] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), v)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--record", "nosuch:v"], "no neuron layer 'nosuch'; choose one of dense1, dense2"),
        (["--record", "dense2:w"], "kind must be one of spikes, u, v"),
        (["--record", "v", "--backend", "onnx"], "--record runs on the sim and lava backends"),
    ],
)
def test_bad_record_is_one_line_and_writes_no_y(readout_net, tmp_path, args, needle):
    path, _, _ = readout_net
    res = _invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", *args)
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "y.npy").exists()
