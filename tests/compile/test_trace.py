"""trace: a zoo model (with masks) -> float IR that simulates exactly like the torch model."""

from __future__ import annotations

import numpy as np
import pytest
from compile_helpers import ARCHS, masked_model, residual_index, spikes, torch_output

from snnc import ir
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.sim import simulate


@pytest.mark.parametrize("arch", ARCHS)
def test_traced_graph_matches_torch_model(arch):
    model = masked_model(arch, seed=1)
    x = spikes(6, 16, seed=2)
    graph = trace(model)
    assert graph.precision == "float"
    ref = torch_output(model, x)
    got = simulate(graph, x).output
    assert ref.sum() > 0  # the comparison is not vacuous
    np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_layer_matches_torch_records(arch):
    """Per-layer spikes (not only the output) equal the torch blocks' recorded spikes."""
    model = masked_model(arch, seed=3)
    x = spikes(4, 12, seed=4)
    blocks = {}
    for name, b in model.named_modules():
        if hasattr(b, "record") and getattr(b, "neuron", None) is not None:
            b.record = {}
            blocks[name] = b
    torch_output(model, x)
    res = simulate(trace(model), x, record=True)
    checked = 0
    for name, b in blocks.items():
        assert name in res.layers, name
        np.testing.assert_array_equal(res.layers[name], b.record["spikes"].numpy())
        checked += 1
    assert checked >= 2


def test_residual_structure_and_masks():
    model = masked_model("resnet", seed=5)
    g = trace(model)
    r = f"blocks.{residual_index(model)}"
    add = g.nodes[r]
    assert isinstance(add, ir.Add)
    assert sorted(g.predecessors(r)) == [f"{r}.main.1", f"{r}.shortcut"]
    assert g.nodes[f"{r}.main.1"].neuron is None and g.nodes[f"{r}.shortcut"].neuron is None
    assert g.predecessors(f"{r}.shortcut") == g.predecessors(f"{r}.main.0")
    mask = model.blocks[residual_index(model)].channel_mask.numpy()
    np.testing.assert_array_equal(add.meta["channel_mask"], mask)
    # a masked Add channel: zero weights into it from both branches, zero bias
    off = np.nonzero(mask == 0)[0]
    assert off.size
    for p in (f"{r}.main.1", f"{r}.shortcut"):
        assert not np.any(g.nodes[p].weight[off])
    assert not np.any(add.neuron.bias[off])


def test_masked_channel_has_no_bn_effect():
    model = masked_model("convnet", seed=6)
    node = trace(model).nodes["blocks.0"]
    off = node.meta["channel_mask"] == 0
    assert off.any()
    assert not np.any(node.weight[off]) and not np.any(node.bn.weight[off])
    assert not np.any(node.bn.bias[off])
    assert node.bn is not None


def test_trace_refuses_non_zoo_model():
    import torch

    with pytest.raises(SnncError, match="SpikingNet"):
        trace(torch.nn.Linear(2, 2))


def test_conv_with_pooled_current_traces_to_one_strided_conv():
    """``Conv(pool=2)`` (sum-pool on the current) becomes one conv of kernel k+1, stride 2: same spikes."""
    import torch

    from snnc.nn import Conv, Dense, Flatten, NeuronParams
    from snnc.nn.zoo import SpikingNet

    torch.manual_seed(0)
    p = NeuronParams(threshold=0.5)
    blocks = [Conv(1, 4, 3, padding=1, neuron=p, pool=2), Flatten(), Dense(4 * 4 * 4, 10, p)]
    model = SpikingNet(blocks, (1, 8, 8), {"name": "custom", "config": {}}).double().eval()
    with torch.no_grad():
        model.blocks[0].weight.mul_(3.0)
    x = spikes(4, 12, seed=5)
    graph = trace(model)
    conv = graph.nodes["blocks.0"]
    assert conv.weight.shape == (4, 1, 4, 4) and conv.stride == (2, 2)
    ref = torch_output(model, x)
    assert ref.sum() > 0
    np.testing.assert_allclose(simulate(graph, x).output, ref, atol=1e-6)
