"""Crafted model, graph and netx files: absurd sizes, non-finite values, deep JSON, compressed
bombs. Each is refused in one line (exit 1 or 2) before memory is allocated for it."""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from graph_helpers import random_convnet, random_mlp

from snnc import checkpoint
from snnc.cli import cli
from snnc.ir.serialize import save_graph
from snnc.nn.zoo import build
from snnc.targets.loihi2 import write_netx

REPO = Path(__file__).resolve().parents[1]
DATA = {"dataset": "digits", "steps": 4, "encoding": "rate"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res, *needles: str) -> str:
    assert res.exit_code in (1, 2), (res.exit_code, res.stdout, res.stderr, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


# -- model files -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> tuple[Path, dict, dict]:
    d = tmp_path_factory.mktemp("model")
    m = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})
    path = d / "m.pt"
    checkpoint.save_model(path, m, DATA, {})
    _, header = checkpoint.read_tensors(path)
    header.pop("digest", None)
    return path, m.state_dict(), header


def _crafted_model(path: Path, state: dict, header: dict, **config) -> Path:
    """A model file with a valid digest whose arch config has ``config`` merged in."""
    h = copy.deepcopy(header)
    h["arch"]["config"].update(config)
    checkpoint.save_tensors(path, state, h)
    return path


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"hidden": [-5]}, "'hidden'"),
        ({"hidden": [16.0]}, "'hidden'"),
        ({"hidden": "16"}, "'hidden'"),
        ({"num_classes": "10"}, "'num_classes'"),
        ({"num_classes": True}, "'num_classes'"),
        ({"num_classes": 0}, "'num_classes'"),
        ({"input_shape": [1, 100000, 100000]}, "'input_shape'"),
        ({"input_shape": [1, -8, 8]}, "'input_shape'"),
        ({"input_shape": "1,8,8"}, "'input_shape'"),
        ({"input_shape": None}, "'input_shape'"),
        ({"hidden": [60000, 60000]}, "the file holds"),
        ({"neuron": {"threshold": "x"}}, "'neuron'"),
        ({"neuron": {"threshold": float("nan")}}, "'neuron'"),
        ({"neuron": {"current_decay": 10**9}}, "'neuron'"),
        ({"neuron": [1]}, "'neuron'"),
    ],
)
def test_bad_arch_config_is_one_line_before_building(tmp_path, model_file, config, needle):
    _, state, header = model_file
    path = _crafted_model(tmp_path / "bad.pt", state, header, **config)
    for args in (["inspect", path], ["compile", path, "--target", "sim", "-o", tmp_path / "b"]):
        one_line(invoke(*args), needle)
    assert not (tmp_path / "b").exists()


def test_conv_arch_config_checks(tmp_path, model_file):
    _, state, header = model_file
    h = copy.deepcopy(header)
    h["arch"] = {
        "name": "convnet",
        "config": {"input_shape": [1, 8, 8], "num_classes": 10, "channels": [4, 4]},
    }
    checkpoint.save_tensors(tmp_path / "c.pt", state, h)
    one_line(invoke("inspect", tmp_path / "c.pt"), "'channels'")
    h["arch"]["config"] = {"input_shape": [64], "num_classes": 10}
    checkpoint.save_tensors(tmp_path / "c.pt", state, h)
    one_line(invoke("inspect", tmp_path / "c.pt"), "'input_shape'")


def _safetensors_with_metadata(path: Path, text: str) -> None:
    """A safetensors file with one small tensor and metadata ``{"snnc": text}``."""
    header = {"__metadata__": {"snnc": text}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0\0\0\0")


@pytest.mark.parametrize("kind", ["model", "graph"])
def test_deeply_nested_json_header(tmp_path, rng, kind):
    deep = "[" * 200_000 + "]" * 200_000
    if kind == "model":
        _safetensors_with_metadata(tmp_path / "m.pt", deep)
        one_line(invoke("inspect", tmp_path / "m.pt"), "nested")
    else:
        build_dir = tmp_path / "build"
        build_dir.mkdir()
        _safetensors_with_metadata(build_dir / "graph.safetensors", deep)
        np.save(tmp_path / "x.npy", np.zeros((1, 12, 2), np.uint8))
        res = invoke("simulate", build_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
        one_line(res, "nested")


# -- graph.safetensors -------------------------------------------------------------------------
def _rewrite_graph(path: Path, edit) -> None:
    """Apply ``edit(header, tensors)`` to a graph.safetensors file in place."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["snnc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(header, tensors)
    save_file(tensors, str(path), metadata={"snnc": json.dumps(header)})


def _node(header: dict, kind: str) -> dict:
    return next(n for n in header["nodes"] if n["kind"] == kind)


GRAPH_EDITS = {
    "stride0": (lambda h, t: _node(h, "conv").update(stride=[0, 0]), "stride"),
    "padding1e10": (lambda h, t: _node(h, "conv").update(padding=[10**10, 10**10]), "graph"),
    "groups0": (lambda h, t: _node(h, "conv").update(groups=0), "groups"),
    "nan_weight": (lambda h, t: t["c1.weight"].__setitem__((0, 0, 0, 0), np.nan), "nan"),
    "inf_threshold": (
        lambda h, t: _node(h, "conv").__getitem__("neuron").update(threshold=float("inf")),
        "threshold",
    ),
    "huge_threshold": (
        lambda h, t: _node(h, "conv").__getitem__("neuron").update(threshold=1e15),
        "threshold",
    ),
    "huge_weight": (lambda h, t: t["c1.weight"].__setitem__((0, 0, 0, 0), 2.0**40), "weight"),
    "fraction_weight": (lambda h, t: t["c1.weight"].__setitem__((0, 0, 0, 0), 0.5), "integer"),
    "huge_input": (lambda h, t: _node(h, "input").update(shape=[2, 10**5, 10**5]), "graph"),
    "weight_exp": (lambda h, t: _node(h, "conv").update(weight_exp=10**6), "weight_exp"),
    "string_stride": (lambda h, t: _node(h, "conv").update(stride="ab"), ""),
    "huge_int": (lambda h, t: _node(h, "conv").update(groups=10**400), ""),
    "newline_in_a_name": (lambda h, t: h["edges"].append(["a\nb\rc\u2028d", "e"]), "a\\nb"),
    "bias_shape": (lambda h, t: t.__setitem__("c1.neuron.bias", np.zeros((0, 0), np.int8)), "bias"),
    "bn_shape": (lambda h, t: t.__setitem__("c1.neuron.bias", np.zeros(3)), "bias"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_EDITS))
def test_crafted_graph_file_is_one_line(tmp_path, rng, case):
    edit, needle = GRAPH_EDITS[case]
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    save_graph(random_convnet(rng), build_dir / "graph.safetensors")
    _rewrite_graph(build_dir / "graph.safetensors", edit)
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 9, 9, 3), np.uint8))
    res = invoke("simulate", build_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    one_line(res, needle)
    assert not (tmp_path / "y.npy").exists()


# -- netx --------------------------------------------------------------------------------------
def _set(key: str, value, **kw):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=value, **kw)

    return edit


NETX_EDITS = {
    "stride0": ("conv", _set("layer/1/stride", np.array([0, 0])), "stride"),
    "padding1e10": ("conv", _set("layer/1/padding", np.array([10**10, 10**10])), "layer 1"),
    "nan_threshold": ("mlp", _set("layer/1/neuron/vThMant", np.float64(np.nan)), "nan, infinite"),
    "inf_threshold": ("mlp", _set("layer/1/neuron/vThMant", np.float64(np.inf)), "nan, infinite"),
    "huge_threshold": ("mlp", _set("layer/1/neuron/vThMant", np.int64(2**62)), "threshold"),
    "input_1e9": ("mlp", _set("layer/0/shape", np.array([10**9])), "layer 1"),
    "empty_shape": ("mlp", _set("layer/0/shape", np.zeros(0, np.int64)), "layer 0"),
    "weight_bomb": (
        "mlp",
        _set(
            "layer/1/weight", np.zeros((10**8 // 12, 12), np.int8), compression="gzip", chunks=(1 << 20, 12)
        ),
        "too large",
    ),
}


@pytest.mark.parametrize("case", sorted(NETX_EDITS))
def test_crafted_netx_file_is_one_line(tmp_path, case):
    net, edit, needle = NETX_EDITS[case]
    rng = np.random.default_rng(0)
    g = random_convnet(rng) if net == "conv" else random_mlp(rng)
    path = tmp_path / "n.net"
    write_netx(g, path)
    with h5py.File(path, "a") as f:
        edit(f)
    assert path.stat().st_size < 10 * 2**20
    np.save(tmp_path / "x.npy", np.zeros((1, *g.input.shape, 3), np.uint8))
    res = invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    one_line(res, needle)
    one_line(invoke("compile", path, "--target", "sim", "-o", tmp_path / "b"))
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "b").exists()


# -- memory bounded by the file (real processes under an address-space limit) ------------------
def run_limited(args, address_space_gb: float, timeout: float = 120) -> tuple[int, str, int]:
    """``python -m snnc ARGS`` under RLIMIT_AS; returns (exit status, stderr, peak resident KiB of
    that process, from ``wait4``)."""
    import signal
    import tempfile
    import threading

    limit = int(address_space_gb * 2**30)

    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snnc", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            preexec_fn=pre,
        )
        timer = threading.Timer(timeout, os.kill, (proc.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read().decode(), usage.ru_maxrss


def _assert_refused(rc: int, err: str, peak_kib: int) -> None:
    assert rc in (1, 2), (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    assert peak_kib < 2**20, f"peak resident {peak_kib / 2**10:.0f} MiB"


@pytest.mark.slow
def test_memory_bounded_by_the_file(tmp_path):
    """Crafted files under 10 MB: a simulate stays under 1.5 GB of address space (a normal run needs
    under 1 GB), a command that imports torch under 3.5 GB (torch alone maps ~2.7 GB); all are
    refused in one line with under 1 GiB resident (RUSAGE_CHILDREN: the largest child so far)."""
    rng = np.random.default_rng(0)
    g = random_mlp(rng, sizes=(12, 8))
    write_netx(g, tmp_path / "ok.net")
    np.save(tmp_path / "x1.npy", np.zeros((1, 12, 2), np.uint8))
    rc, err, _ = run_limited(
        ["simulate", tmp_path / "ok.net", "--input", tmp_path / "x1.npy", "--output", tmp_path / "ok.npy"],
        1.5,
    )
    assert rc == 0, err  # the limit leaves a normal run room

    # netx: a gzip-compressed 1 GB weight dataset in a 1 MB file
    shutil.copy(tmp_path / "ok.net", tmp_path / "bomb.net")
    with h5py.File(tmp_path / "bomb.net", "a") as f:
        _set(
            "layer/1/weight", np.zeros((2**30 // 12, 12), np.int8), compression="gzip", chunks=(1 << 21, 12)
        )(f)
    assert (tmp_path / "bomb.net").stat().st_size < 10 * 2**20
    _assert_refused(
        *run_limited(
            [
                "simulate",
                tmp_path / "bomb.net",
                "--input",
                tmp_path / "x1.npy",
                "--output",
                tmp_path / "y.npy",
            ],
            1.5,
        )
    )

    # X.npy whose header claims 10**12 values
    head = tmp_path / "claim.npy"
    with open(head, "wb") as fh:
        header = {"descr": "|u1", "fortran_order": False, "shape": (10**8, 12, 1000)}
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\1" * 4096)
    _assert_refused(
        *run_limited(["simulate", tmp_path / "ok.net", "--input", head, "--output", tmp_path / "y.npy"], 1.5)
    )

    # a net whose output layer is wide, driven by a 10 MB X: Y would be 10**12 values
    wide = random_mlp(rng, sizes=(1, 2**20))
    write_netx(wide, tmp_path / "wide.net")
    np.save(tmp_path / "xmany.npy", np.zeros((10**6, 1, 8), np.uint8))
    _assert_refused(
        *run_limited(
            [
                "simulate",
                tmp_path / "wide.net",
                "--input",
                tmp_path / "xmany.npy",
                "--output",
                tmp_path / "y.npy",
            ],
            1.5,
        )
    )
    assert not (tmp_path / "y.npy").exists()

    # a model file whose config claims 3.6 G parameters
    m = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})
    checkpoint.save_model(tmp_path / "m.pt", m, DATA, {})
    _, header = checkpoint.read_tensors(tmp_path / "m.pt")
    header.pop("digest", None)
    header["arch"]["config"]["hidden"] = [60000, 60000]
    checkpoint.save_tensors(tmp_path / "big.pt", m.state_dict(), header)
    _assert_refused(
        *run_limited(["compile", tmp_path / "big.pt", "--target", "sim", "-o", tmp_path / "b"], 3.5)
    )
    assert not (tmp_path / "b").exists()


def test_check_graph_bounds_neurons_before_anything_is_allocated():
    from snnc.ir import CubaLIF, Graph, GraphError, Input, Output, Pool
    from snnc.ir.limits import MAX_LAYER_NEURONS, check_graph

    lif = CubaLIF(threshold=10, current_decay=0, voltage_decay=0)
    side = 4096  # 16 M inputs: more than MAX_LAYER_NEURONS, and nothing in the graph stores them
    g = Graph.from_list([Input("in", shape=(1, side, side)), Pool("p", neuron=lif), Output("out")])
    with pytest.raises(GraphError, match=f"more than {MAX_LAYER_NEURONS}"):
        check_graph(g)
    small = Graph.from_list([Input("in", shape=(1, 64, 64)), Pool("p", neuron=lif), Output("out")])
    assert check_graph(small) is small


@pytest.mark.parametrize("key", ["blocks.2.bias", "blocks.2.channel_mask", "blocks.1.weight"])
def test_model_with_non_finite_tensors_is_one_line(tmp_path, model_file, key):
    """Found by the fuzz suite: an inf bias or mask reached the quantize pass (a division by
    zero, and numpy's warning as a second stderr line)."""
    _, state, header = model_file
    state = dict(state)
    state[key] = state[key].clone()
    state[key].view(-1)[-1] = float("inf")
    checkpoint.save_tensors(tmp_path / "m.pt", state, {k: v for k, v in header.items() if k != "digest"})
    one_line(invoke("compile", tmp_path / "m.pt", "--target", "loihi2", "-o", tmp_path / "b"), "infinite")
    assert not (tmp_path / "b").exists()
