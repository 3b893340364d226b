"""remove_dead: physically pruned graphs compute exactly what the masked graphs compute."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from compile_helpers import (
    ARCHS,
    INPUT,
    block_index,
    graphs_equal,
    masked_model,
    params,
    residual_index,
    spikes,
    torch_output,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from snnc import ir
from snnc.compile.passes.fold_bn import fold_bn
from snnc.compile.passes.remove_dead import bias_can_fire, remove_dead
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.sim import simulate


@pytest.mark.parametrize("arch", ARCHS)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(seed=st.integers(0, 10_000), keep=st.floats(0.3, 0.9))
def test_pruned_equals_masked(arch, seed, keep):
    model = masked_model(arch, seed=seed, keep=keep)
    graph = trace(model)
    x = spikes(4, 12, seed=seed)
    pruned = remove_dead(graph)
    ref = torch_output(model, x)
    np.testing.assert_allclose(simulate(pruned, x).output, ref, atol=1e-6)
    np.testing.assert_allclose(simulate(graph, x).output, ref, atol=1e-6)
    assert params(pruned) < params(graph)
    # every masked channel is gone (but the class neurons, the output's contract, all stay),
    # and BN folding after removal changes nothing
    last = pruned.predecessors("output")[0]
    assert pruned.shapes()[last] == graph.shapes()[last]
    for node in pruned.nodes.values():
        # (a synapse-only node feeding an Add keeps a channel its own mask zeroes while the other
        # branch still feeds that Add channel)
        if "channel_mask" in node.meta and node.name != last and getattr(node, "neuron", 1):
            assert np.all(np.asarray(node.meta["channel_mask"]) == 1), node.name
    np.testing.assert_allclose(simulate(fold_bn(pruned), x).output, ref, atol=1e-6)


def test_residual_branch_pruning_keeps_exactly_the_add_channels():
    """Channels pruned in the main branch only: the Add keeps all its channels (the shortcut feeds
    them), the main branch's inner conv loses exactly its masked channels."""
    model = masked_model("resnet", seed=11, keep=1.0)
    i = residual_index(model)
    r = f"blocks.{i}"
    res = model.blocks[i]
    c = res.out_channels
    with torch.no_grad():
        for b in model.modules():
            if hasattr(b, "channel_mask"):
                b.channel_mask.fill_(1.0)
            if hasattr(b, "weight_mask"):
                b.weight_mask.fill_(1.0)
        inner = res.main[0]
        inner.channel_mask[: c // 2] = 0.0  # half of the inner conv
        res.main[1].channel_mask[:3] = 0.0  # 3 output channels of the branch's last conv only
    graph = trace(model)
    pruned = remove_dead(graph)
    assert pruned.shapes()[r][0] == c  # the Add needs every channel (shortcut alive)
    assert pruned.nodes[f"{r}.main.0"].weight.shape[0] == c - c // 2
    assert pruned.nodes[f"{r}.main.1"].weight.shape[:2] == (c, c - c // 2)
    assert pruned.nodes[f"{r}.shortcut"].weight.shape[0] == c
    x = spikes(4, 12, seed=12)
    np.testing.assert_allclose(simulate(pruned, x).output, torch_output(model, x), atol=1e-6)

    # now the shortcut is pruned for the same 3 channels too: the Add loses exactly those 3
    with torch.no_grad():
        res.shortcut.channel_mask[:3] = 0.0
    pruned2 = remove_dead(trace(model))
    assert pruned2.shapes()[r][0] == c - 3
    np.testing.assert_array_equal(pruned2.nodes[r].meta["orig_channels"], np.arange(3, c))
    np.testing.assert_allclose(simulate(pruned2, x).output, torch_output(model, x), atol=1e-6)


def _tiny(bias, threshold=1.0, vdecay=1024, precision="float", w_rows_zero=(1,)):
    w1 = np.ones((3, 4))
    for r in w_rows_zero:
        w1[r] = 0.0
    n1 = ir.CubaLIF(threshold, 2048, vdecay, bias=np.array(bias, dtype=float))
    nodes = [
        ir.Input("in", shape=(4,)),
        ir.Dense("d1", weight=w1, neuron=n1),
        ir.Dense("d2", weight=np.ones((2, 3)), neuron=ir.CubaLIF(threshold, 2048, vdecay)),
        ir.Output("out"),
    ]
    return ir.Graph.from_list(nodes, {"precision": precision})


def test_dead_by_bias_hand_cases_float():
    # neuron 1 has no input: bias 0.2 with voltage decay 1024 converges to 0.8 <= 1 -> dead
    g = remove_dead(_tiny([0.0, 0.2, 0.0]))
    assert g.nodes["d1"].weight.shape == (2, 4)
    # bias 0.3 converges to 1.2 > 1 -> it will fire: kept
    g = remove_dead(_tiny([0.0, 0.3, 0.0]))
    assert g.nodes["d1"].weight.shape == (3, 4)
    # no voltage decay: any positive bias eventually fires
    assert remove_dead(_tiny([0.0, 1e-3, 0.0], vdecay=0)).nodes["d1"].weight.shape == (3, 4)
    # and a kept neuron does fire with zero input (the analysis is right, not just conservative)
    x = np.zeros((1, 4, 40), np.uint8)
    res = simulate(_tiny([0.0, 0.3, 0.0]), x, record=True)
    assert res.layers["d1"][0, 1].sum() > 0


def test_dead_by_bias_fixed_point_matches_simulation():
    neuron = ir.CubaLIF(100, 2048, 1024, None)
    biases = np.arange(0, 40)
    can = bias_can_fire(neuron, biases, fixed=True)
    # reference: simulate a single fixed-point neuron per bias for long enough with zero input
    w = np.zeros((len(biases), 1))
    nodes = [
        ir.Input("in", shape=(1,)),
        ir.Dense("d", weight=w, neuron=ir.CubaLIF(100, 2048, 1024, biases)),
        ir.Output("out"),
    ]
    g = ir.Graph.from_list(nodes, {"precision": "fixed"})
    out = simulate(g, np.zeros((1, 1, 400), np.uint8)).output[0]
    np.testing.assert_array_equal(can, out.sum(-1) > 0)
    assert can.any() and not can.all()


def test_unneeded_channels_are_removed():
    g = _tiny([0.5, 0.5, 0.5], w_rows_zero=())
    w2 = g.nodes["d2"].weight.copy()
    w2[:, 2] = 0.0  # nobody reads neuron 2 of d1
    g = g.replace(d2=ir.replace(g.nodes["d2"], weight=w2))
    out = remove_dead(g)
    assert out.nodes["d1"].weight.shape == (2, 4)
    assert out.nodes["d2"].weight.shape == (2, 2)
    assert any("unneeded 1" in n for n in out.meta["notes"])


def test_layer_losing_every_channel_names_it():
    model = masked_model("convnet", seed=3)
    i = block_index(model, "conv", 1)
    with torch.no_grad():
        model.blocks[i].channel_mask.zero_()
    with pytest.raises(SnncError, match=f"blocks.{i} would lose every"):
        remove_dead(trace(model))


def test_calibration_removal_is_lossy_and_opt_in():
    model = masked_model("mlp", seed=4, keep=1.0, gain=1.0)
    graph = trace(model)
    exact = remove_dead(graph)
    calib = spikes(8, 12, seed=5, p=0.1)
    lossy = remove_dead(graph, calibration=calib)
    assert lossy.meta.get("lossy") is True
    assert "lossy" not in exact.meta
    assert params(lossy) < params(exact)
    # on the calibration data itself nothing changes
    np.testing.assert_array_equal(simulate(lossy, calib).output, simulate(graph, calib).output)


def test_remove_dead_is_idempotent_and_pure():
    model = masked_model("resnet", seed=8)
    graph = trace(model)
    w_before = graph.nodes["blocks.0"].weight.copy()
    once = remove_dead(graph)
    twice = remove_dead(once)
    assert graphs_equal(once, twice)
    np.testing.assert_array_equal(graph.nodes["blocks.0"].weight, w_before)
    assert INPUT == graph.input.shape


def test_a_node_kind_without_a_channel_handler_stops_the_pass():
    """Each node kind has one channel handler (Torch-Pruning's idea, without its silent
    fall-backs): a kind remove_dead has not learnt is an error naming it."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Identity(ir.Node):
        kind = "identity"

        def out_shape(self, in_shape, src):
            return in_shape

    g = ir.Graph.from_list(
        [
            ir.Input("in", shape=(3,)),
            ir.Dense("fc", weight=np.ones((2, 3)), neuron=ir.CubaLIF(1.0, 0, 0)),
            Identity("id"),
            ir.Output("out"),
        ],
        meta={"precision": "float"},
    ).verify()
    with pytest.raises(SnncError, match="id: remove_dead has no channel handler for node kind 'identity'"):
        remove_dead(g)


# -- a residual block whose whole main branch is pruned ------------------------------------------
def _check_branch_removed(model, block: int, x) -> ir.Graph:
    """``remove_dead`` deletes the main branch of ``blocks.<block>`` (nodes and edges); the Add keeps
    its shortcut as its only input and the output stays the masked model's."""
    graph = trace(model)
    pruned = remove_dead(graph).verify()
    r = f"blocks.{block}"
    assert not any(n.startswith(f"{r}.main.") for n in pruned.nodes)
    assert not any(a.startswith(f"{r}.main.") or b.startswith(f"{r}.main.") for a, b in pruned.edges)
    assert pruned.predecessors(r) == [f"{r}.shortcut"]
    assert pruned.nodes[r].meta["removed"]["branch"] == [f"{r}.main.0", f"{r}.main.1"]
    assert any(n.startswith(f"{r}.main.0: removed with its branch") for n in pruned.meta["notes"])
    ref = torch_output(model, x)
    out = simulate(pruned, x).output
    assert out.sum() > 0  # the comparison is not between two silent networks
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert params(pruned) < params(graph)
    assert graphs_equal(remove_dead(pruned), pruned)  # still idempotent
    return pruned


def test_pruned_main_branch_is_removed_and_the_add_keeps_its_shortcut():
    """The pruning state that once stopped the pass: every channel of blocks.3's inner conv masked
    or unused (its consumer's masks zero all the weights that read the rest)."""
    model = masked_model("resnet", seed=7654, keep=0.32580802670774217)
    x = spikes(4, 12, seed=7654)
    pruned = _check_branch_removed(model, 3, x)
    np.testing.assert_allclose(simulate(fold_bn(pruned), x).output, torch_output(model, x), atol=1e-6)


def test_the_compile_report_shows_the_removed_branch_layer():
    """The deleted population keeps its row (0 channels, nothing deployed) and a note says why."""
    from snnc.compile.pipeline import compile_model
    from snnc.targets import TARGETS

    model = masked_model("resnet", seed=7654, keep=0.32580802670774217)
    _, report = compile_model(model, TARGETS.get("loihi2"))
    rows = {r["name"]: r for r in report["layers"]}
    row = rows["blocks.3.main.0"]
    assert row["channels_before"] == 24 and row["channels_after"] == 0
    assert row["synapse_encoding"] == "removed" and row["cores"] == row["neurons"] == 0
    assert row["params_before"] > 0 == row["params_after"]
    assert any("removed with its branch" in n for n in report["notes"]), report["notes"]


@pytest.mark.parametrize("nth", [0, 1])
def test_a_fully_masked_main_branch_is_removed(nth):
    model = masked_model("resnet", seed=21, keep=1.0)
    i = [k for k, b in enumerate(model.blocks) if type(b).__name__ == "Residual"][nth]
    with torch.no_grad():
        model.blocks[i].main[0].channel_mask.zero_()
    _check_branch_removed(model, i, spikes(4, 12, seed=22, p=0.5))


def _fan_out(mask_first: bool) -> ir.Graph:
    """in -> d1 (LIF) -> {s1, s2} (synapse only) -> add (LIF) -> d3 -> out; d1 fully masked or not."""
    rng = np.random.default_rng(3)
    lif = ir.CubaLIF(1.0, 2048, 1024)
    mask = np.zeros(3, np.int8) if mask_first else np.ones(3, np.int8)
    nodes = {
        "in": ir.Input("in", shape=(4,)),
        "d1": ir.Dense("d1", weight=rng.normal(size=(3, 4)), neuron=lif, meta={"channel_mask": mask}),
        "s1": ir.Dense("s1", weight=rng.normal(size=(2, 3))),
        "s2": ir.Dense("s2", weight=rng.normal(size=(2, 3))),
        "add": ir.Add("add", neuron=lif),
        "d3": ir.Dense("d3", weight=rng.normal(size=(2, 2)), neuron=lif),
        "out": ir.Output("out"),
    }
    edges = [("in", "d1"), ("d1", "s1"), ("d1", "s2"), ("s1", "add"), ("s2", "add"), ("add", "d3")]
    return ir.Graph(nodes, (*edges, ("d3", "out")), {"precision": "float"}).verify()


def test_an_add_losing_every_input_is_refused_in_one_line():
    remove_dead(_fan_out(mask_first=False))  # the same graph unmasked compiles
    with pytest.raises(SnncError) as err:
        remove_dead(_fan_out(mask_first=True))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("add add would lose every one of its inputs (s1, s2) as layer d1 loses every")
    assert "cannot compute its output" in msg


def test_a_sequential_layer_emptied_is_still_refused():
    """No Add downstream: the branch reaches the output (here through a population that can
    fire on its bias alone), so the pass stops, naming the emptied layer."""
    g = _tiny([0.5, 0.5, 0.5], w_rows_zero=())
    g = g.replace(d1=ir.replace(g.nodes["d1"], meta={"channel_mask": np.zeros(3, np.int8)}))
    with pytest.raises(SnncError, match="^layer d1 would lose every one of its 3 channels"):
        remove_dead(g)
    d2 = g.nodes["d2"]
    g2 = g.replace(d2=ir.replace(d2, neuron=dataclasses.replace(d2.neuron, bias=np.full(2, 5.0))))
    with pytest.raises(SnncError, match="^layer d1 would lose every one of its 3 channels"):
        remove_dead(g2)


def _residual_without_main(rng):
    """``random_residual`` with its main branch's last (synapse-only) conv zeroed: the whole main
    branch computes nothing, so the graph before and after removal must agree bit for bit."""
    from graph_helpers import random_residual

    g = random_residual(rng)
    return g.replace(c2=ir.replace(g.nodes["c2"], weight=np.zeros_like(g.nodes["c2"].weight)))


def test_single_input_add_runs_the_same_in_both_simulators_and_onnx(monkeypatch):
    from graph_helpers import spikes as graph_spikes

    import snnc.sim.interpreter as sim_mod
    from snnc.targets.onnx import build_step_model, run_onnx

    rng = np.random.default_rng(11)
    g = _residual_without_main(rng)
    pruned = remove_dead(g)
    assert "c1" not in pruned.nodes and pruned.predecessors("add") == ["short"]
    x = graph_spikes(rng, g, 3, 16, p=0.5)
    want = simulate(g, x)
    assert want.spikes["add"] > 0
    np.testing.assert_array_equal(simulate(pruned, x).output, want.output)  # compiled kernels
    monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", True)
    np.testing.assert_array_equal(simulate(pruned, x).output, want.output)  # plain interpreter
    monkeypatch.setattr(sim_mod, "_DISABLE_NUMBA", False)
    np.testing.assert_array_equal(run_onnx(build_step_model(pruned), x), want.output)


@pytest.mark.slow
def test_single_input_add_runs_as_lava_processes():
    from graph_helpers import spikes as graph_spikes

    from snnc.targets.loihi2 import run_lava

    rng = np.random.default_rng(11)
    g = _residual_without_main(rng)
    pruned = remove_dead(g)
    x = graph_spikes(rng, g, 2, 16, p=0.5)
    np.testing.assert_array_equal(run_lava(pruned, x), simulate(g, x).output)
