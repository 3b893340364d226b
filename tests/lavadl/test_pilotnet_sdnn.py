"""lava-dl's PilotNet SDNN (sigma-delta, graded spikes) against lava-dl's stored ground truth and Lava.

Data (``data/pilotnet_sdnn``, built by its ``make_data.py`` from lava-dl's
``tests/lava/lib/dl/netx/gts/pilotnet_sdnn``; the tutorial net is ``data/nets/netx_pilotnet_sdnn.net``):
lava-dl's ``test_pilotnet_sdnn`` feeds ``input`` (one step, repeated by its ``RingBuffer``) to the
input layer's ``Delta`` and compares ``net.out`` over ``len(net.layers) = 9`` steps with ``output``;
``test_hdf5_nx`` feeds ``act0`` (the ``Delta``'s payloads) one layer on and compares the conv layers'
``sigma`` with ``sigma*``. All arrays are in Lava's (W, H, C) order, time last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from snnc.cli import cli
from snnc.sim import simulate, trace_layers
from snnc.targets.loihi2 import read_netx

DATA = Path(__file__).parent / "data"
NET = DATA / "pilotnet_sdnn" / "network.net"
SQUARE = DATA / "pilotnet_sdnn" / "square_network.net"
TUTORIAL = DATA / "nets" / "netx_pilotnet_sdnn.net"
NETS = {"network": NET, "square": SQUARE, "tutorial": TUTORIAL}


@pytest.fixture(scope="module")
def gt() -> dict:
    with np.load(DATA / "pilotnet_sdnn" / "gt.npz") as f:
        return {k: f[k] for k in f.files}


def torch_order(a: np.ndarray) -> np.ndarray:
    """Lava ``(W, H, C, T)`` -> PyTorch ``(C, H, W, T)``."""
    return a.transpose(2, 1, 0, 3)


def repeated(image: np.ndarray, steps: int) -> np.ndarray:
    """lava-dl's one-step ``RingBuffer`` source, repeated every step: ``(1, C, H, W, steps)``."""
    return np.repeat(torch_order(image)[None], steps, axis=-1)


def test_output_equals_lava_dl_ground_truth(gt):
    y = simulate(read_netx(NET), repeated(gt["input"], 9)).output
    assert y.dtype == np.int32
    assert np.count_nonzero(gt["output"]) == 8
    assert np.array_equal(y.reshape(gt["output"].shape), gt["output"])


@pytest.mark.parametrize(
    ("net", "crop", "stored"),
    [
        (NET, None, ["sigma1", "sigma2"]),
        (SQUARE, 33, ["sigma1_square", "sigma2_square", "sigma3_square", "sigma4_square"]),
    ],
)
def test_every_stored_layer_equals_ground_truth(gt, net, crop, stored):
    image = gt["input"] if crop is None else gt["input"][:crop, :crop]
    steps = gt["act0"].shape[-1]
    graph = read_netx(net)
    tr = trace_layers(graph, repeated(image, steps))
    act0 = gt["act0"] if crop is None else gt["act0"][:crop, :crop]
    assert np.array_equal(tr["input"].spikes[0], torch_order(act0))
    convs = [n for n in tr if n.startswith("conv")]
    assert len(convs) >= len(stored)
    for conv, key in zip(convs, stored, strict=False):
        assert np.array_equal(tr[conv].sigma[0], torch_order(gt[key])), key


@pytest.mark.parametrize("name", list(NETS))
def test_cli_inspect_simulate_compile(tmp_path, name):
    net = NETS[name]
    runner = CliRunner()
    r = runner.invoke(cli, ["inspect", str(net)])
    assert r.exit_code == 0, r.output
    assert "sdnn sigma_delta" in r.output
    shape = read_netx(net).input.shape
    x = np.random.default_rng(0).integers(-64, 65, size=(2, *shape, 4))
    np.save(tmp_path / "x.npy", x)
    r = runner.invoke(
        cli, ["simulate", str(net), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    )
    assert r.exit_code == 0, r.output
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int32 and y.shape[0] == 2 and y.shape[-1] == 4
    r = runner.invoke(cli, ["compile", str(net), "--target", "loihi2", "-o", str(tmp_path / "build")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli,
        [
            "simulate",
            str(tmp_path / "build"),
            "--input",
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / "z.npy"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "z.npy"), y)


def test_simulate_refuses_non_integer_graded_input(tmp_path):
    np.save(tmp_path / "x.npy", np.full((1, 3, 33, 100, 2), 0.5))
    r = CliRunner().invoke(
        cli, ["simulate", str(NET), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    )
    assert r.exit_code == 2 and "non-integer" in r.output
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.slow
def test_lava_equals_ground_truth_and_sim(gt):
    from snnc.targets.loihi2 import run_lava

    y = run_lava(NET, repeated(gt["input"], 9))
    assert np.array_equal(y.reshape(gt["output"].shape), gt["output"])
    for net in (SQUARE, TUTORIAL):
        graph = read_netx(net)
        x = np.random.default_rng(1).integers(-64, 65, size=(1, *graph.input.shape, 4))
        assert np.array_equal(run_lava(net, x), simulate(graph, x).output)


@pytest.mark.slow
def test_every_layer_equals_lava():
    from snnc.targets.loihi2.probe import probe_lava

    graph = read_netx(SQUARE)
    x = np.random.default_rng(2).integers(-64, 65, size=(1, *graph.input.shape, 5))
    lava = probe_lava(graph, x, net_path=SQUARE)
    ours = simulate(graph, x, record=True).layers
    assert list(lava) == list(ours)
    for name, rec in lava.items():
        assert rec.spikes.dtype == np.int32 and np.array_equal(rec.spikes, ours[name]), name
