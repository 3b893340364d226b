"""Allocation across layers, the regrowth budget, regeneration survival and cost objectives, against
hand-computed cases and an independent SynOps count."""

from __future__ import annotations

import copy

import pytest
import torch

from snnc.nn.blocks import Conv, Dense, Flatten, Pool
from snnc.nn.neuron import NeuronParams
from snnc.nn.zoo import SpikingNet
from snnc.prune import scores as S
from snnc.prune.costs import channel_synops, consumers
from snnc.prune.report import regeneration_summary
from snnc.prune.schedule import Schedule
from snnc.prune.synops import measure


def _masks(**sizes):
    return {k: torch.ones(c) for k, c in sizes.items()}


# Layer a scores 100x higher than layer b.
#   mean:   a / 300 = [0, 0.333, 0.667, 3];   b / 3 = [1.333, 1.333, 1.333, 0]
#   zscore (population std over the active channels):
#           a: mean 300, std 353.55 -> [-0.849, -0.566, -0.283, 1.697]
#           b: mean 3,   std 1.732  -> [0.577, 0.577, 0.577, -1.732]
SCORE = {
    "a": torch.tensor([0.0, 100.0, 200.0, 900.0]),
    "b": torch.tensor([4.0, 4.0, 4.0, 0.0]),
}


def test_comparable_by_hand():
    m = S.comparable(SCORE, _masks(a=4, b=4), "mean")
    assert m["a"].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 3.0])
    assert m["b"].tolist() == pytest.approx([4 / 3, 4 / 3, 4 / 3, 0.0])
    z = S.comparable(SCORE, _masks(a=4, b=4), "zscore")
    assert z["a"].tolist() == pytest.approx([-0.8485, -0.5657, -0.2828, 1.6971], abs=1e-4)
    assert z["b"].tolist() == pytest.approx([0.5774, 0.5774, 0.5774, -1.7321], abs=1e-4)
    # Only the active channels set the reference; negative scores are shifted to a minimum of 0.
    part = S.comparable({"a": torch.tensor([2.0, 4.0, 100.0])}, {"a": torch.tensor([1.0, 1.0, 0.0])})
    assert part["a"].tolist() == pytest.approx([2 / 3, 4 / 3, 100 / 3])
    neg = S.comparable({"a": torch.tensor([-1.0, 0.0, 1.0])}, {"a": torch.ones(3)})
    assert neg["a"].tolist() == pytest.approx([0.0, 1.0, 2.0])


@pytest.mark.parametrize("compare", ["mean", "zscore"])
def test_global_ranks_all_layers_on_comparable_scores(compare):
    # Lowest first (mean: a0 = b3 = 0, tie by layer order, then a1, a2; zscore: b3, a0, a1, a2):
    # layer a goes down to its top channel.
    new, _ = S.select(_masks(a=4, b=4), SCORE, 4, allocation="global", compare=compare)
    assert new["a"].tolist() == [0, 0, 0, 1] and new["b"].tolist() == [1, 1, 1, 0]
    # The raw scores, one ranking as given, would instead take b's 4s before a's 100 and 200.
    raw, _ = S.select_channels(_masks(a=4, b=4), SCORE, 4)
    assert raw["a"].tolist() == [0, 1, 1, 1] and raw["b"].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("compare", ["mean", "zscore"])
def test_global_floor_stops_a_layer_and_passes_to_the_next(compare):
    # Layer a keeps 2 at least: a2 is skipped, the next lowest is b0 (ties by index).
    floor = {"a": 2, "b": 1}
    new, _ = S.select(_masks(a=4, b=4), SCORE, 4, allocation="global", min_keep=floor, compare=compare)
    assert new["a"].tolist() == [0, 0, 1, 1] and new["b"].tolist() == [0, 1, 1, 0]


def test_uniform_takes_the_same_share_from_every_layer():
    new, _ = S.select(_masks(a=4, b=4), SCORE, 4, allocation="uniform")
    assert new["a"].tolist() == [0, 0, 1, 1] and new["b"].tolist() == [0, 1, 1, 0]
    # Widths 6 and 2, 4 pruned: largest remainder gives 3 and 1.
    assert S.allocate(4, {"a": 6, "b": 2}) == {"a": 3, "b": 1}


def test_floors():
    assert S.floors({"a": 24, "b": 5, "c": 1}, 0.1) == {"a": 3, "b": 1, "c": 1}


@pytest.mark.parametrize(
    ("pruned", "fraction", "budget"),
    [(0, 0.2, 0), (3, 0.2, 1), (4, 0.2, 1), (20, 0.2, 4), (21, 0.05, 1), (5, 0.0, 0), (2, 1.0, 2)],
)
def test_regen_budget_is_global_and_at_least_one(pruned, fraction, budget):
    assert S.regen_budget(pruned, fraction) == budget


def test_regeneration_is_global_not_per_layer():
    # One pruned channel per layer: per layer floor(0.2 * 1) = 0 would regrow nothing; the global
    # budget max(1, floor(0.2 * 2)) = 1 brings back the strongest signal, b2.
    masks = {"a": torch.tensor([1.0, 0.0, 1.0, 1.0]), "b": torch.tensor([1.0, 1.0, 0.0, 1.0])}
    regrow = {"a": torch.tensor([0.0, 0.5, 0.0, 0.0]), "b": torch.tensor([0.0, 0.0, 3.0, 0.0])}
    score = {"a": torch.tensor([1.0, 0.0, 2.0, 3.0]), "b": torch.tensor([1.0, 2.0, 0.0, 3.0])}
    n = S.regen_budget(2, 0.2)
    new, revived = S.select(masks, score, 2, "global", regrow, n)
    assert revived == [("b", 2)]
    # b2 cannot be pruned again at once; 2 pruned in total: a1 stays out, then the lowest ratio to
    # the layer's active mean goes: a0 and b0 both have 1/2 (over a's active 1, 2, 3 and b's 1, 2,
    # 3), the tie breaks by layer order.
    assert new["a"].tolist() == [0, 0, 1, 1] and new["b"].tolist() == [1, 1, 1, 1]


def test_schedule_regen_never_zero_at_an_event_unless_off():
    s = Schedule(10, 0.5, prune_fraction=0.6, regen_fraction=0.2)
    shares = [s.regen(e) for e in range(10)]
    assert all(x > 0 for x in shares[:6]) and shares[6:] == [0.0] * 4
    assert shares[0] == pytest.approx(0.2) and shares[5] == pytest.approx(0.2 / 6)
    off = Schedule(10, 0.5, regen_fraction=0.0)
    assert [off.regen(e) for e in range(10)] == [0.0] * 10


def test_survival_counts_units_active_at_the_end(small_convnet):
    model = copy.deepcopy(small_convnet)
    with torch.no_grad():
        model.get_submodule("blocks.0").channel_mask[2] = 0  # regenerated, then pruned again

    def event(epoch, target, budget, revived):
        return {
            "epoch": epoch,
            "target": target,
            "regen_budget": budget,
            "regenerated": len(revived),
            "revived": revived,
        }

    history = [
        event(1, 0.2, 0, []),
        event(2, 0.4, 2, [["blocks.0", 1], ["blocks.0", 2]]),
        event(3, 0.5, 2, [["blocks.0", 1], ["blocks.1", 0]]),
        {"epoch": 4, "target": None, "regenerated": 0, "revived": []},  # fine-tuning
    ]
    got = regeneration_summary(model, "conv channels", history)
    assert [e["regenerated"] for e in got["per_event"]] == [0, 2, 2]
    assert got["total"] == 4 and got["units"] == 3 and got["survived"] == 2
    assert got["survival"] == pytest.approx(2 / 3)


def test_cost_objective_prunes_the_costlier_unit_at_equal_score():
    masks = _masks(a=2, b=2)
    score = {"a": torch.ones(2), "b": torch.ones(2)}
    cost = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 5.0])}
    new, _ = S.select(masks, score, 1, "global", cost=cost)
    assert new["a"].tolist() == [1, 1] and new["b"].tolist() == [1, 0]
    # Twice the score at 5x the cost still goes first: key = score / cost.
    score2 = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 2.0])}
    new2, _ = S.select(masks, score2, 1, "global", cost=cost)
    assert new2["b"].tolist() == [1, 0]
    # Without the cost, the equal scores tie and the first channel goes.
    plain, _ = S.select(masks, score, 1, "global")
    assert plain["a"].tolist() == [0, 1]


def _conv_net():
    """conv 3x3 (4 ch) -> conv 3x3 (5 ch) -> pool -> flatten -> dense 10 on 8x8, strong weights so
    every layer spikes."""
    torch.manual_seed(3)
    n = NeuronParams()
    blocks = [
        Conv(1, 4, 3, padding=1, neuron=n),
        Conv(4, 5, 3, padding=1, neuron=n),
        Pool(2),
        Flatten(),
        Dense(5 * 4 * 4, 10, n),
    ]
    with torch.no_grad():
        for b in blocks:
            if isinstance(b, Conv | Dense):
                b.weight.uniform_(-0.2, 1.0)
    return SpikingNet(blocks, (1, 8, 8), {"name": "test", "config": {}})


def test_channel_synops_equals_the_drop_in_measured_synops():
    """The cost of a channel whose consumers end at the output layer is exactly what masking it
    removes from the NeuroBench count of :func:`snnc.prune.synops.measure`."""
    from snnc import data as D

    model = _conv_net()
    x = D.load("digits").train[0][:64]
    blocks = {"blocks.1": model.blocks[1]}
    assert consumers(model, "blocks.1") == ["blocks.2", "blocks.4"]
    cost = channel_synops(model, blocks, x, steps=8, encoding="rate", seed=5)["blocks.1"]
    full = measure(model, x, 8, "rate", seed=5)["total"]
    assert float(cost.min()) > 0
    for c in range(5):
        m = copy.deepcopy(model)
        with torch.no_grad():
            m.blocks[1].channel_mask[c] = 0
        dropped = full - measure(m, x, 8, "rate", seed=5)["total"]
        assert float(cost[c]) == pytest.approx(dropped, rel=1e-6)


def test_trainer_runs_the_synops_objective_and_refuses_cores_without_a_cost(small_convnet):
    from snnc.errors import UsageError
    from snnc.prune.trainer import PruneConfig, prune

    tiny = dict(epochs=3, steps=4, batch_size=32, train_limit=128, val_limit=32, test_limit=32)
    model = copy.deepcopy(small_convnet)
    _, rep = prune(model, PruneConfig(method="l1", sparsity=0.5, objective="synops", **tiny))
    assert rep["objective"] == "synops" and rep["allocation"] == "uniform"
    assert rep["channels"]["kept"] == 9 and sum(rep["kept_per_layer"].values()) == 9
    with pytest.raises(UsageError, match="--objective cores"):
        prune(copy.deepcopy(small_convnet), PruneConfig(method="l1", sparsity=0.5, objective="cores", **tiny))
    relief = PruneConfig(method="relief", sparsity=0.5, objective="synops", **tiny)
    with pytest.raises(UsageError, match="own rule"):
        prune(copy.deepcopy(small_convnet), relief)
