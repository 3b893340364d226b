"""Builders shared by the targets tests: tiny fixed-point IR graphs and random spikes."""

from __future__ import annotations

import numpy as np

from snnc.ir import Add, Conv, CubaLIF, Dense, Flatten, Graph, Input, Output, Pool


def fixed_graph(nodes: list) -> Graph:
    """A sequential fixed-point graph from a node list (Input ... ) with an Output appended."""
    return Graph.from_list([*nodes, Output("out")], meta={"precision": "fixed"}).verify()


def neuron(rng: np.random.Generator, channels: int, bias: bool = True) -> CubaLIF:
    return CubaLIF(
        threshold=int(rng.integers(20, 200)),
        current_decay=int(rng.integers(0, 4097)),
        voltage_decay=int(rng.integers(0, 4097)),
        bias=rng.integers(-30, 31, channels) if bias else None,
    )


def even_weights(rng: np.random.Generator, shape, scale: int = 120) -> np.ndarray:
    """Even integers in [-256, 254] (what netx reproduces exactly, docs/loihi2.md §1.5)."""
    w = 2 * rng.integers(-scale // 2, scale // 2 + 1, shape)
    w.flat[0] = 2 * (scale // 2) or 2  # never all zero
    return np.clip(w, -256, 254)


def random_mlp(rng: np.random.Generator, sizes=(12, 16, 8, 5)) -> Graph:
    nodes: list = [Input("in", shape=(sizes[0],))]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        nodes.append(Dense(f"fc{i}", weight=even_weights(rng, (b, a)), neuron=neuron(rng, b)))
    return fixed_graph(nodes)


def digits_convnet(rng: np.random.Generator, channels: int) -> Graph:
    """A fixed net for digits' (1, 8, 8) input: conv 3x3 stride 2 -> flatten -> dense 10."""
    conv_weight = 2 * rng.integers(-20, 30, (channels, 1, 3, 3))
    return fixed_graph(
        [
            Input("in", shape=(1, 8, 8)),
            Conv("c", weight=conv_weight, stride=2, neuron=neuron(rng, channels)),
            Flatten("f"),
            Dense("fc", weight=2 * rng.integers(-30, 40, (10, channels * 9)), neuron=neuron(rng, 10)),
        ]
    )


def random_convnet(rng: np.random.Generator, pool: bool = True) -> Graph:
    """conv (stride 2, padding 1) -> [sum-pool] -> conv (padding (1, 0)) -> flatten -> dense."""
    nodes: list = [
        Input("in", shape=(2, 9, 9)),
        Conv(
            "c1",
            weight=2 * rng.integers(-45, 46, (4, 2, 3, 3)),
            stride=2,
            padding=1,
            neuron=neuron(rng, 4),
        ),
    ]
    if pool:
        nodes.append(
            Pool(
                "p1",
                kernel=2,
                stride=1,
                weight=1.0,
                neuron=CubaLIF(threshold=0, current_decay=4096, voltage_decay=4096),
            )
        )
    nodes += [
        Conv("c2", weight=2 * rng.integers(-30, 31, (3, 4, 3, 3)), padding=(1, 0), neuron=neuron(rng, 3)),
        Flatten("flat"),
    ]
    flat = Graph.from_list(nodes).shapes()["flat"][0]
    nodes.append(Dense("fc", weight=even_weights(rng, (5, flat)), neuron=neuron(rng, 5)))
    return fixed_graph(nodes)


def random_residual(rng: np.random.Generator) -> Graph:
    """in -> c1 (LIF) -> {c2, 1x1 shortcut from in} (synapse only) -> add (LIF) -> flatten -> fc."""
    nodes = {
        "in": Input("in", shape=(2, 6, 6)),
        "c1": Conv("c1", weight=2 * rng.integers(-40, 41, (3, 2, 3, 3)), padding=1, neuron=neuron(rng, 3)),
        "c2": Conv("c2", weight=2 * rng.integers(-40, 41, (3, 3, 3, 3)), padding=1),
        "short": Conv("short", weight=2 * rng.integers(-40, 41, (3, 2, 1, 1))),
        "add": Add("add", neuron=neuron(rng, 3)),
        "flat": Flatten("flat"),
        "fc": Dense("fc", weight=even_weights(rng, (4, 3 * 36)), neuron=neuron(rng, 4)),
        "out": Output("out"),
    }
    edges = [
        ("in", "c1"),
        ("c1", "c2"),
        ("in", "short"),
        ("c2", "add"),
        ("short", "add"),
        ("add", "flat"),
        ("flat", "fc"),
        ("fc", "out"),
    ]
    return Graph(nodes, tuple(edges), {"precision": "fixed"}).verify()


def spikes(rng: np.random.Generator, graph: Graph, n: int, t: int, p: float = 0.3) -> np.ndarray:
    return (rng.random((n, *graph.input.shape, t)) < p).astype(np.int8)
