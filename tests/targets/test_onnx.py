"""ONNX export: onnxruntime, driven step by step, equals the simulator exactly."""

from __future__ import annotations

import numpy as np
import onnx
from graph_helpers import fixed_graph, neuron, random_convnet, random_mlp, random_residual, spikes

from snnc.ir import Dense, Input
from snnc.sim import simulate
from snnc.targets.onnx import build_step_model, export_onnx, run_onnx


def test_onnx_equals_sim_on_random_graphs(rng):
    for g in (
        random_mlp(rng),
        random_convnet(rng),
        random_convnet(rng, pool=False),
        random_residual(rng),
    ):
        x = spikes(rng, g, 4, 18, p=0.4)
        want = simulate(g, x, record=True)
        assert sum(want.spikes.values()) > 0
        np.testing.assert_array_equal(run_onnx(build_step_model(g), x), want.output)


def test_onnx_fixed_point_corner_cases(rng):
    # big weights make u wrap and v saturate; a negative weight_exp floors the sum (docs/loihi2.md
    # §2.1-2.2)
    g = fixed_graph(
        [
            Input("in", shape=(6,)),
            Dense("fc", weight=rng.integers(-(2**16), 2**16, (4, 6)), neuron=neuron(rng, 4)),
            Dense("fc2", weight=rng.integers(-7, 8, (3, 4)), weight_exp=-1, neuron=neuron(rng, 3)),
        ]
    )
    x = spikes(rng, g, 5, 30, p=0.5)
    np.testing.assert_array_equal(run_onnx(build_step_model(g), x), simulate(g, x).output)


def test_exported_file_is_valid_onnx(tmp_path, rng):
    g = random_convnet(rng)
    path = tmp_path / "model.onnx"
    export_onnx(g, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    names = [i.name for i in model.graph.input]
    assert names[0] == "x" and "c1.abuf" in names and "c1.u" in names and "c1.v" in names
    x = spikes(rng, g, 2, 10)
    np.testing.assert_array_equal(run_onnx(path, x), simulate(g, x).output)
