"""Each IR node kind owns its shape inference and its graph.safetensors entry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snnc import ir
from snnc.ir import Add, BatchNorm, Conv, CubaLIF, Dense, Flatten, Graph, GraphError, Input, Output, Pool
from snnc.ir.graph import out_shape


def test_each_kind_infers_its_output_shape():
    conv = Conv("c", weight=np.ones((6, 2, 3, 3)), stride=(2, 1), padding=1, dilation=(1, 2))
    assert conv.out_shape((2, 9, 10), "x") == (6, 5, 8)
    assert Conv("g", weight=np.ones((6, 2, 3, 3)), groups=2).out_shape((4, 9, 10), "x") == (6, 7, 8)
    assert Pool("p", kernel=2, stride=(2, 1)).out_shape((3, 9, 10), "x") == (3, 4, 9)
    assert Dense("d", weight=np.ones((5, 12))).out_shape((12,), "x") == (5,)
    assert Flatten("f").out_shape((3, 2, 2), "x") == (12,)
    assert Output("o").out_shape((7,), "x") == (7,)
    assert Add("a").out_shape((3, 4, 4), "x") == (3, 4, 4)
    assert Input("i", shape=(1, 8, 8)).out_shape() == (1, 8, 8)
    assert out_shape(Flatten("f"), (2, 3), "x") == (6,)


@pytest.mark.parametrize(
    "node, in_shape, message",
    [
        (Dense("d", weight=np.ones((5, 12))), (11,), r"src.output \(11,\) -> d.input 12: expected \(12,\)"),
        (
            Conv("c", weight=np.ones((6, 2, 3, 3))),
            (2, 9),
            r"src.output \(2, 9\) -> c.input: expected \(C, H, W\)",
        ),
        (Conv("c", weight=np.ones((6, 2, 3, 3))), (3, 9, 9), "src.output .* -> c.input: expected 2 channels"),
        (Conv("c", weight=np.ones((6, 2, 3, 3))), (2, 2, 9), r"c: output shape \(6, 0, 7\) is empty"),
        (Pool("p", kernel=3), (2, 2, 9), r"p: output shape \(2, 0, 4\) is empty"),
    ],
)
def test_shape_errors_name_both_ends(node, in_shape, message):
    with pytest.raises(GraphError, match=message):
        node.out_shape(in_shape, "src")


def test_graph_shapes_use_the_nodes_and_check_the_edges():
    nodes = {
        "in": Input("in", shape=(4,)),
        "a": Dense("a", weight=np.ones((3, 4))),
        "b": Dense("b", weight=np.ones((2, 4))),
        "add": Add("add", neuron=CubaLIF(1, 0, 0)),
        "out": Output("out"),
    }
    edges = (("in", "a"), ("in", "b"), ("a", "add"), ("b", "add"), ("add", "out"))
    with pytest.raises(GraphError, match=r"add: Add inputs have different shapes: a \(3,\), b \(2,\)"):
        Graph(nodes, edges).shapes()
    nodes["b"] = Dense("b", weight=np.ones((3, 4)))
    assert Graph(nodes, edges).shapes()["out"] == (3,)
    with pytest.raises(GraphError, match="in: Input cannot have predecessors"):
        Graph(nodes, (*edges, ("a", "in"))).shapes()
    with pytest.raises(GraphError, match="out: output takes one input, has 2"):
        Graph(nodes, (*edges, ("a", "out"))).shapes()


def test_a_conv_writes_its_fields_and_tensors_in_the_file_format():
    rng = np.random.default_rng(0)
    bn = BatchNorm(rng.random(2), rng.random(2), rng.random(2), rng.random(2) + 0.5, eps=1e-3)
    conv = Conv(
        "c",
        weight=rng.normal(size=(2, 1, 3, 3)),
        stride=2,
        padding=(1, 0),
        groups=1,
        bn=bn,
        weight_exp=-3,
        neuron=CubaLIF(5, 100, 200, bias=[1, -2]),
        meta={"cores": 2, "cache": object()},
    )
    tensors: dict = {}
    d = conv.to_dict(tensors)
    assert d == {
        "name": "c",
        "kind": "conv",
        "meta": {"cores": 2},  # what JSON cannot hold is dropped
        "weight_exp": -3,
        "bn_eps": 1e-3,
        "stride": [2, 2],
        "padding": [1, 0],
        "dilation": [1, 1],
        "groups": 1,
        "neuron": {"threshold": 5.0, "current_decay": 100, "voltage_decay": 200, "bias": True},
    }
    assert list(d) == list(d.keys())  # key order is the file's (json.dumps keeps it)
    assert list(tensors) == [
        "c.weight",
        "c.bn.weight",
        "c.bn.bias",
        "c.bn.running_mean",
        "c.bn.running_var",
        "c.neuron.bias",
    ]
    back = Conv.from_dict(d, tensors)
    assert isinstance(back.neuron.threshold, int)  # an integral threshold is a mantissa
    assert back.meta == {"cores": 2}
    np.testing.assert_array_equal(back.weight, conv.weight)
    np.testing.assert_array_equal(back.bn.running_var, bn.running_var)
    assert (back.stride, back.padding, back.weight_exp, back.bn.eps) == ((2, 2), (1, 0), -3, 1e-3)


@pytest.mark.parametrize(
    "node",
    [
        Input("i", shape=(1, 8, 8)),
        Output("o"),
        Flatten("f"),
        Pool("p", kernel=(2, 3), stride=1, weight=2.5, neuron=CubaLIF(0.5, 0, 4096)),
        Dense("d", weight=np.arange(6.0).reshape(2, 3), weight_exp=2, neuron=None),
        Add("a", neuron=CubaLIF(7, 1, 2, bias=[0.5, 1.5])),
        Conv("c", weight=np.ones((4, 1, 1, 1)), groups=4, dilation=2),
    ],
)
def test_every_kind_round_trips_through_its_dict(node):
    tensors: dict = {}
    back = ir.NODE_KINDS[node.kind].from_dict(node.to_dict(tensors), tensors)
    assert type(back) is type(node)
    for f in dataclasses.fields(node):
        a, b = getattr(node, f.name), getattr(back, f.name)
        if dataclasses.is_dataclass(a):
            assert dataclasses.asdict(a).keys() == dataclasses.asdict(b).keys()
            for k, v in dataclasses.asdict(a).items():
                np.testing.assert_array_equal(dataclasses.asdict(b)[k], v)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, f.name
