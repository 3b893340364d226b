"""fold_bn: exact folding of the voltage-bias batch-norm, and the cases where it declines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from compile_helpers import masked_model, spikes, torch_output

from snnc import ir
from snnc.compile.passes.fold_bn import fold_bn
from snnc.compile.trace import trace
from snnc.sim import simulate


@pytest.mark.parametrize("arch", ["convnet", "resnet"])
def test_fold_is_exact(arch):
    model = masked_model(arch, seed=21)
    graph = trace(model)
    assert any(getattr(n, "bn", None) is not None for n in graph.nodes.values())
    folded = fold_bn(graph)
    assert all(getattr(n, "bn", None) is None for n in folded.nodes.values())
    x = spikes(4, 12, seed=22)
    np.testing.assert_allclose(simulate(folded, x).output, torch_output(model, x), atol=1e-6)
    # the input graph is untouched (passes are pure)
    assert any(getattr(n, "bn", None) is not None for n in graph.nodes.values())


def _graph_with_bn(bn: ir.BatchNorm, neuron=True, precision="float"):
    w = np.ones((2, 3))
    n = ir.CubaLIF(1.0, 2048, 1024) if neuron else None
    nodes = [ir.Input("in", shape=(3,)), ir.Dense("d", weight=w, neuron=n, bn=bn), ir.Output("o")]
    return ir.Graph.from_list(nodes, {"precision": precision})


def test_fold_hand_case():
    bn = ir.BatchNorm(
        weight=[2.0, 1.0],
        bias=[0.5, -0.5],
        running_mean=[1.0, 0.0],
        running_var=[3.0, 0.0],
        eps=1.0,
    )
    d = fold_bn(_graph_with_bn(bn)).nodes["d"]
    np.testing.assert_allclose(d.weight, [[1.0] * 3, [1.0] * 3])  # 2/sqrt(4) = 1, 1/sqrt(1) = 1
    np.testing.assert_allclose(d.neuron.bias, [0.5 - 1.0, -0.5])


def test_declines_without_usable_statistics():
    bn = ir.BatchNorm(weight=[1.0, 1.0], bias=[0.0, 0.0], running_mean=[np.nan, 0.0], running_var=[1.0, 1.0])
    out = fold_bn(_graph_with_bn(bn))
    assert out.nodes["d"].bn is not None
    assert any("not folded" in n and "non-finite" in n for n in out.meta["notes"])


def test_declines_on_fixed_graph():
    bn = ir.BatchNorm(weight=[1.0, 1.0], bias=[0.0, 0.0], running_mean=[0.0, 0.0], running_var=[1.0, 1.0])
    out = fold_bn(_graph_with_bn(bn, precision="fixed"))
    assert out.nodes["d"].bn is not None
    assert any("fixed-point" in n for n in out.meta["notes"])


def test_declines_on_synapse_only_node():
    bn = ir.BatchNorm(weight=[1.0, 1.0], bias=[0.0, 0.0], running_mean=[0.0, 0.0], running_var=[1.0, 1.0])
    w = np.ones((2, 3))
    nodes = {
        "in": ir.Input("in", shape=(3,)),
        "a": ir.Dense("a", weight=w, neuron=None, bn=bn),
        "b": ir.Dense("b", weight=w, neuron=None),
        "add": ir.Add("add", neuron=ir.CubaLIF(1.0, 2048, 1024)),
        "o": ir.Output("o"),
    }
    g = ir.Graph(
        nodes,
        (("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("add", "o")),
        {"precision": "float"},
    )
    out = fold_bn(g)
    assert out.nodes["a"].bn is not None
    assert any("synapse-only" in n for n in out.meta["notes"])
    assert dataclasses.replace(out.nodes["b"]) is not None
