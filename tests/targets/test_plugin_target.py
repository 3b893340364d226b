"""Adding a target without editing snnc: a toy target defined here (its own spec, limits and emit,
a lowering made of snnc's pieces) is registered and compiled for through ``snnc compile --target``."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from snnc import checkpoint
from snnc.cli import cli
from snnc.compile.passes import run_passes
from snnc.compile.report import validate
from snnc.ir import Graph
from snnc.nn.zoo import build
from snnc.targets import TARGETS, FixedPointSpec, Target
from snnc.targets.loihi2.map_cores import map_cores
from snnc.targets.loihi2.quantize import quantize

TOY_FILE = "toy.json"


@dataclass(frozen=True)
class ToyLimits:
    """The toy chip's budget, in map_cores' terms (its limits dataclass need not be Loihi's)."""

    cores: int = 16
    neurons_per_core: int = 1024
    sram_bytes_per_core: int = 64 * 1024
    in_axons_per_core: int = 2048

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ToyTarget:
    """A chip with Loihi-like 9-bit weights but a smaller budget, whose "binary" is a JSON file of
    layer sizes."""

    name = "toy"
    spec = FixedPointSpec(
        weight_bits=9,
        weight_min=-256,
        weight_max=254,
        threshold_max=2**17 - 1,
        bias_min=-(2**12),
        bias_max=2**12 - 1,
        decay_bits=12,
        state_bits=24,
        activation_shift=6,
    )
    limits = ToyLimits()

    def lower(self, graph: Graph, log=None, limits=None) -> Graph:
        mapper = functools.partial(map_cores, limits=limits or self.limits)
        return run_passes(graph, [quantize, mapper], log)

    def emit(self, graph: Graph, out_dir: Path) -> list[str]:
        layers = {name: list(shape) for name, shape in graph.shapes().items()}
        doc = {"chip": self.name, "spec": self.spec.to_dict(), "layers": layers}
        (Path(out_dir) / TOY_FILE).write_text(json.dumps(doc))
        return [TOY_FILE]


@pytest.fixture
def toy_target():
    target = TARGETS.register(ToyTarget())
    try:
        yield target
    finally:
        TARGETS.unregister("toy")


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10})
    path = tmp_path / "mlp.pt"
    checkpoint.save_model(path, model, {"dataset": "digits", "steps": 8, "encoding": "rate"}, {"seed": 0})
    return path


def test_toy_target_compiles_through_the_cli(toy_target, model_file, tmp_path):
    assert isinstance(toy_target, Target)
    assert "toy" in TARGETS.names() and TARGETS.get("toy") is toy_target
    out = tmp_path / "build"
    res = CliRunner().invoke(cli, ["compile", str(model_file), "--target", "toy", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    toy = json.loads((out / TOY_FILE).read_text())
    assert toy["chip"] == "toy" and toy["spec"]["weight_bits"] == 9
    assert toy["layers"]["input"] == [1, 8, 8]
    assert (out / "graph.safetensors").is_file()  # every build directory can be simulated
    report = json.loads((out / "report.json").read_text())
    validate(report)
    assert report["target"] == "toy"
    assert report["limits"] == ToyLimits().to_dict()
    assert report["precision"] == "fixed" and TOY_FILE in report["files"]


def test_unregistered_toy_is_unknown(model_file, tmp_path):
    assert "toy" not in TARGETS.names()
    res = CliRunner().invoke(cli, ["compile", str(model_file), "--target", "toy", "-o", str(tmp_path / "b")])
    assert res.exit_code != 0
    assert "toy" in res.output and "loihi2" in res.output
