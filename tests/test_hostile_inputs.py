"""Hostile input files: raw bool bytes, output paths that are inputs, HDF5/ONNX files that point at
other files. Each is refused in one line (or normalised, as documented), never a crash or a leak."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from graph_helpers import random_convnet, random_mlp, spikes

from snnc.cli import cli
from snnc.errors import SnncError, UsageError
from snnc.sim import kernels, simulate
from snnc.sim.common import check_spikes
from snnc.targets.loihi2 import write_netx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import assert_one_line_error, run_snnc  # noqa: E402

SECRET = b"TOP-SECRET-7f3a9c"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res, code: int, *needles: str) -> str:
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


def leftovers(d: Path) -> list[str]:
    return [p.name for p in d.rglob(".*") if p.name.endswith(".tmp") or ".old." in p.name]


# -- 1. spike arrays ---------------------------------------------------------------------------
def raw_bool(x01: np.ndarray, byte: int) -> np.ndarray:
    """A bool array whose storage holds ``byte`` where ``x01`` is 1 (what a crafted .npy holds)."""
    return (x01.astype(np.uint8) * np.uint8(byte)).view(np.bool_)


@pytest.mark.parametrize("byte", [2, 7, 128, 255])
def test_simulate_normalises_raw_bool_bytes_as_a_real_process(tmp_path, byte):
    """The dense-chain kernel indexed memory with the raw byte (SIGSEGV); a non-zero byte is a spike."""
    rng = np.random.default_rng(0)
    g = random_mlp(rng)
    write_netx(g, tmp_path / "n.net")
    x = spikes(rng, g, 3, 9)
    np.save(tmp_path / "x.npy", raw_bool(x, byte))
    proc = run_snnc(
        "simulate",
        tmp_path / "n.net",
        "--input",
        tmp_path / "x.npy",
        "--output",
        tmp_path / "y.npy",
        "--quiet",
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(g, x).output)


def test_simulate_raw_bool_bytes_on_a_conv_net(tmp_path, rng):
    g = random_convnet(rng)
    write_netx(g, tmp_path / "n.net")
    x = spikes(rng, g, 2, 7)
    for byte in (1, 2, 128, 255):
        np.save(tmp_path / "x.npy", raw_bool(x, byte))
        res = invoke(
            "simulate", tmp_path / "n.net", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"
        )
        assert res.exit_code == 0, res.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(g, x).output)


@pytest.mark.parametrize(
    "x, needle",
    [
        (np.full((2, 12, 5), 2, np.int64), "non-binary"),
        (np.full((2, 12, 5), -1, np.int8), "non-binary"),
        (np.full((2, 12, 5), 255, np.uint8), "non-binary"),
        (np.zeros((0, 12, 5), np.uint8), "no samples or no time steps"),
        (np.zeros((2, 12, 0), np.uint8), "no samples or no time steps"),
        (np.zeros((0, 12, 0), np.bool_), "no samples or no time steps"),
    ],
)
def test_simulate_refuses_bad_spike_values_in_one_line(tmp_path, x, needle):
    g = random_mlp(np.random.default_rng(0))
    write_netx(g, tmp_path / "n.net")
    np.save(tmp_path / "x.npy", x)
    res = invoke(
        "simulate", tmp_path / "n.net", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"
    )
    one_line(res, 2, needle)
    assert not (tmp_path / "y.npy").exists() and not leftovers(tmp_path)


def test_check_spikes_normalises_and_casts():
    x = np.array([[[0, 2, 255, 1]]], np.uint8).view(np.bool_)
    out = check_spikes(x, (1,))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.tolist() == [[[0, 1, 1, 1]]]
    f = np.asfortranarray(np.array([[[0.0, 1.0], [1.0, 0.0]]]))
    out = check_spikes(f, (2,))
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.tolist() == [[[0, 1], [1, 0]]]
    for bad in (np.array([[[0.5]]]), np.array([[[np.nan]]]), np.array([[["a"]]])):
        with pytest.raises(UsageError):
            check_spikes(bad, (1,))


def test_kernel_entry_checks_its_preconditions(rng):
    g = random_mlp(rng)
    if kernels.kernels() is None:
        pytest.skip("numba missing")
    good = spikes(rng, g, 2, 4).astype(np.uint8)
    kernels.run(g, good)  # the checked entry accepts what check_spikes returns
    for bad, needle in (
        (good * 3, "values"),
        (good.astype(np.int64), "uint8"),
        (good[:, :5], "shape"),
        (good[:0], "no samples"),
        (raw_bool(good, 128), "values"),
    ):
        with pytest.raises(SnncError, match=needle):
            kernels.run(g, bad)


# -- 2. outputs that are inputs ----------------------------------------------------------------
def _model_file(tmp_path: Path) -> Path:
    m = tmp_path / "m.pt"
    m.write_bytes(b"model bytes that must stay")
    return m


@pytest.mark.parametrize(
    "extra",
    [
        ["-o", "{d}/out.pt", "--report", "{d}/m.pt"],
        ["-o", "{d}/m.pt"],
        ["-o", "{d}/out.pt", "--report", "{d}/out.pt"],
        ["-o", "{d}/m.json"],  # the default report m.json is fine, -o m.json is the report itself
        ["-o", "{d}/link.pt"],
    ],
)
def test_prune_output_that_is_an_input_or_another_output(tmp_path, extra):
    m = _model_file(tmp_path)
    (tmp_path / "link.pt").symlink_to(m)
    args = [a.format(d=tmp_path) for a in extra]
    res = invoke("prune", m, "--method", "l1", "--sparsity", "0.5", "--epochs", "1", *args)
    if args == ["-o", f"{tmp_path}/m.json"]:
        one_line(res, 2, "same file")
    else:
        one_line(res, 2)
    assert m.read_bytes() == b"model bytes that must stay"


def test_simulate_output_that_is_the_input_or_the_net(tmp_path, rng):
    g = random_mlp(rng)
    write_netx(g, tmp_path / "n.net")
    np.save(tmp_path / "x.npy", spikes(rng, g, 1, 4))
    before = {p: p.read_bytes() for p in (tmp_path / "x.npy", tmp_path / "n.net")}
    (tmp_path / "alias.npy").symlink_to(tmp_path / "x.npy")
    for out, needle in (("x.npy", "--input"), ("alias.npy", "--input"), ("n.net", "NET")):
        res = invoke(
            "simulate", tmp_path / "n.net", "--input", tmp_path / "x.npy", "--output", tmp_path / out
        )
        one_line(res, 2, needle)
    assert {p: p.read_bytes() for p in before} == before


def test_simulate_output_onto_a_file_of_the_build_directory(tmp_path, rng):
    from snnc.targets.registry import TARGETS

    g = random_mlp(rng)
    build = tmp_path / "build"
    build.mkdir()
    TARGETS.get("sim").emit(g, build)
    np.save(tmp_path / "x.npy", spikes(rng, g, 1, 4))
    before = (build / "graph.safetensors").read_bytes()
    res = invoke("simulate", build, "--input", tmp_path / "x.npy", "--output", build / "graph.safetensors")
    one_line(res, 2, "graph.safetensors")
    assert (build / "graph.safetensors").read_bytes() == before


def test_compile_into_a_directory_holding_the_input(tmp_path, rng):
    build = tmp_path / "build"
    build.mkdir()
    write_netx(random_mlp(rng), build / "network.net")
    before = (build / "network.net").read_bytes()
    (tmp_path / "alias").symlink_to(build)
    for out in (build, tmp_path / "alias", tmp_path):
        res = invoke("compile", build / "network.net", "--target", "sim", "-o", out)
        one_line(res, 2, "contains the input")
    assert (build / "network.net").read_bytes() == before


# -- 3. files that read other files ------------------------------------------------------------
@pytest.fixture
def secret(tmp_path) -> Path:
    p = tmp_path / "secret" / "secret.bin"
    p.parent.mkdir()
    p.write_bytes(SECRET * 64)
    return p


def _assert_no_secret(res) -> None:
    for text in (res.stdout, res.stderr):
        assert SECRET.decode() not in text
        assert "7f3a9c" not in text


def _netx_with(tmp_path: Path, rng, how: str, secret: Path) -> Path:
    g = random_mlp(rng)
    path = tmp_path / "n.net"
    write_netx(g, path)
    with h5py.File(path, "a") as f:
        if how == "external_link":
            with h5py.File(tmp_path / "other.h5", "w") as o:
                o["w"] = np.frombuffer(SECRET, np.uint8)
            f["leak"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/w")
        elif how == "external_link_in_layer":
            del f["layer/1/weight"]
            f["layer/1/weight"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/w")
        elif how == "external_storage":
            f.create_dataset(
                "leak", shape=(len(SECRET),), dtype=np.uint8, external=[(str(secret), 0, len(SECRET))]
            )
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape=(len(SECRET),), dtype=np.uint8)
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "w", shape=(len(SECRET),))
            with h5py.File(tmp_path / "other.h5", "w") as o:
                o["w"] = np.frombuffer(SECRET, np.uint8)
            f.create_virtual_dataset("layer/0/leak", layout)
    return path


@pytest.mark.parametrize(
    "how, needle",
    [
        ("external_link", "external link"),
        ("external_link_in_layer", "external link"),
        ("external_storage", "external files"),
        ("virtual", "virtual dataset"),
    ],
)
def test_netx_file_pointing_at_other_files_is_refused(tmp_path, rng, secret, how, needle):
    path = _netx_with(tmp_path, rng, how, secret)
    np.save(tmp_path / "x.npy", np.zeros((1, 12, 3), np.uint8))
    for args in (
        ["simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
        ["compile", path, "--target", "sim", "-o", tmp_path / "b"],
        ["inspect", path],
    ):
        res = invoke(*args)
        one_line(res, 2, needle)
        _assert_no_secret(res)
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "b").exists()


def test_netx_soft_links_inside_the_file(tmp_path, rng):
    """A soft link that resolves inside the file reads; a dangling one or a loop is refused."""
    g = random_mlp(rng)
    np.save(tmp_path / "x.npy", spikes(rng, g, 2, 4))
    for target, ok in (("/layer", True), ("/nowhere", "does not resolve"), ("/link", "")):
        path = tmp_path / "n.net"
        write_netx(g, path)
        with h5py.File(path, "a") as f:
            f["link"] = h5py.SoftLink(target)
        res = invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
        if ok is True:
            assert res.exit_code == 0, res.stderr
        else:
            one_line(res, 2, ok)


def _onnx_build(tmp_path: Path, rng) -> tuple[Path, np.ndarray]:
    from snnc.targets.registry import TARGETS

    g = random_mlp(rng)
    build = tmp_path / "build"
    build.mkdir()
    TARGETS.get("onnx").emit(g, build)
    return build, spikes(rng, g, 1, 4)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_onnx_external_data_outside_the_build_is_refused(tmp_path, rng, secret, where):
    import onnx

    build, x = _onnx_build(tmp_path, rng)
    np.save(tmp_path / "x.npy", x)
    model = onnx.load(str(build / "model.onnx"))
    if where == "absolute":
        location = str(secret)
    elif where == "dotdot":
        location = os.path.relpath(secret, build)
    else:
        (build / "data.bin").symlink_to(secret)
        location = "data.bin"
    t = model.graph.initializer[0]
    nbytes = len(t.raw_data) or 8
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    (build / "model.onnx").write_bytes(model.SerializeToString())
    res = invoke(
        "simulate", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--backend", "onnx"
    )
    one_line(res, 2, "outside the build directory")
    _assert_no_secret(res)
    assert not (tmp_path / "y.npy").exists()


def test_raw_bool_bytes_never_kill_the_process(tmp_path):
    """The original crash, as a user meets it: SIGSEGV before; now exit 0."""
    rng = np.random.default_rng(3)
    g = random_mlp(rng, sizes=(12, 8))
    write_netx(g, tmp_path / "n.net")
    np.save(tmp_path / "x.npy", raw_bool(np.ones((1, 12, 3), np.uint8), 255))
    proc = run_snnc(
        "simulate", tmp_path / "n.net", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"
    )
    assert proc.returncode in (0, 1, 2), proc.returncode
    if proc.returncode:
        assert_one_line_error(proc)


def test_npy_header_whose_size_overflows(tmp_path, rng):
    """Found by the fuzz suite: numpy's size product overflowed with a RuntimeWarning on stderr."""
    g = random_mlp(rng)
    write_netx(g, tmp_path / "n.net")
    with open(tmp_path / "x.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|u1", "fortran_order": False, "shape": (2, 2**62, 0, 0, 0)}
        )
    res = invoke(
        "simulate", tmp_path / "n.net", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"
    )
    one_line(res, 2, "not a valid .npy")


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"steps": "abc"}, "data.steps"),
        ({"steps": -5}, "data.steps"),
        ({"steps": 1e12}, "data.steps"),  # would ask for petabytes of spikes
        ({"steps": True}, "data.steps"),
        ({"encoding": [1]}, "data.encoding"),
        ({"dataset": 3}, "data.dataset"),
        (5, "not an object"),
    ],
)
def test_build_report_with_bad_data_settings_is_one_line(tmp_path, data, needle):
    """``snnc evaluate BUILD`` reads the build's report.json: crafted data settings are refused in
    one line (exit 1, the file's contents), never an internal error or a huge allocation."""
    import json

    from graph_helpers import digits_convnet

    from snnc.targets import TARGETS

    build = tmp_path / "build"
    build.mkdir()
    TARGETS.get("loihi2").emit(digits_convnet(np.random.default_rng(0), 3), build)
    (build / "report.json").write_text(json.dumps({"data": data}))
    proc = run_snnc("evaluate", build, "--dataset", "digits", "--limit", "4")
    assert_one_line_error(proc, needle)
    assert proc.returncode == 1
    (build / "report.json").write_text(json.dumps({"data": {"steps": 8, "encoding": "rate"}}))
    proc = run_snnc("evaluate", build, "--dataset", "digits", "--limit", "4")
    assert proc.returncode == 0, proc.stderr
