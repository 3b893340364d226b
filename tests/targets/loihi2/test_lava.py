"""Bit-exactness against Lava itself (Loihi2SimCfg fixed_pt on CPU). Slow: every Lava run takes
seconds.

The acceptance test builds random networks with lava-dl's own slayer blocks, exports them with
slayer's ``export_hdf5``, runs them in Lava through ``netx.hdf5.Network`` and through ``snnc
simulate``, and demands zero mismatched spikes.
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from graph_helpers import random_convnet, random_mlp, random_residual, spikes

from snnc.cli import cli
from snnc.sim import simulate
from snnc.targets import TARGETS
from snnc.targets.loihi2 import run_lava, write_netx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

N_DENSE, N_CONV = 12, 8  # >= 20 networks in all


def _neuron_params(rng: np.random.Generator, channels: int | None = None) -> dict:
    import functools

    import lava.lib.dl.slayer as slayer

    # netx broadcasts a single dense bias but needs one per channel for conv
    norm = (
        functools.partial(slayer.neuron.norm.MeanOnlyBatchNorm, num_features=channels)
        if channels
        else slayer.neuron.norm.MeanOnlyBatchNorm
    )
    return {
        "threshold": float(rng.uniform(0.3, 1.6)),
        "current_decay": float(rng.uniform(0, 1)),
        "voltage_decay": float(rng.uniform(0, 1)),
        "requires_grad": False,
        "norm": norm,
    }


def slayer_net(seed: int, conv: bool):
    """A random lava-dl slayer net: dense chain, or input -> conv -> conv -> flatten -> dense."""
    import lava.lib.dl.slayer as slayer

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    blocks = []
    if conv:
        c0, hw = int(rng.integers(1, 3)), int(rng.integers(7, 11))
        c1, c2 = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        s1, p1 = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        s2, p2 = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        blocks.append(slayer.block.cuba.Input(None, delay_shift=False))
        blocks.append(
            slayer.block.cuba.Conv(
                _neuron_params(rng, c1),
                c0,
                c1,
                3,
                stride=s1,
                padding=p1,
                weight_scale=float(rng.uniform(1, 6)),
                weight_norm=False,
            )
        )
        blocks.append(
            slayer.block.cuba.Conv(
                _neuron_params(rng, c2),
                c1,
                c2,
                3,
                stride=s2,
                padding=p2,
                weight_scale=float(rng.uniform(1, 6)),
                weight_norm=False,
            )
        )
        blocks.append(slayer.block.cuba.Flatten())
        h1 = (hw + 2 * p1 - 3) // s1 + 1
        h2 = (h1 + 2 * p2 - 3) // s2 + 1
        in_shape = (c0, hw, hw)
        blocks.append(
            slayer.block.cuba.Dense(
                _neuron_params(rng),
                c2 * h2 * h2,
                int(rng.integers(3, 8)),
                weight_scale=float(rng.uniform(1, 4)),
                weight_norm=False,
            )
        )
    else:
        sizes = [int(v) for v in rng.integers(6, 30, int(rng.integers(3, 5)))]
        in_shape = (sizes[0],)
        if rng.random() < 0.5:
            blocks.append(slayer.block.cuba.Input(None, delay_shift=False))
        for a, b in zip(sizes[:-1], sizes[1:], strict=False):
            blocks.append(
                slayer.block.cuba.Dense(
                    _neuron_params(rng),
                    a,
                    b,
                    weight_scale=float(rng.uniform(1, 8)),
                    weight_norm=False,
                )
            )
    net = torch.nn.ModuleList(blocks).eval()
    with torch.no_grad():
        h = torch.zeros(1, *in_shape, 4)
        for b in net:
            h = b(h)  # sets the neuron shapes that export needs
        for b in net:
            norm = getattr(getattr(b, "neuron", None), "norm", None)
            if norm is not None:  # random biases: slayer exports -running_mean as the bias
                norm.running_mean.uniform_(-0.3, 0.3)
            if hasattr(b, "synapse"):
                b.synapse.weight.mul_(float(rng.uniform(0.5, 3)))
    return net, in_shape


def export(net, path):
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(net):
            b.export_hdf5(layer.create_group(f"{i}"))


@pytest.mark.timeout(1800)
def test_random_slayer_networks_match_lava_bit_for_bit(tmp_path):
    runner = CliRunner()
    total_spikes, nets = 0, 0
    for seed in range(N_DENSE + N_CONV):
        conv = seed >= N_DENSE
        net, in_shape = slayer_net(seed, conv)
        path = tmp_path / f"net{seed}.net"
        export(net, path)
        rng = np.random.default_rng(100 + seed)
        x = (rng.random((2, *in_shape, 20)) < rng.uniform(0.15, 0.5)).astype(np.int8)
        xp, yp = tmp_path / f"x{seed}.npy", tmp_path / f"y{seed}.npy"
        np.save(xp, x)
        res = runner.invoke(cli, ["simulate", str(path), "--input", str(xp), "--output", str(yp), "--quiet"])
        assert res.exit_code == 0, (seed, res.output, res.stderr)
        ours = np.load(yp)
        lava = run_lava(path, x)  # netx.hdf5.Network on the exported file itself
        assert ours.shape == lava.shape
        mismatches = int(np.sum(ours != lava))
        assert mismatches == 0, f"net {seed} ({'conv' if conv else 'dense'}): {mismatches} mismatches"
        total_spikes += int(lava.sum())
        nets += 1
    assert nets >= 20
    assert total_spikes > 100  # the networks are active, so the comparison means something


def test_our_netx_files_run_in_lava_like_sim(tmp_path):
    rng = np.random.default_rng(7)
    for g in (random_mlp(rng), random_convnet(rng, pool=True)):
        path = tmp_path / "network.net"
        write_netx(g, path)
        x = spikes(rng, g, 2, 16)
        want = simulate(g, x, record=True)
        assert sum(want.spikes.values()) > 0
        np.testing.assert_array_equal(run_lava(path, x), want.output)


def test_residual_graph_runs_as_lava_processes_like_sim():
    rng = np.random.default_rng(11)
    g = random_residual(rng)
    x = spikes(rng, g, 2, 16, p=0.5)
    want = simulate(g, x)
    assert want.spikes["add"] > 0
    np.testing.assert_array_equal(run_lava(g, x), want.output)


def test_emitted_runner_script_runs_standalone(tmp_path):
    rng = np.random.default_rng(5)
    g = random_mlp(rng)
    files = TARGETS.get("loihi2").emit(g, tmp_path)
    assert set(files) == {"network.net", "graph.safetensors", "run_loihi2.py"}
    x = spikes(rng, g, 2, 12)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run(
        [sys.executable, "run_loihi2.py", "--input", "x.npy", "--output", "y.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(g, x).output)
    # bool storage holding any byte runs as spikes; bad input is one line, no Y left behind
    raw = x.astype(np.uint8) * np.uint8(7)
    np.save(tmp_path / "xb.npy", raw.view(np.bool_))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY junk")
    np.save(tmp_path / "half.npy", x * 0.5)
    for name, ok in (("xb.npy", True), ("junk.npy", False), ("half.npy", False), ("x.npy", False)):
        out = "x.npy" if name == "x.npy" else "yb.npy"  # the last: --output is the input
        proc = subprocess.run(
            [sys.executable, "run_loihi2.py", "--input", name, "--output", out],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert (proc.returncode == 0) == ok, (name, proc.stderr[-2000:])
        if ok:
            np.testing.assert_array_equal(np.load(tmp_path / out), simulate(g, x).output)
            (tmp_path / out).unlink()
        else:
            assert len(proc.stderr.strip().splitlines()) == 1 and "error:" in proc.stderr, proc.stderr
            assert not (tmp_path / "yb.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), x)


def test_evaluate_with_lava_backend_equals_sim(tmp_path):
    import json

    from graph_helpers import digits_convnet

    from snnc.targets.loihi2 import compare_with_lava

    rng = np.random.default_rng(2)
    g = digits_convnet(rng, 3)
    build = tmp_path / "build"
    build.mkdir()
    TARGETS.get("loihi2").emit(g, build)
    args = [
        "evaluate",
        str(build),
        "--dataset",
        "digits",
        "--steps",
        "10",
        "--limit",
        "3",
        "--json",
    ]
    lava = CliRunner().invoke(cli, [*args, "--backend", "lava"])
    sim = CliRunner().invoke(cli, [*args, "--backend", "sim"])
    assert lava.exit_code == 0 and sim.exit_code == 0, lava.stderr + sim.stderr
    assert json.loads(lava.stdout)["correct"] == json.loads(sim.stdout)["correct"]
    check = compare_with_lava(build / "network.net", spikes(rng, g, 2, 10))
    assert check["mismatches"] == 0 and check["samples"] == 2
