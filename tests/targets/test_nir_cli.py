"""NIR files as input to ``snnc inspect``, ``compile``, ``simulate`` and ``evaluate``; ``check``
refuses them. A NIR file written by ``snnc compile --target nir`` compiles for loihi2 to the same
build as the model file it came from; snnTorch's ``export_to_nir`` files compile and simulate too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from compile_helpers import graphs_equal, masked_model, spikes

from snnc import checkpoint
from snnc.checkpoint import sniff
from snnc.cli import cli
from snnc.ir.serialize import load_graph
from snnc.sim import simulate
from snnc.targets.loihi2 import write_netx
from snnc.targets.nir import NIR_FILE, read_nir

nir = pytest.importorskip("nir")

STEPS = 16


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(res, code: int, *needles: str) -> str:
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _model_file(tmp_path: Path, arch: str) -> Path:
    path = tmp_path / f"{arch}.pt"
    model = masked_model(arch, seed=63).float()
    checkpoint.save_model(path, model, {"dataset": "digits", "steps": 8, "encoding": "rate"}, {"seed": 0})
    return path


@pytest.mark.parametrize("arch", ["mlp", "convnet"])
def test_own_nir_export_inspects_compiles_checks_and_simulates(arch, tmp_path):
    model = _model_file(tmp_path, arch)
    assert invoke("compile", model, "--target", "nir", "-o", tmp_path / "n").exit_code == 0
    nir_path = tmp_path / "n" / NIR_FILE
    assert sniff(nir_path) == "nir"
    float_graph = read_nir(nir_path)
    assert float_graph.precision == "float"

    res = invoke("inspect", nir_path, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["type"] == "nir" and info["precision"] == "float"
    assert info["input_shape"] == [1, 8, 8] and info["output_shape"] == [10]
    hidden = [n for n, node in float_graph.nodes.items() if node.kind not in ("input", "output")]
    assert [la["name"] for la in info["layers"]] == hidden
    assert info["parameters"] > 0

    # the NIR file compiles for loihi2 to exactly the build of the model file it came from
    res = invoke("compile", nir_path, "--target", "loihi2", "-o", tmp_path / "bn")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "bn" / "report.json").read_text())
    assert report["source"]["kind"] == "nir"
    assert report["data"] == {"dataset": None, "steps": None, "encoding": None}
    assert invoke("compile", model, "--target", "loihi2", "-o", tmp_path / "bm").exit_code == 0
    fixed = load_graph(tmp_path / "bn" / "graph.safetensors")
    assert fixed.precision == "fixed"
    assert graphs_equal(fixed, load_graph(tmp_path / "bm" / "graph.safetensors"))
    net = "network.net"
    assert (tmp_path / "bn" / net).read_bytes() == (tmp_path / "bm" / net).read_bytes()
    res = invoke("check", tmp_path / "bn")
    assert res.exit_code == 0, res.output
    assert "0 violations" in res.stdout

    # simulate runs the NIR file's float graph on the simulator's float path
    x = spikes(3, STEPS, seed=72)
    np.save(tmp_path / "x.npy", x)
    y = tmp_path / "y.npy"
    res = invoke("simulate", nir_path, "--input", tmp_path / "x.npy", "--output", y, "--quiet")
    assert res.exit_code == 0, res.output
    got = np.load(y)
    ref = simulate(load_graph(tmp_path / "n" / "graph.safetensors"), x).output
    assert ref.sum() > 0
    np.testing.assert_array_equal(got, ref)

    # evaluate runs the same float graph as the build's graph.safetensors (the NIR export's)
    args = ("--dataset", "digits", "--limit", "8", "-T", "6", "--json")
    res = invoke("evaluate", nir_path, *args)
    assert res.exit_code == 0, res.output
    ref_res = invoke("evaluate", tmp_path / "n" / "graph.safetensors", *args)
    assert ref_res.exit_code == 0, ref_res.output
    assert json.loads(res.stdout)["accuracy"] == json.loads(ref_res.stdout)["accuracy"]


def test_snntorch_export_compiles_and_simulates(tmp_path):
    snntorch = pytest.importorskip("snntorch")
    export_nir = pytest.importorskip("snntorch.export_nir")
    torch.manual_seed(5)
    kw = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 12, bias=False),
        snntorch.Leaky(beta=torch.full((12,), 0.75), threshold=torch.full((12,), 0.5), **kw),
        torch.nn.Linear(12, 6, bias=False),
        snntorch.Leaky(beta=torch.full((6,), 0.875), threshold=torch.full((6,), 0.5), output=True, **kw),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3.0)
    path = tmp_path / "snntorch.nir"
    nir.write(str(path), export_nir.export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    assert sniff(path) == "nir"
    res = invoke("inspect", path, "--json")
    assert res.exit_code == 0, res.output
    assert [la["kind"] for la in json.loads(res.stdout)["layers"]] == ["flatten", "dense", "dense"]

    x = spikes(3, STEPS, seed=73)
    np.save(tmp_path / "x.npy", x)
    res = invoke("simulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--quiet")
    assert res.exit_code == 0, res.output
    float_out = np.load(tmp_path / "y.npy")
    assert float_out.sum() > 0
    np.testing.assert_array_equal(float_out, simulate(read_nir(path), x).output)

    res = invoke("compile", path, "--target", "loihi2", "-o", tmp_path / "b")
    assert res.exit_code == 0, res.output
    assert invoke("check", tmp_path / "b").exit_code == 0
    fixed_out = simulate(load_graph(tmp_path / "b" / "graph.safetensors"), x).output
    # quantized weights: the fixed build agrees with the float graph within quantization (measured: all
    # output entries equal on this net)
    assert fixed_out.sum() > 0
    assert (fixed_out == float_out).mean() >= 0.9


@pytest.fixture
def unsupported_nir(tmp_path) -> Path:
    g = nir.NIRGraph.from_list(
        nir.Input(np.array([2])),
        nir.Affine(np.ones((3, 2)), np.zeros(3)),
        nir.Threshold(threshold=np.ones(3)),
        nir.Output(np.array([3])),
    )
    path = tmp_path / "threshold.nir"
    nir.write(str(path), g)
    return path


def test_unsupported_node_is_one_line_naming_it(unsupported_nir, tmp_path):
    x = np.zeros((1, 2, 4), np.uint8)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "build"
    for args in (
        ("inspect", unsupported_nir),
        ("compile", unsupported_nir, "--target", "loihi2", "-o", out),
        ("simulate", unsupported_nir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"),
    ):
        one_line(invoke(*args), 1, "NIR node threshold", "type Threshold")
    assert not out.exists() and not (tmp_path / "y.npy").exists()


def test_check_refuses_a_nir_file(unsupported_nir):
    one_line(invoke("check", unsupported_nir), 2, "NIR graph is float", "compile it for loihi2")


def test_netx_file_still_sniffs_as_hdf5(tmp_path):
    from graph_helpers import random_mlp

    path = tmp_path / "network.net"
    write_netx(random_mlp(np.random.default_rng(3)), path)
    assert sniff(path) == "hdf5"


def test_damaged_nir_file_is_one_line(tmp_path):
    import h5py

    model = _model_file(tmp_path, "mlp")
    assert invoke("compile", model, "--target", "nir", "-o", tmp_path / "n").exit_code == 0
    path = tmp_path / "n" / NIR_FILE
    with h5py.File(path, "a") as f:
        nodes = f["node/nodes"]
        del nodes[next(n for n in nodes if "weight" in nodes[n])]["weight"]
    assert sniff(path) == "nir"
    one_line(invoke("inspect", path), 1, "not a readable NIR file")
    res = invoke("compile", path, "--target", "loihi2", "-o", tmp_path / "b")
    one_line(res, 1, "not a readable NIR file")
    assert not (tmp_path / "b").exists()
