"""map_cores: neurocore partition under the Loihi 2 limits, with a clear error when a net cannot
fit."""

from __future__ import annotations

import numpy as np
import pytest
from compile_helpers import masked_model

from snnc import ir
from snnc.compile.pipeline import compile_graph
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.targets.loihi2 import TARGET
from snnc.targets.loihi2.map_cores import map_cores
from snnc.targets.loihi2.spec import NEURON_STATE_BYTES, CoreLimits


def _dense(n_in: int, n_out: int):
    nodes = [
        ir.Input("in", shape=(n_in,)),
        ir.Dense("fc", weight=np.ones((n_out, n_in)), neuron=ir.CubaLIF(1.0, 2048, 1024)),
        ir.Output("o"),
    ]
    return ir.Graph.from_list(nodes, {"precision": "float"})


def test_hand_computed_dense_mapping():
    # 2000 neurons x 100 inputs, 8 packed bits per synapse (float graph: the 8 bits it will get)
    g = map_cores(_dense(100, 2000))
    m = g.nodes["fc"].meta["mapping"]
    per_neuron = 100 * 8 / 8 + NEURON_STATE_BYTES  # 108 bytes
    assert m["cores"] == 2  # 2000 * 120.5 = 241000 bytes > 128 KiB, 1000 * 120.5 fits
    assert 2000 * per_neuron > 128 * 1024 >= 1000 * per_neuron
    assert m["neurons"] == 2000 and m["synapses"] == 200_000
    assert m["sram_bytes_per_core"] == int(np.ceil(1000 * per_neuron))
    assert g.meta["cores_used"] == 2


def test_neuron_limit_splits_layer():
    g = map_cores(_dense(1, 20_000))
    assert g.nodes["fc"].meta["cores"] == 3  # 8192 neurons per core


def test_layer_that_cannot_fit_names_layer_and_limit():
    with pytest.raises(SnncError, match=r"layer fc: one neuron needs .* bytes .* 131072-byte SRAM"):
        map_cores(_dense(140_000, 4), CoreLimits(in_axons_per_core=10**6))
    with pytest.raises(SnncError, match=r"layer fc needs 5000 input axons .* limit of 4096"):
        map_cores(_dense(5000, 4))


def test_core_budget_error_names_layer():
    graph = compile_graph(trace(masked_model("convnet", seed=2, keep=1.0)), TARGET).pruned
    ok = map_cores(graph)
    used = ok.meta["cores_used"]
    assert used >= 4
    with pytest.raises(SnncError, match=r"layer blocks\.\d+ needs \d+ neurocores.*limit of 3 cores"):
        map_cores(graph, CoreLimits(cores=3))


def test_every_population_gets_cores():
    g = compile_graph(trace(masked_model("resnet", seed=4)), TARGET).final
    for node in g.nodes.values():
        if isinstance(node, ir.Add | ir.Pool) or getattr(node, "neuron", None) is not None:
            m = node.meta["mapping"]
            assert m["cores"] >= 1 and 0 < m["utilization_sram"] <= 1
            assert 0 < m["utilization_neurons"] <= 1


def test_large_feature_map_is_split_by_rows():
    """A 3x3 conv on a 16x28x28 map reads 12544 inputs, over the 4096-axon limit: the layer is split
    by output rows so that each core reads only the input rows it needs (hand-computed bound)."""
    from snnc.targets.loihi2.map_cores import chunk_axons

    w = np.ones((16, 16, 3, 3))
    nodes = [
        ir.Input("in", shape=(16, 28, 28)),
        ir.Conv("c", weight=w, padding=1, neuron=ir.CubaLIF(1.0, 2048, 1024)),
        ir.Output("o"),
    ]
    g = ir.Graph.from_list(nodes, {"precision": "float"})
    shapes = g.shapes()
    assert chunk_axons(g, shapes, "c", 16 * 28 * 28) == 16 * 28 * 28
    # one neuron: output rows straddle at most 2 rows -> 2 + 2 input rows of 28 columns, 16 channels
    assert chunk_axons(g, shapes, "c", 1) == 16 * 4 * 28
    m = map_cores(g).nodes["c"].meta["mapping"]
    assert m["cores"] > 1 and m["in_axons_per_core"] <= 4096


def test_mnist_sized_zoo_nets_fit_one_chip():
    from snnc.nn.zoo import build

    for arch in ("mlp", "lenet", "convnet", "resnet"):
        model = build(arch, {"input_shape": [1, 28, 28], "num_classes": 10})
        g = map_cores(compile_graph(trace(model), TARGET).pruned)
        assert 1 <= g.meta["cores_used"] <= 128, arch
