"""Fuzzing every file kind snnc reads: mutate a valid file and hold the CLI to its contract.

Kinds: a model file (header JSON fields, tensors), a netx HDF5 (datasets: values, shapes, dtypes,
deletions), ``graph.safetensors`` (header JSON fields, tensors) and ``X.npy`` (header fields,
shapes, dtypes, raw bytes); every kind also gets raw-byte mutations (overwrites, truncations,
appended junk). The contract: exit 0 (the mutation left a valid file), or exit 1 or 2 with one
line on stderr, no traceback, no "internal error", and no output or temp file left behind.

In process (click's CliRunner) for speed; the raw bytes of ``X.npy`` also in real processes, so
that a crash is a failed test rather than a dead test run. ``SNNC_FUZZ_PROFILE=long`` (``make
fuzz``) runs many more examples than the default ``ci`` profile.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from graph_helpers import random_convnet, random_mlp, spikes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from snnc import checkpoint
from snnc.cli import cli
from snnc.ir.serialize import save_graph
from snnc.nn.zoo import build
from snnc.targets.loihi2 import write_netx

REPO = Path(__file__).resolve().parents[2]
_COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}
# ci: the same examples on every run (a red CI run is reproducible); long: fresh ones each run
settings.register_profile(
    "ci", max_examples=int(os.environ.get("SNNC_FUZZ_EXAMPLES", 50)), derandomize=True, **_COMMON
)
settings.register_profile("long", max_examples=int(os.environ.get("SNNC_FUZZ_EXAMPLES", 1000)), **_COMMON)
PROFILE = os.environ.get("SNNC_FUZZ_PROFILE", "ci")
fuzz = settings.get_profile(PROFILE)


# -- the valid files every mutation starts from ------------------------------------------------
@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    model = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [16]})
    checkpoint.save_model(d / "m.pt", model, {"dataset": "digits", "steps": 4, "encoding": "rate"}, {})
    _, model_header = checkpoint.read_tensors(d / "m.pt")
    conv, mlp = random_convnet(rng), random_mlp(rng)
    write_netx(conv, d / "conv.net")
    write_netx(mlp, d / "mlp.net")
    save_graph(conv, d / "graph.safetensors")
    np.save(d / "x_conv.npy", spikes(rng, conv, 2, 5).astype(np.uint8))
    np.save(d / "x_mlp.npy", spikes(rng, mlp, 2, 5).astype(np.uint8))
    return Seeds(
        {
            "dir": d,
            "model_state": {k: v.clone() for k, v in model.state_dict().items()},
            "model_header": model_header,
            "conv_shape": conv.input.shape,
        }
    )


class Seeds(dict):
    """The seed files; a short repr, since hypothesis prints the arguments of a failing case."""

    def __repr__(self) -> str:
        return f"Seeds({self['dir']})"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob(".*") if ".tmp" in p.name or ".old." in p.name)


def check_contract(res, work: Path, outputs: list[Path]) -> None:
    """Exit 0, or 1/2 with one clean line and no output or temp file."""
    if res.exit_code == 0:
        assert not _leftovers(work), _leftovers(work)
        return
    err = res.stderr
    assert res.exit_code in (1, 2), (res.exit_code, err, repr(res.exception))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines[0].startswith("snnc: error: "), lines[0]
    for out in outputs:
        assert not out.exists(), out
    assert not _leftovers(work), _leftovers(work)


def invoke(*args):
    """The CLI in process; numpy's warnings (which a real process prints on stderr, next to the
    one error line) are added to ``stderr`` too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    noise = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, RuntimeWarning)]
    if noise and res.exit_code:
        raise AssertionError(f"exit {res.exit_code} with warnings on stderr: {noise} and {res.stderr!r}")
    return res


# -- mutation strategies -----------------------------------------------------------------------
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**9, 10**10, -(10**10)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(obj, prefix=()) -> list[tuple]:
    """Every path (a tuple of keys/indices) into a JSON value."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set_path(obj, path: tuple, value):
    if not path:
        return value
    obj = copy.deepcopy(obj)
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return obj


def _delete_path(obj, path: tuple):
    obj = copy.deepcopy(obj)
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    del cur[path[-1]]
    return obj


@st.composite
def json_mutation(draw, header: dict):
    """``header`` with one field replaced by a random JSON value, or deleted."""
    path = draw(st.sampled_from(_paths(header)))
    if path and draw(st.booleans()) and draw(st.booleans()):
        return _delete_path(header, path)
    return _set_path(header, path, draw(JSON_VALUE))


ARRAY_DTYPES = st.sampled_from(
    [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_]
)


@st.composite
def random_array(draw, like: np.ndarray | None = None):
    """An array: the same shape as ``like`` with odd values, or a random shape and dtype."""
    dtype = draw(ARRAY_DTYPES)
    if like is not None and draw(st.booleans()):
        shape = like.shape
    else:
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=4)))
    n = math.prod(shape)
    specials = [0, 1, -1, 2, 255, 2**31 - 1, -(2**31), 2**62, np.nan, np.inf, -np.inf, 0.5, 1e30]
    vals = draw(st.lists(st.sampled_from(specials) | st.integers(-300, 300), min_size=n, max_size=n))
    with np.errstate(all="ignore"):
        a = np.array(vals, dtype=np.float64).reshape(shape)
        if np.issubdtype(dtype, np.integer):
            a = np.nan_to_num(a, posinf=0, neginf=0)
            info = np.iinfo(dtype)
            a = np.clip(a, info.min, info.max)
        return a.astype(dtype)


@st.composite
def byte_mutation(draw, data: bytes):
    """Overwrite 1-8 bytes, truncate, or append junk."""
    kind = draw(st.sampled_from(["overwrite", "truncate", "append"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=64))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        # the headers (JSON, HDF5 superblock and object headers, npy header) are near the start
        hi = min(len(buf) - 1, draw(st.sampled_from([255, 4095, len(buf) - 1])))
        buf[draw(st.integers(0, hi))] = draw(st.integers(0, 255))
    return bytes(buf)


# -- the properties ----------------------------------------------------------------------------
def _simulate(net: Path, x: Path, work: Path):
    y = work / "y.npy"
    return invoke("simulate", net, "--input", x, "--output", y, "--quiet"), [y]


@fuzz
@given(data=st.data())
def test_fuzz_model_file(seeds, data):
    header = seeds["model_header"]
    state = seeds["model_state"]
    with tempfile.TemporaryDirectory() as w:
        work = Path(w)
        path = work / "m.pt"
        how = data.draw(st.sampled_from(["header", "tensor", "bytes"]), label="mutation")
        if how == "bytes":
            path.write_bytes(data.draw(byte_mutation((seeds["dir"] / "m.pt").read_bytes())))
        else:
            h = {k: v for k, v in header.items() if k != "digest"}
            tensors = dict(state)
            if how == "header":
                h = data.draw(json_mutation(h), label="header")
                assume(isinstance(h, dict))
            else:
                import torch

                key = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
                if data.draw(st.booleans()):
                    del tensors[key]
                else:
                    tensors[key] = torch.from_numpy(
                        np.ascontiguousarray(data.draw(random_array(tensors[key].numpy())))
                    )
            try:
                checkpoint.save_tensors(path, tensors, h)  # a valid digest: the mutation gets past it
            except Exception:
                assume(False)  # not writable as a model file at all (e.g. a non-JSON value)
        res = invoke("inspect", path)
        check_contract(res, work, [])
        if res.exit_code == 0 and data.draw(st.booleans()):
            out = work / "build"
            check_contract(invoke("compile", path, "--target", "sim", "-o", out, "--quiet"), work, [out])


def _h5_datasets(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


@fuzz
@given(data=st.data())
def test_fuzz_netx_file(seeds, data):
    net = data.draw(st.sampled_from(["conv", "mlp"]), label="net")
    seed = seeds["dir"] / f"{net}.net"
    with tempfile.TemporaryDirectory() as w:
        work = Path(w)
        path = work / "n.net"
        how = data.draw(st.sampled_from(["dataset", "dataset", "delete", "bytes"]), label="mutation")
        if how == "bytes":
            path.write_bytes(data.draw(byte_mutation(seed.read_bytes())))
        else:
            path.write_bytes(seed.read_bytes())
            key = data.draw(st.sampled_from(_h5_datasets(seed)), label="dataset")
            with h5py.File(path, "a") as f:
                old = f[key][()]
                del f[key]
                if how == "dataset":
                    new = data.draw(
                        random_array(np.asarray(old) if np.asarray(old).dtype.kind in "biuf" else None)
                    )
                    f.create_dataset(key, data=new)
        res, outs = _simulate(path, seeds["dir"] / f"x_{net}.npy", work)
        check_contract(res, work, outs)


@fuzz
@given(data=st.data())
def test_fuzz_graph_file(seeds, data):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    seed = seeds["dir"] / "graph.safetensors"
    with safe_open(str(seed), framework="numpy") as f:
        header = json.loads(f.metadata()["snnc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    with tempfile.TemporaryDirectory() as w:
        work = Path(w)
        build_dir = work / "build"
        build_dir.mkdir()
        path = build_dir / "graph.safetensors"
        how = data.draw(st.sampled_from(["header", "header", "tensor", "bytes"]), label="mutation")
        if how == "bytes":
            path.write_bytes(data.draw(byte_mutation(seed.read_bytes())))
        else:
            if how == "header":
                header = data.draw(json_mutation(header), label="header")
            else:
                key = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
                tensors = {**tensors, key: np.ascontiguousarray(data.draw(random_array(tensors[key])))}
            try:
                text = json.dumps(header)
            except (TypeError, ValueError):
                assume(False)
            try:
                save_file(tensors, str(path), metadata={"snnc": text})
            except Exception:
                assume(False)  # safetensors cannot hold it (e.g. float16 of odd layout): nothing to read
        res, outs = _simulate(build_dir, seeds["dir"] / "x_conv.npy", work)
        check_contract(res, work, outs)


def _npy_header(data) -> dict:
    """A dict for an npy header: descr, fortran_order and shape, each possibly odd."""
    descr = data.draw(
        st.sampled_from(
            ["|u1", "|b1", "|i1", "<i8", ">i4", "<f8", "<f2", "|O", "<c16", "|S3", "<U2", "V8", "bogus"]
        ),
        label="descr",
    )
    shape = data.draw(
        st.one_of(
            st.just((2, 2, 9, 9, 5)),
            st.lists(st.integers(0, 12), max_size=6).map(tuple),
            st.lists(st.sampled_from([0, 1, 2, 9, 10**6, 10**12, 2**62]), min_size=5, max_size=5).map(tuple),
        ),
        label="shape",
    )
    return {"descr": descr, "fortran_order": data.draw(st.booleans(), label="fortran"), "shape": shape}


def _npy_bytes(data, seed: bytes) -> bytes:
    how = data.draw(st.sampled_from(["header", "array", "bytes"]), label="mutation")
    if how == "bytes":
        return data.draw(byte_mutation(seed))
    import io

    fh = io.BytesIO()
    if how == "header":
        try:
            np.lib.format.write_array_header_1_0(fh, _npy_header(data))
        except ValueError:
            assume(False)
        body = data.draw(st.binary(max_size=2048), label="body")
        return fh.getvalue() + body
    a = data.draw(random_array(np.zeros((2, 2, 9, 9, 5))), label="array")
    if data.draw(st.booleans()):
        with np.errstate(invalid="ignore"):
            raw = (a.astype(np.uint8) if a.dtype != np.bool_ else a.view(np.uint8)).copy()
        raw.reshape(-1)[:] = data.draw(st.sampled_from([0, 1, 2, 7, 128, 255]))
        a = raw.view(np.bool_)  # numpy bool storage holding any byte
    np.save(fh, a)
    return fh.getvalue()


@fuzz
@given(data=st.data())
def test_fuzz_x_npy(seeds, data):
    with tempfile.TemporaryDirectory() as w:
        work = Path(w)
        x = work / "x.npy"
        x.write_bytes(_npy_bytes(data, (seeds["dir"] / "x_conv.npy").read_bytes()))
        res, outs = _simulate(seeds["dir"] / "conv.net", x, work)
        check_contract(res, work, outs)


@settings(fuzz, max_examples=max(3, fuzz.max_examples // 5))
@given(data=st.data())
def test_fuzz_x_npy_in_a_real_process(seeds, data):
    """The crash class (raw bool bytes, odd dtypes reaching the compiled kernels) where a crash
    kills only the child: exit 0/1/2, never a signal."""
    with tempfile.TemporaryDirectory() as w:
        work = Path(w)
        x = work / "x.npy"
        x.write_bytes(_npy_bytes(data, (seeds["dir"] / "x_mlp.npy").read_bytes()))
        y = work / "y.npy"
        proc = subprocess.run(
            [sys.executable, "-m", "snnc", "simulate", seeds["dir"] / "mlp.net", "--input", x, "--output", y],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
        assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr)
        if proc.returncode:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and "internal error" not in proc.stderr, proc.stderr
            assert not y.exists()
        assert not _leftovers(work)


CORPUS = Path(__file__).parent / "corpus"  # netx files as .hdf5 (.net is ignored by git)


def test_fuzz_corpus_is_present():
    assert sorted(CORPUS.glob("*.hdf5")), "the regression corpus is missing"


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.hdf5")))
def test_fuzz_corpus_netx(seeds, name):
    """Files the fuzzer once broke snnc with, kept as regressions (``unknown_object_type``: a
    flipped byte in the object header of ``/layer``; h5py's ``get`` hid it as ``None``)."""
    with tempfile.TemporaryDirectory() as w:
        res, outs = _simulate(CORPUS / name, seeds["dir"] / "x_conv.npy", Path(w))
        assert res.exit_code in (1, 2)
        check_contract(res, Path(w), outs)
