"""Masked parameters stay put under Adam; a regenerated channel revives; orphans are removed."""

from __future__ import annotations

import torch

from snnc import data as D
from snnc.nn.blocks import Conv
from snnc.prune import masks as M
from snnc.prune.trainer import train_step


def _batch(n: int = 16, steps: int = 4, seed: int = 0):
    x, y = D.load("digits").train
    g = torch.Generator()
    g.manual_seed(seed)
    return D.encode(torch.from_numpy(x[:n]), steps, "rate", generator=g), torch.from_numpy(y[:n])


def test_masked_weights_stay_exactly_zero_under_adam(small_convnet):
    model = small_convnet
    conv, dense = model.blocks[0], model.blocks[-1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    spikes, y = _batch()
    # A few dense steps first, so Adam's moments are nonzero everywhere when the mask arrives.
    for _ in range(3):
        train_step(model, opt, spikes, y)
    with torch.no_grad():
        dense.weight_mask[:, ::2] = 0
        conv.weight_mask[0, 0] = 0
    M.apply_masks(model)
    M.mask_optimizer_state(model, opt)
    for s in range(5):
        train_step(model, opt, *_batch(seed=s + 1))
        assert torch.count_nonzero(dense.weight[:, ::2]) == 0
        assert torch.count_nonzero(conv.weight[0, 0]) == 0
    assert torch.count_nonzero(opt.state[dense.weight]["exp_avg"][:, ::2]) == 0
    assert torch.count_nonzero(dense.weight[:, 1::2]) > 0


def test_pruned_channel_is_frozen_then_revives_and_trains(small_convnet):
    model = small_convnet
    conv = model.blocks[0]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    spikes, y = _batch()
    for _ in range(3):
        train_step(model, opt, spikes, y)
    with torch.no_grad():
        conv.channel_mask[1] = 0
    M.mask_optimizer_state(model, opt)
    frozen = conv.weight[1].clone(), conv.bn.weight[1].clone()
    for s in range(4):
        train_step(model, opt, *_batch(seed=s + 1))
    assert torch.equal(conv.weight[1], frozen[0]) and torch.equal(conv.bn.weight[1], frozen[1])
    # Regenerate: the mask flips back and the channel's weights train again from a clean Adam state.
    assert float(opt.state[conv.weight]["exp_avg"][1].abs().sum()) == 0.0
    with torch.no_grad():
        conv.channel_mask[1] = 1
    for s in range(4):
        train_step(model, opt, *_batch(seed=s + 10))
    assert not torch.equal(conv.weight[1], frozen[0])


def test_remove_orphans_through_pool_and_flatten(small_convnet):
    model = small_convnet
    c0, c1, c2 = [b for b in model.blocks if isinstance(b, Conv)]
    dense = model.blocks[-1]
    with torch.no_grad():
        c2.weight_mask[:, 3] = 0  # nothing reads channel 3 of conv 1 (through the pool)
        width = dense.weight.shape[1] // c2.out_channels
        dense.weight_mask[:, 5 * width : 6 * width] = 0  # nothing reads channel 5 of conv 2 (flatten)
    assert M.remove_orphans(model) == 2
    assert c1.channel_mask[3] == 0 and int(c1.channel_mask.sum()) == 5
    assert c2.channel_mask[5] == 0 and int(c2.channel_mask.sum()) == 7
    assert int(c0.channel_mask.sum()) == 4
    assert int(dense.channel_mask.sum()) == 10  # the output layer is never removed
