"""SynOps (NeuroBench: nonzero input spike x nonzero fan-out weight) against hand counts."""

from __future__ import annotations

import torch

from snnc.nn.blocks import Conv, Dense, Pool
from snnc.nn.neuron import NeuronParams
from snnc.prune.synops import block_synops


def test_dense_synops_counts_nonzero_fanout():
    d = Dense(3, 4, NeuronParams())
    with torch.no_grad():
        d.weight.fill_(1.0)
        d.weight[:, 2] = 0  # input 2 has no fan-out
        d.weight_mask[0, 0] = 0  # input 0 fans out to 3 neurons
        d.channel_mask[3] = 0  # neuron 3 is pruned: inputs 0 and 1 lose one target each
    x = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]])  # (1, 3, T=2)
    # input 0: 2 spikes x 2 targets; input 1: 1 spike x 3 targets; input 2: 0 targets.
    assert block_synops(d, x) == 2 * 2 + 1 * 3


def test_conv_synops_counts_border_fanout():
    c = Conv(1, 1, 3, padding=1, neuron=NeuronParams())
    with torch.no_grad():
        c.weight.fill_(1.0)
    x = torch.zeros(1, 1, 3, 3, 1)
    x[0, 0, 0, 0, 0] = 1  # corner spike reaches a 2x2 neighbourhood
    x[0, 0, 1, 1, 0] = 1  # centre spike reaches all 9 outputs
    assert block_synops(c, x) == 4 + 9


def test_pool_synops():
    p = Pool(2)
    x = torch.ones(1, 2, 4, 4, 3)
    assert block_synops(p, x) == 2 * 16 * 3
