"""The pruning loop on digits: targets reached, accuracy kept, regeneration really revives."""

from __future__ import annotations

import copy

import pytest
import torch

from snnc.prune.masks import channel_targets
from snnc.prune.methods.registry import METHODS
from snnc.prune.trainer import PruneConfig, distill_loss, prune

BASE_STEPS = 16  # the base convnet of conftest.py is trained with T=16
TINY = dict(
    epochs=2, steps=8, batch_size=32, train_limit=128, val_limit=64, test_limit=64, encoding="regular"
)


@pytest.mark.parametrize("method", METHODS.names())
def test_each_method_reaches_its_target_sparsity(base_convnet, method):
    model = copy.deepcopy(base_convnet[1])
    _, rep = prune(model, PruneConfig(method=method, sparsity=0.6, **TINY))
    if METHODS.get(method).unit == "conv channels":
        total = rep["channels"]["total"]
        assert rep["channels"]["total"] - rep["channels"]["kept"] == round(0.6 * total)
        kept = sum(int(b.channel_mask.sum()) for _, b in channel_targets(model))
        assert kept == rep["channels"]["kept"]
    elif method == "relief":
        # Whole kernels are pruned, and orphaned channels on top: at least the target, not far
        # above.
        assert 0.6 <= rep["connection_sparsity"] <= 0.7
    else:
        assert rep["fc_connection_sparsity"] == pytest.approx(0.6, abs=1e-3)
    if method == "switcher":  # FC masks only: the conv layers' SynOps may rise in fine-tuning
        fc = [r for r in rep["layers"] if r["kind"] == "dense"]
        assert sum(r["synops_after"] for r in fc) < sum(r["synops_before"] for r in fc)
    else:
        assert rep["synops_after"] < rep["synops_before"]
    assert [h["epoch"] for h in rep["history"]] == [1, 2]


def test_sparsity_zero_changes_no_mask(base_convnet):
    model = copy.deepcopy(base_convnet[1])
    _, rep = prune(model, PruneConfig(method="sca", sparsity=0.0, **TINY))
    assert rep["channel_sparsity"] == 0.0 and rep["connection_sparsity"] == 0.0


def test_regenerated_channel_revives_and_trains(base_convnet):
    model = copy.deepcopy(base_convnet[1])
    snaps: list[dict] = []

    def on_epoch(epoch, m):
        snaps.append({k: (b.channel_mask.clone(), b.weight.detach().clone()) for k, b in channel_targets(m)})

    cfg = PruneConfig(
        method="sca",  # criticality (structured) regenerates within its one pruning event
        sparsity=0.5,
        epochs=5,
        steps=BASE_STEPS,
        batch_size=32,
        train_limit=192,
        val_limit=64,
        test_limit=64,
        regen_fraction=1.0,
        prune_fraction=0.8,
        encoding="regular",
    )
    _, rep = prune(model, cfg, on_epoch=on_epoch)
    assert rep["regenerated_total"] > 0
    revived = 0
    for e, h in enumerate(rep["history"]):
        for layer, idx in h["revived"]:
            was, now = snaps[e - 1][layer][0][idx], snaps[e][layer][0][idx]
            assert was == 0 and now == 1  # the mask flipped back at this event
            # ... and the channel's weights train again during the next epoch.
            assert not torch.equal(snaps[e][layer][1][idx], snaps[e + 1][layer][1][idx])
            revived += 1
    assert revived == rep["regenerated_total"]


def test_distill_loss_reduces_to_its_terms():
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 17, (8, 10), generator=g).float()
    teacher = torch.randint(0, 17, (8, 10), generator=g).float()
    labels = torch.randint(0, 10, (8,), generator=g)
    ce = torch.nn.functional.cross_entropy(counts, labels)
    assert torch.equal(distill_loss(counts, teacher, labels, 0.0, 4.0), ce)
    # Student equal to teacher: the KL term vanishes and only (1 - a) CE is left.
    assert torch.allclose(distill_loss(counts, counts, labels, 0.9, 4.0), 0.1 * ce)
    # Pure distillation, by hand: T^2 sum p_t (log p_t - log p_s) / N.
    p_t = torch.softmax(teacher / 4, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(counts / 4, 1))).sum(1).mean()
    assert torch.allclose(distill_loss(counts, teacher, labels, 1.0, 4.0), 16 * kl)


def test_distillation_defaults_off_and_rewind_on():
    for method in ("sca", "criticality", "l1", "switcher"):
        assert PruneConfig(method=method, sparsity=0.5).distill_weight == 0.0
    assert PruneConfig(method="relief", sparsity=0.5, distill=0.3).distill_weight == 0.3
    assert PruneConfig(method="sca", sparsity=0.5).lr_schedule == "rewind"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sca"])  # criticality's figures: docs/methods.md (suite time)
def test_half_the_channels_removed_within_two_points(base_convnet, method):
    """Half the conv channels go; accuracy stays within 2 pt of the unpruned net on digits (360 test
    digits, the deterministic encoding the base was trained with), with 16 epochs, distillation
    and learning-rate rewinding. The methods as their papers describe them lose 0.0-1.7 pt here
    depending on the thread count (docs/methods.md, "Measured: half the channels"); the earlier
    rate-based score held 1 pt."""
    from snnc import data as D
    from snnc.train import evaluate

    base = base_convnet[1]
    x, y = D.load("digits").test
    base_acc = evaluate(base, x, y, BASE_STEPS, "regular")
    assert base_acc > 0.95
    model = copy.deepcopy(base)
    _, rep = prune(
        model,
        PruneConfig(
            method=method,
            sparsity=0.5,
            epochs=16,
            steps=BASE_STEPS,
            batch_size=32,
            lr=5e-3,
            distill=0.9,
            encoding="regular",
            lr_schedule="rewind",
            seed=0,
        ),
    )
    assert rep["accuracy_before"] == base_acc
    assert rep["channel_sparsity"] >= 0.5
    assert rep["accuracy_after"] >= base_acc - 0.02 - 1e-9, (rep["accuracy_after"], base_acc)


def test_rewind_schedule_holds_the_rate_while_pruning_then_decays():
    from snnc.prune.trainer import lr_at

    cfg = PruneConfig(method="sca", sparsity=0.5, epochs=10, lr=1e-2, lr_schedule="rewind")
    rates = [lr_at(cfg, e) for e in range(10)]
    assert rates[:6] == [1e-2] * 6  # prune events after epochs 1-6 (prune_fraction 0.6)
    assert rates[6] == pytest.approx(1e-2) and rates[7] < rates[6] and rates[9] < 0.2e-2
    plain = PruneConfig(method="sca", sparsity=0.5, epochs=10, lr=1e-2, lr_schedule="cosine")
    cosine = [lr_at(plain, e) for e in range(10)]
    assert cosine[5] < 0.7e-2 and all(a > b for a, b in zip(cosine[:-1], cosine[1:], strict=True))


@pytest.mark.slow
def test_defaults_lose_at_most_one_point_on_digits():
    """What a user gets with no options: ``snnc train --dataset digits --arch convnet --seed S``,
    then ``snnc prune m.pt --method sca --sparsity 0.5 --seed S``; the mean drop over seeds 0, 1, 2
    (rate code, the prune run's own before/after evaluation) is at most 1 pt (docs/methods.md,
    "Measured")."""
    from snnc.train import TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as measured (the thread count changes the summation order)
    try:
        drops = []
        for seed in (0, 1, 2):
            model, _ = train(TrainConfig(dataset="digits", arch="convnet", seed=seed))
            _, rep = prune(model, PruneConfig(method="sca", sparsity=0.5, seed=seed))
            assert rep["channel_sparsity"] == 0.5
            drops.append(rep["accuracy_before"] - rep["accuracy_after"])
    finally:
        torch.set_num_threads(threads)
    assert sum(drops) / 3 <= 0.01 + 1e-9, drops
