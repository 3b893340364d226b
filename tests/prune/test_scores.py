"""Scores and selection against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from snnc.nn.blocks import Conv, Dense
from snnc.nn.neuron import NeuronParams
from snnc.prune import scores as S
from snnc.prune.methods.relief import relief_bias, relief_keys, relief_shares
from snnc.prune.monitors import criticality, relief_contributions


def test_relief_dense_matches_hand_computed():
    # Neuron j=0: w = [2, -1, 0.5], mean|x| = [0.5, 1, 0] -> contributions [1, 1, 0], bias 2: shares
    # 1/4, 1/4, 0. Neuron j=1: w = [0, 3, 1], mean|x| -> [0, 3, 0], bias 1 -> 0, 3/4, 0.
    block = Dense(3, 2, NeuronParams(), bias=True)
    with torch.no_grad():
        block.weight.copy_(torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]]))
        block.bias.copy_(torch.tensor([-2.0, 1.0]))
    # Two samples x one step each; |x| means 0.5, 1, 0.
    x = torch.tensor([[[1.0], [1.0], [0.0]], [[0.0], [1.0], [0.0]]])
    contrib = relief_contributions(block, x)
    shares = relief_shares(contrib, samples=2.0, bias=relief_bias(block))
    expect = torch.tensor([[0.25, 0.25, 0.0], [0.0, 0.75, 0.0]], dtype=torch.float64)
    assert torch.allclose(shares, expect)


def test_relief_conv_frobenius_and_bias_scaling():
    # One input map, one 1x1 kernel of value 2 on a 2x2 map with x = [[1,0],[1,1]]: ||2|x|||_F =
    # 2*sqrt(3). Bias 1 scaled by sqrt(h*w) = 2: share = 2 sqrt 3 / (2 sqrt 3 + 2).
    block = Conv(1, 1, 1, neuron=NeuronParams(), bias=True)
    with torch.no_grad():
        block.weight.fill_(-2.0)
        block.bias.fill_(1.0)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 1, 2, 2, 1)
    contrib = relief_contributions(block, x)
    assert float(contrib[0, 0]) == pytest.approx(2 * math.sqrt(3))
    shares = relief_shares(contrib, 1.0, relief_bias(block), out_hw=4)
    assert float(shares[0, 0]) == pytest.approx(2 * math.sqrt(3) / (2 * math.sqrt(3) + 2))


def test_relief_conv_matches_explicit_loop():
    torch.manual_seed(1)
    block = Conv(3, 2, 3, padding=1, neuron=NeuronParams())
    x = (torch.rand(2, 3, 5, 5, 4) < 0.3).float()
    got = relief_contributions(block, x, chunk=3)
    w = block.weight.detach().abs()
    expect = torch.zeros(2, 3, dtype=torch.float64)
    for n in range(2):
        for t in range(4):
            for j in range(2):
                for i in range(3):
                    y = torch.nn.functional.conv2d(
                        x[n, i, :, :, t].view(1, 1, 5, 5), w[j, i].view(1, 1, 3, 3), padding=1
                    )
                    expect[j, i] += float(y.norm())
    assert torch.allclose(got, expect, rtol=1e-5)


def test_relief_keys_reproduce_alpha_rule():
    # Shares of one neuron: 0.5, 0.3, 0.15, 0.05. alpha=0.9 keeps 0.5+0.3+0.15 (=0.95 >= 0.9) and
    # prunes 0.05: exactly the connections with key >= 1.
    shares = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=torch.float64)
    keys = relief_keys(shares, 0.9)
    assert (keys >= 1).tolist() == [[False, False, True, False]]
    assert float(keys[0, 1]) == 0.0


def test_select_channels_exact_count_regen_and_floor():
    masks = {"a": torch.tensor([1.0, 0.0, 1.0, 1.0]), "b": torch.tensor([1.0, 1.0, 0.0])}
    score = {"a": torch.tensor([0.1, 9.0, 0.2, 5.0]), "b": torch.tensor([0.05, 3.0, 0.0])}
    regrow = {"a": torch.tensor([0.0, 2.0, 0.0, 0.0]), "b": torch.tensor([0.0, 0.0, 1.0])}
    new, revived = S.select_channels(
        masks, score, n_pruned=3, regrow=regrow, n_regen=1, min_keep={"a": 1, "b": 1}
    )
    assert revived == [("a", 1)]  # the strongest regrowth signal comes back
    # Then the lowest-scoring active channels go until 3 are pruned: b0 (0.05), a0 (0.1).
    assert new["a"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert new["b"].tolist() == [0.0, 1.0, 0.0]
    assert sum(int((m == 0).sum()) for m in new.values()) == 3


def test_select_channels_respects_min_keep():
    masks = {"a": torch.ones(4)}
    new, _ = S.select_channels(masks, {"a": torch.arange(4.0)}, 4, min_keep={"a": 2})
    assert new["a"].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_criticality_peaks_at_threshold():
    v = torch.tensor([1.0, 0.5, 2.0, 0.0])
    c = criticality(v, threshold=1.0, slope=1.0)
    assert c.tolist() == pytest.approx([1.0, 1 / 1.5**2, 0.25, 0.25])
