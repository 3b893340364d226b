"""Each pruning method against a hand-computed case of its formula in the sources
(docs/methods.md; the paper, its reviews and the authors' public code)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from snnc.nn.blocks import Dense
from snnc.nn.neuron import NeuronParams
from snnc.prune import masks as M
from snnc.prune.config import PruneConfig
from snnc.prune.methods.base import PruneEvent
from snnc.prune.methods.criticality import structured_selection, unstructured_selection
from snnc.prune.methods.relief import alpha_for_target, apply_relief, relief_alphas, relief_prefix
from snnc.prune.methods.sca import METHOD as SCA
from snnc.prune.methods.sca import dense_gamma_grad
from snnc.prune.methods.switcher import Switcher
from snnc.prune.monitors import ActivityMonitor, atan_criticality, sample_criticality


def _event(model, blocks, monitor, **cfg) -> PruneEvent:
    return PruneEvent(
        model=model,
        blocks=blocks,
        monitor=monitor,
        cfg=PruneConfig(method="sca", sparsity=0.5, **cfg),
        epoch=0,
        target=0.5,
        regen=0.0,
    )


# -- SCA -------------------------------------------------------------------------------------------
def test_sca_score_is_mean_membrane_potential_magnitude():
    """``S_c = mean over samples, steps, positions of |U|`` (PAPERS.md, SCA, Score [review]); the
    ``rectified`` variant averages ``max(U, 0)``. Spike rate plays no part."""
    block = Dense(2, 2, NeuronParams(threshold=1.0))
    mon = ActivityMonitor({"d": block}, SCA.records(True))
    # v (N=2, C=2, T=2). Channel 0: |v| = 1, 3, 0.5, 0.5 -> 1.25; max(v, 0) = 0, 3, .5, 0 -> 0.875.
    # Channel 1 never moves: 0. Spikes are arbitrary (would give channel 1 the higher rate).
    v = torch.tensor([[[-1.0, 3.0], [0.0, 0.0]], [[0.5, -0.5], [0.0, 0.0]]])
    spikes = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    mon._fold("d", block, {"v": v, "spikes": spikes, "input": torch.zeros(2, 2, 2)})
    score = SCA.score(_event(None, {"d": block}, mon))
    assert score["d"].tolist() == pytest.approx([1.25, 0.0])
    rect = SCA.score(_event(None, {"d": block}, mon, variant="rectified"))
    assert rect["d"].tolist() == pytest.approx([0.875, 0.0])


def _batch(seed: int = 0, n: int = 8, t: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 8, 8, t, generator=g) < 0.5).float()
    return x, torch.randint(0, 10, (n,), generator=g)


def test_sca_dense_gamma_gradient_of_a_pruned_channel_is_nonzero(small_convnet):
    """Regrowth by ``|dL/dgamma|`` computed densely (PAPERS.md, SCA, Regrowth [review]): the
    masked backward gives a pruned channel's gamma exactly 0; the dense gradient equals the ordinary
    gradient of a copy in which that channel is present with ``gamma = beta = 0`` (the same forward
    pass), nonzero, and for kept channels it equals the ordinary gradient."""
    model = small_convnet.train()
    blocks = dict(M.channel_targets(model))
    first = next(iter(blocks))
    with torch.no_grad():
        blocks[first].channel_mask[1] = 0.0
    x, y = _batch()
    # The masked net's ordinary gradient.
    masked = copy.deepcopy(model)
    loss = F.cross_entropy(masked(x).sum(-1), y)
    loss.backward()
    g_masked = dict(M.channel_targets(masked))[first].bn.weight.grad
    assert g_masked[1] == 0.0
    # Independent reference: the channel present, its gamma and beta at 0.
    ref = copy.deepcopy(model)
    rb = dict(M.channel_targets(ref))[first]
    with torch.no_grad():
        rb.channel_mask[1] = 1.0
        rb.bn.weight[1] = 0.0
        rb.bn.bias[1] = 0.0
    out_ref = ref(x)
    F.cross_entropy(out_ref.sum(-1), y).backward()
    assert torch.equal(out_ref, masked(x))  # the same forward pass
    stats = blocks[first].bn.running_mean.clone()
    dense = dense_gamma_grad(model, blocks, x, y)
    assert torch.equal(blocks[first].bn.running_mean, stats)  # BN running statistics left alone
    assert float(dense[first][1].abs()) > 0.0
    assert torch.allclose(dense[first], rb.bn.weight.grad, atol=1e-7)
    keep = torch.arange(4) != 1
    assert torch.allclose(dense[first][keep], g_masked[keep], atol=1e-7)


def test_sca_regrowth_picks_the_largest_dense_gradient(small_convnet, monkeypatch):
    """The regrowth signal is ``|dL/dgamma|``: the pruned channel with the largest comes back."""
    import snnc.prune.methods.sca as sca

    model = small_convnet.train()
    blocks = dict(M.channel_targets(model))
    with torch.no_grad():
        for b in blocks.values():
            b.channel_mask[:2] = 0.0
    monkeypatch.setattr(sca, "regrowth_batch", lambda cfg, epoch: _batch(1))
    got = SCA.regrow(_event(model, blocks, None))
    want = dense_gamma_grad(model, blocks, *_batch(1))
    for k in blocks:
        assert torch.equal(got[k], want[k].abs().double())
        assert int(got[k][:2].argmax()) == int(want[k][:2].abs().argmax())
        assert (got[k][:2] > 0).all()


# -- Criticality -----------------------------------------------------------------------------------
def test_criticality_peaks_at_threshold():
    """``f(v) = 1 / (1 + (pi (v - theta) / theta)^2)``: 1 at threshold, 1/2 at ``theta (1 +- 1/pi)``
    (PAPERS.md, Criticality, authors' code)."""
    theta = 2.0
    v = torch.tensor([theta, theta * (1 + 1 / math.pi), theta * (1 - 1 / math.pi), 0.0, 10.0])
    f = atan_criticality(v, theta)
    assert f.tolist() == pytest.approx([1.0, 0.5, 0.5, 1 / (1 + math.pi**2), 1 / (1 + (4 * math.pi) ** 2)])
    assert int(atan_criticality(torch.linspace(0, 4, 401), theta).argmax()) == 200


def test_criticality_is_max_over_positions_of_time_mean():
    """``crit_c = mean over samples of max over positions of (1/T) sum_t f(v_t)``."""
    # (N=1, C=1, H=1, W=2, T=2): position 0 at threshold twice (mean 1), position 1 once (mean .5 + .5 f(0)).
    v = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    got = sample_criticality(v, 1.0)
    assert got.shape == (1, 1) and float(got) == pytest.approx(1.0)
    v2 = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    assert float(sample_criticality(v2, 1.0)) == pytest.approx(0.5 + 0.5 / (1 + math.pi**2))


def test_criticality_structured_prunes_by_gamma_and_regenerates_the_most_critical():
    """Global ``|gamma|`` threshold for ``n + G`` channels, then the ``G`` most critical pruned
    channels come back, ``G = floor((C - n) growth)`` (PAPERS.md, Criticality, Structured)."""
    gamma = {"a": torch.tensor([0.1, 0.9, 0.3, 0.05]), "b": torch.tensor([0.2, 0.8, 0.15, 0.7])}
    crit = {"a": torch.tensor([0.9, 0.0, 0.1, 0.2]), "b": torch.tensor([0.3, 0.0, 0.95, 0.0])}
    # C = 8, n = 4, growth 0.5 -> G = 2; lowest 6 |gamma|: a3 .05, a0 .1, b2 .15, b0 .2, a2 .3,
    # b3 .7. Most critical of those: b2 .95, a0 .9 -> back.
    keep, revived, g = structured_selection(gamma, crit, 4, {"a": 1, "b": 1}, growth=0.5)
    assert g == 2 and revived == [("b", 2), ("a", 0)]
    assert keep["a"].tolist() == [True, True, False, False]
    assert keep["b"].tolist() == [False, True, True, False]
    # The authors' growth rate 0.05 on 8 channels: G = floor(4 * 0.05) = 0, plain slimming.
    keep0, revived0, g0 = structured_selection(gamma, crit, 4, {"a": 1, "b": 1})
    assert g0 == 0 and revived0 == []
    assert keep0["a"].tolist() == [False, True, True, False] and keep0["b"].tolist() == [
        False,
        True,
        False,
        True,
    ]


def test_criticality_unstructured_magnitude_with_critical_regrowth_quota():
    """Keep ``K`` by global magnitude; with ``K'`` the kept weights outside the output layer,
    ``G = floor(0.2 K')`` of them go to pruned weights of the most critical post-synaptic neurons,
    restarting at zero; the survival log is the share of this step's magnitude-pruned weights that
    came back (PAPERS.md, Criticality, Unstructured)."""
    w = {
        "h": torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [0.45, 0.4, 0.35, 0.3, 0.25]]),
        "o": torch.tensor([[1.0, 0.01], [0.02, 0.03]]),
    }
    masks = {k: torch.ones_like(v) for k, v in w.items()}
    crit = {"h": torch.tensor([0.1, 0.9]), "o": torch.tensor([1.0, 1.0])}
    # 14 weights, K = 6: top 6 |w| = o 1.0, h .9 .8 .7 .6 .5 -> K_last = 1, K' = 5, G = 1:
    # h keeps its top 4 (.9 .8 .7 .6), and the pruned weight of the most critical neuron (row 1,
    # largest |w| first: .45) comes back at zero.
    new, regrown, log = unstructured_selection(w, masks, crit, 6)
    assert log["regrown"] == 1
    assert new["h"].tolist() == [[True, True, True, True, False], [True, False, False, False, False]]
    assert regrown["h"].tolist() == [[False] * 5, [True, False, False, False, False]]
    assert new["o"].tolist() == [[True, False], [False, False]]
    # Magnitude-pruned this step (alive before, outside the top 6): 8; of those, 1 came back.
    assert log["magnitude_pruned"] == 8 and log["regeneration_survival"] == pytest.approx(1 / 8)


def test_criticality_slimming_adds_l1_subgradient_to_gamma(small_convnet):
    """Network slimming as the authors' ``updateBN``: ``grad(gamma) += 1e-4 sign(gamma)`` while
    training before the one-shot pruning; off once a channel is pruned."""
    from snnc.prune.methods.criticality import SLIMMING, SlimmingHook

    model = small_convnet.train()
    blocks = dict(M.channel_targets(model))
    with torch.no_grad():
        for b in blocks.values():
            b.bn.weight.copy_(torch.linspace(-1, 1, b.out_channels))
    x, y = _batch(2)

    def grads():
        model.zero_grad()
        F.cross_entropy(model(x).sum(-1), y).backward()
        return {k: b.bn.weight.grad.clone() for k, b in blocks.items()}

    plain = grads()
    hook = SlimmingHook(blocks, SLIMMING)
    slim = grads()
    for k, b in blocks.items():
        assert torch.allclose(slim[k] - plain[k], SLIMMING * torch.sign(b.bn.weight.detach()), atol=1e-9)
    with torch.no_grad():
        blocks[next(iter(blocks))].channel_mask[0] = 0.0
    after = grads()  # a channel is pruned: the one-shot event has happened, no more penalty
    hook.stop()
    unhooked = grads()
    assert all(torch.equal(after[k], unhooked[k]) for k in blocks)


# -- NNrelief --------------------------------------------------------------------------------------
def _authors_fc_rule(importances: torch.Tensor, alpha: float) -> torch.Tensor:
    """``vgg_fc_pruning`` of adekhovich/NNrelief, transcribed: importances of one neuron's inputs
    with its bias last; returns the pruned flags of the inputs."""
    sorted_imp, _ = torch.sort(importances, descending=True)
    pivot = int(torch.sum(sorted_imp.cumsum(0) < alpha * importances.sum()))
    pivot = pivot + 1 if pivot < importances.numel() - 1 else importances.numel() - 1
    thresh = sorted_imp[pivot]
    return importances[:-1] <= thresh


def test_relief_keeps_the_fewest_items_reaching_alpha_bias_included():
    """Per neuron, the fewest top items (inputs and the bias) whose shares reach alpha are kept
    (PAPERS.md, NNrelief, Rule [paper]); hand case and the authors' code on random cases."""
    shares = torch.tensor([[0.5, 0.2, 0.1]], dtype=torch.float64)
    bias = torch.tensor([0.2], dtype=torch.float64)
    # Ranked: in0 .5 (before 0), in1 .2 (.5), bias .2 (.7), in2 .1 (.9).
    assert relief_prefix(shares, bias).tolist() == [pytest.approx([0.0, 0.5, 0.9])]
    assert (relief_prefix(shares, bias) < 0.8).tolist() == [[True, True, False]]
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        imp = torch.rand(7, generator=g, dtype=torch.float64)
        alpha = float(torch.rand(1, generator=g)) * 0.9
        sh, b = (imp / imp.sum())[:-1], (imp / imp.sum())[-1:]
        ours = relief_prefix(sh.view(1, -1), b)[0] >= alpha
        assert torch.equal(ours, _authors_fc_rule(imp, alpha))


def _relief_net():
    from snnc.nn.zoo import build

    torch.manual_seed(0)
    return build("mlp", {"input_shape": [1, 2, 3], "num_classes": 3, "hidden": [4]})


def test_relief_dead_units_and_backward_pruning():
    """A dead unit loses its inputs; a unit left without outgoing connections loses its inputs
    (backward pruning, from the output down; PAPERS.md, NNrelief, authors' code)."""
    model = _relief_net()
    blocks = dict(M.connection_targets(model))
    hid, out = blocks.values()
    prefix = {k: torch.zeros_like(b.weight, dtype=torch.float64) for k, b in blocks.items()}
    # Output neurons read nothing of hidden unit 2 (its prefix >= alpha in every output row).
    prefix[list(blocks)[1]][:, 2] = 0.99
    dead = {k: torch.zeros(b.out_channels, dtype=torch.bool) for k, b in blocks.items()}
    dead[list(blocks)[0]][0] = True  # hidden unit 0 never spiked
    apply_relief(model, blocks, prefix, dead, 0.9, 0.9)
    assert hid.channel_mask.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert out.weight_mask[:, 2].sum() == 0 and out.channel_mask.sum() == 3
    assert M.effective_weight_mask(hid)[[0, 2]].sum() == 0


def test_relief_bisection_on_alpha_meets_the_target_minimally():
    """``--sparsity`` as a target: the smallest ``r`` (``1 - alpha = r (1 - alpha_0)``) whose rule
    prunes at least the target, found by bisection; masks are left as they were."""
    model = _relief_net()
    blocks = dict(M.connection_targets(model))
    g = torch.Generator().manual_seed(1)
    prefix = {}
    for k, b in blocks.items():
        sh = torch.rand(b.weight.shape, generator=g, dtype=torch.float64)
        sh = sh / (sh.sum(1, keepdim=True) * 1.1)  # the bias holds 1/11 of every neuron's flow
        prefix[k] = relief_prefix(sh, torch.full((b.out_channels,), 1 / 11, dtype=torch.float64))
    dead = {k: torch.zeros(b.out_channels, dtype=torch.bool) for k, b in blocks.items()}
    before = {k: b.weight_mask.clone() for k, b in blocks.items()}
    total = sum(b.weight.numel() for b in blocks.values())
    target = int(0.5 * total)
    r, pruned, _ = alpha_for_target(model, blocks, prefix, dead, target, 0.9, 0.95)
    assert all(torch.equal(before[k], b.weight_mask) for k, b in blocks.items())
    assert pruned >= target

    def count(r_):
        m = copy.deepcopy(model)
        bl = dict(M.connection_targets(m))
        apply_relief(m, bl, prefix, dead, *relief_alphas(r_, 0.9, 0.95))
        return sum(int(b.weight.numel() - M.effective_weight_mask(b).sum()) for b in bl.values())

    assert count(r) == pruned and count(r * (1 - 1e-6)) < target
    assert relief_alphas(1.0, 0.9, 0.95) == pytest.approx((0.9, 0.95))


# -- Switcher --------------------------------------------------------------------------------------
def test_untrained_switcher_is_layer_normalised_magnitude():
    """The switcher starts as magnitude (its learned term starts at 0): switches rank connections
    by ``|w|`` and are on above the layer's mean ``|w|``."""
    torch.manual_seed(0)
    w = torch.randn(5, 7)
    w[0, :3] = torch.tensor([40.0, 41.0, 42.0])  # far above the mean: the probability saturates
    sw = Switcher()
    p, logit = sw(w, w.clone()), sw.logit(w, w.clone())
    assert torch.equal(torch.argsort(logit.flatten()), torch.argsort(w.abs().flatten()))
    assert torch.equal(p > 0.5, w.abs() > w.abs().mean())
    assert p[0, 0] == p[0, 2] == 1.0  # why prune events rank by the logit


def test_variant_is_checked_before_training():
    """``--variant`` names a variant of sca or criticality; anything else is a one-line usage error
    before the model is read or trained."""
    from snnc.commands.prune import PruneOptions, check_options
    from snnc.errors import UsageError
    from snnc.prune.methods.criticality import METHOD as CRIT

    with pytest.raises(UsageError, match="does not apply to method 'l1'"):
        check_options(
            PruneOptions(model="m.pt", method="l1", sparsity=0.5, output="o.pt", variant="rectified")
        )
    with pytest.raises(UsageError, match="unknown --variant 'rectified' for method 'criticality'"):
        CRIT.start(None, PruneConfig(method="criticality", sparsity=0.5, variant="rectified"))
    with pytest.raises(UsageError, match="unknown --variant 'structured' for method 'sca'"):
        SCA.start(None, PruneConfig(method="sca", sparsity=0.5, variant="structured"))
