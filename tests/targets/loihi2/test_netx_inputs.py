"""netx files as users bring them from lava-dl: pool layers in Lava, unsupported neurons, Git LFS
pointers, flat-input (dense-first) nets on image datasets, and the data settings a netx file cannot
record. Every file is built here with h5py (nothing is downloaded)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from snnc import data as D
from snnc.cli import cli
from snnc.sim import simulate
from snnc.targets.loihi2 import read_netx, run_lava
from snnc.targets.loihi2.check import check_path

CUBA = {"neuron/type": "CUBA", "neuron/iDecay": 1024, "neuron/vDecay": 512, "neuron/vThMant": 80}
LFS = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 428160\n"
)


def _layer(f, i, kind, **data):
    g = f.create_group(f"layer/{i}")
    g.create_dataset("type", (1,), "S10", [kind.encode()])
    for k, v in data.items():
        g.create_dataset(k, data=v)


def _invoke(*args):
    res = CliRunner().invoke(cli, [*map(str, args), "--quiet"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return res, lines


# -- 1. a lava-dl 'pool' layer in Lava ---------------------------------------------------------------
CONV = {"padding": [0, 0], "dilation": [1, 1]}  # netx reads every conv key (docs/loihi2.md §1.4)


def _pool_net(path, pool_as_conv: bool, w1: np.ndarray, wd: np.ndarray):
    """input (2, 6, 6) -> conv 3x3 (4 ch) -> 2x2 sum-pool stride 2 (tap 64, slayer's 1.0) -> flatten
    -> dense 3; with ``pool_as_conv`` the pool is written as the grouped conv that computes it."""
    pool_neuron = {"neuron/type": "CUBA", "neuron/iDecay": 4096, "neuron/vDecay": 4096, "neuron/vThMant": 100}
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", shape=[2, 6, 6])
        _layer(f, 1, "conv", weight=w1, shape=[4, 4, 4], **CONV, groups=1, stride=[1, 1], **CUBA)
        pool = {"shape": [4, 2, 2], "stride": [2, 2], **pool_neuron}
        if pool_as_conv:
            _layer(f, 2, "conv", weight=np.full((4, 1, 2, 2), 64.0), groups=4, **CONV, **pool)
        else:
            _layer(f, 2, "pool", weight=np.array([64.0]), kernelSize=[2, 2], **pool)
        _layer(f, 3, "flatten", shape=[16, 1, 1])
        _layer(f, 4, "dense", weight=wd, shape=[3], **CUBA)
    return path


def test_pool_file_runs_in_lava_as_netx_runs_its_grouped_conv(tmp_path):
    """netx cannot load 'pool' (NotImplementedError): ``simulate --backend lava`` runs it anyway, and
    equals netx itself on the same network written with the pool as a grouped conv, and ``sim``."""
    rng = np.random.default_rng(3)
    w1 = 2.0 * rng.integers(-20, 60, (4, 2, 3, 3))
    wd = 2.0 * rng.integers(-40, 60, (3, 16))
    pool = _pool_net(tmp_path / "pool.net", False, w1, wd)
    conv = _pool_net(tmp_path / "conv.net", True, w1, wd)
    x = (rng.random((2, 2, 6, 6, 12)) < 0.5).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    res, lines = _invoke(
        "simulate", pool, "--backend", "lava", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"
    )
    assert res.exit_code == 0, (res.output, lines)
    got = np.load(tmp_path / "y.npy")
    reference = run_lava(conv, x)  # netx.hdf5.Network on a file it loads
    rec = simulate(read_netx(pool), x, record=True)
    assert (
        rec.spikes["pool2"] > 0 and got.sum() > 0
    )  # the pool and the output fire: the check means something
    np.testing.assert_array_equal(got, reference)
    np.testing.assert_array_equal(got, rec.output)


# -- 2. neurons snnc does not simulate: exit 1, the neuron type first ---------------------------------
def test_input_layer_neuron_is_read_as_an_input_population(tmp_path):
    """docs/loihi2.md §1.7 (tests/targets/loihi2/test_input_neuron.py runs such files in Lava)."""
    path = tmp_path / "in.net"
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", shape=[3], **CUBA)
        _layer(f, 1, "dense", weight=np.full((2, 3), 4.0), **CUBA)
    graph = read_netx(path)
    assert graph.input.neuron is not None and graph.input.neuron.bias is None
    res, lines = _invoke("inspect", path)
    assert res.exit_code == 0, lines


@pytest.mark.parametrize("odd_layer", [0, 1])
def test_unknown_neuron_type_is_named_before_the_input_layer_neuron(tmp_path, odd_layer):
    """A neuron type snnc does not simulate (here ``ALIF``) on the input layer or after it: the user
    hears about that type. (SDNN is simulated: tests/sim/test_sdnn.py.)"""
    path = tmp_path / "alif.net"
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", shape=[3], **{**CUBA, "neuron/type": "ALIF" if odd_layer == 0 else "CUBA"})
        if odd_layer == 1:
            del f["layer/0/neuron"]
        _layer(f, 1, "dense", weight=np.full((2, 3), 4.0), **{**CUBA, "neuron/type": "ALIF"})
    x = np.zeros((1, 3, 4), np.int8)
    np.save(tmp_path / "x.npy", x)
    for args in (["simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],):
        res, lines = _invoke(*args)
        assert res.exit_code == 1 and len(lines) == 1, lines
        assert f"layer {odd_layer}: neuron type 'ALIF' is not supported" in lines[0]
        assert "CUBA-LIF" in lines[0] and "input layer" not in lines[0]
    assert not (tmp_path / "y.npy").exists()
    # snnc check still holds its layers to the rules and notes why the rest was not checked
    report = check_path(path)
    assert any("ALIF" in n for n in report.notes), report.notes


# -- 3. Git LFS pointers -------------------------------------------------------------------------------
def test_git_lfs_pointer_is_named_wherever_a_file_is_read(tmp_path):
    ptr = tmp_path / "network.net"
    ptr.write_text(LFS)
    model = tmp_path / "model.pt"
    model.write_text(LFS)
    build = tmp_path / "build"
    build.mkdir()
    (build / "network.net").write_text(LFS)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 4), np.int8))
    sim = ["--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"]
    cases = [
        (["inspect", ptr], ptr),
        (["inspect", model], model),
        (["inspect", build], build / "network.net"),
        (["simulate", ptr, *sim], ptr),
        (["simulate", build, *sim], build / "network.net"),
        (["check", ptr], ptr),
        (["check", build], build / "network.net"),
        (["compile", ptr, "-o", tmp_path / "out1"], ptr),
        (["compile", model, "-o", tmp_path / "out2"], model),
        (["evaluate", ptr, "--dataset", "digits"], ptr),
        (["evaluate", model, "--dataset", "digits"], model),
        (["prune", model, "--method", "l1", "--sparsity", "0.5", "-o", tmp_path / "p.pt"], model),
    ]
    for args, named in cases:
        res, lines = _invoke(*args)
        assert res.exit_code == 2 and len(lines) == 1, (args, res.output, lines)
        want = f"{named} is a Git LFS pointer, not the file; run `git lfs pull` in its repository"
        assert lines[0] == f"snnc: error: {want}", args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "model.pt", "network.net", "x.npy"]


# -- 4. flat-input nets on image datasets; data settings a netx file cannot know ----------------------
def _template_weights() -> np.ndarray:
    """A classifier of digits with no training: each class's mean training image (C, H, W order),
    centred, as even integers; transposing the pixel order drops its accuracy."""
    x, y = D.load("digits").train
    means = np.stack([x[y == k].mean(0).reshape(-1) for k in range(10)])
    w = means - means.mean(0)
    return 2.0 * np.round(w / np.abs(w).max() * 60)


def _digits_net(path, flat: bool, w: np.ndarray):
    neuron = {"neuron/type": "CUBA", "neuron/iDecay": 4096, "neuron/vDecay": 0, "neuron/vThMant": 200}
    with h5py.File(path, "w") as f:
        if flat:  # lava-dl's dense-first layout: no input layer, the dense layer takes (64,)
            _layer(f, 0, "dense", weight=w, shape=[10], **neuron)
        else:
            _layer(f, 0, "input", shape=[1, 8, 8])
            _layer(f, 1, "flatten", shape=[64, 1, 1])
            _layer(f, 2, "dense", weight=w, shape=[10], **neuron)
    return path


def test_flat_input_net_evaluates_on_images_flattened_in_chw_order(tmp_path):
    w = _template_weights()
    flat = _digits_net(tmp_path / "flat.net", True, w)
    image = _digits_net(tmp_path / "image.net", False, w)  # the reference: snnc's own flatten (C, H, W)
    runs = {}
    for name, path in (("flat", flat), ("image", image)):
        res, lines = _invoke("evaluate", path, "--dataset", "digits", "--limit", "60", "-T", "8", "--json")
        assert res.exit_code == 0, (res.output, lines)
        runs[name] = json.loads(res.stdout)
    assert runs["flat"]["correct"] == runs["image"]["correct"]
    assert runs["flat"]["accuracy"] > 0.6  # the template classifier works: the order was right
    # transposed (H, W swapped) weights, the wrong flattening, do much worse on the same images
    wt = w.reshape(10, 1, 8, 8).transpose(0, 1, 3, 2).reshape(10, 64)
    res, _ = _invoke(
        "evaluate",
        _digits_net(tmp_path / "t.net", True, wt),
        "--dataset",
        "digits",
        "--limit",
        "60",
        "-T",
        "8",
        "--json",
    )
    assert json.loads(res.stdout)["correct"] < runs["flat"]["correct"]
    # a net whose input fits no image of the dataset still gets the advice
    res, lines = _invoke("evaluate", _digits_net(tmp_path / "w.net", True, w[:, :60]), "--dataset", "digits")
    assert res.exit_code == 2 and len(lines) == 1 and "expects input (60,)" in lines[0], lines


def test_netx_compile_and_evaluate_say_unknown_data_settings(tmp_path):
    flat = _digits_net(tmp_path / "flat.net", True, _template_weights())
    res, lines = _invoke(
        "compile", flat, "-o", tmp_path / "b", "--dataset", "digits", "--limit", "40", "--json"
    )
    assert res.exit_code == 0, (res.output, lines)
    report = json.loads(res.stdout)
    assert report["data"] == {"dataset": "digits", "steps": None, "encoding": None}
    assert report["accuracy"]["samples"] == 40 and report["accuracy"]["compiled"] > 0.5
    assert json.loads((tmp_path / "b" / "report.json").read_text())["data"]["steps"] is None
    res = CliRunner().invoke(
        cli, ["compile", str(flat), "-o", str(tmp_path / "c"), "--dataset", "digits", "--limit", "5"]
    )
    assert res.exit_code == 0 and "steps and encoding unknown" in res.stdout, res.stdout
    # evaluate says which settings are snnc's defaults (for the file and for its build), none when given
    for net in (flat, tmp_path / "b"):
        res = CliRunner().invoke(cli, ["evaluate", str(net), "--limit", "5", "--dataset", "digits"])
        assert res.exit_code == 0 and "steps and encoding: snnc's default" in res.stdout, res.stdout
    res = CliRunner().invoke(
        cli, ["evaluate", str(flat), "--dataset", "digits", "--limit", "5", "-T", "8", "--encoding", "rate"]
    )
    assert res.exit_code == 0 and "default" not in res.stdout, res.stdout
    res, _ = _invoke("evaluate", flat, "--dataset", "digits", "--limit", "5", "-T", "8", "--json")
    out = json.loads(res.stdout)
    assert out["steps"] == 8 and out["encoding"] == "rate" and out["defaulted"] == ["encoding"]
