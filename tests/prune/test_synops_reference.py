"""SynOps of snnc (:mod:`snnc.prune.synops` and the simulator) against an independent count.

NeuroBench's definition (Yik et al., arXiv:2304.04640; ``neurobench.metrics.workload.
SynapticOperations``, whose ``single_layer_MACs`` applies a binarised copy of the layer to the
binarised input): effective synaptic operations = for every input spike, the number of its fan-out
synapses with a nonzero weight that land inside the output map. Here it is counted by explicit
loops over spikes, output positions and kernel taps, on a tiny conv+pool+dense net with pruned
weights and a pruned channel, for one fixed input; and, when the ``neurobench`` package is
importable, with NeuroBench's own function on ``nn.Conv2d``/``nn.Linear`` copies of the layers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snnc.compile.trace import trace
from snnc.nn.blocks import Conv, Dense, Pool
from snnc.nn.zoo import build
from snnc.prune.masks import effective_weight_mask
from snnc.prune.synops import block_synops
from snnc.sim import simulate


def _net():
    """convnet 2-3-4 on 8x8 (conv 5x5/2 pad 2, conv 3x3 pad 1, sum-pool 2, conv 3x3 pad 1, dense 10),
    float64, eval mode, weights scaled so every layer spikes; some weights and one channel pruned."""
    torch.manual_seed(3)
    model = build("convnet", {"input_shape": [1, 8, 8], "num_classes": 10, "channels": [2, 3, 4]})
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for b in model.modules():
            if isinstance(b, Conv | Dense):
                b.weight.mul_(3.0)
                b.weight_mask.copy_((torch.rand(b.weight.shape, generator=g) > 0.3).float())
                if b.bn is not None:
                    b.bn.running_mean.zero_()
                    b.bn.running_var.fill_(1.0)
        convs = [b for b in model.blocks if isinstance(b, Conv)]
        convs[1].channel_mask[1] = 0.0  # a pruned channel: its row of weights does no work
        convs[1].weight[0, 0, 1, 1] = 0.0  # a zero weight under a kept mask does no work either
    return model.double().eval()


def _input() -> torch.Tensor:
    rng = np.random.default_rng(7)
    return torch.from_numpy((rng.random((2, 1, 8, 8, 5)) < 0.4).astype(np.float64))


def _recorded_inputs(model, x) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """(name, block, its input spikes) for every synaptic block, in order."""
    out = []
    hooks = [
        b.register_forward_hook(lambda m, i, o, n=n: out.append((n, m, i[0].detach())))
        for n, b in model.named_modules()
        if isinstance(b, Conv | Dense | Pool)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def _effective(block) -> torch.Tensor:
    return (effective_weight_mask(block) * block.weight).detach()


def hand_count(block, x: torch.Tensor) -> int:
    """NeuroBench's effective SynOps by explicit loops: for each input spike, count the (output
    channel, kernel tap) pairs with a nonzero weight whose output position is inside the map."""
    if isinstance(block, Dense):
        w = _effective(block)
        total = 0
        for n in range(x.shape[0]):
            for i in range(x.shape[1]):
                for t in range(x.shape[2]):
                    if x[n, i, t] != 0:
                        total += int(sum(1 for j in range(w.shape[0]) if w[j, i] != 0))
        return total
    if isinstance(block, Pool):
        k, s = block.kernel_size, block.stride
        w = torch.ones(x.shape[1], x.shape[1], k, k) * torch.eye(x.shape[1]).view(
            x.shape[1], x.shape[1], 1, 1
        )
        pad, groups_diag = 0, True
    else:
        w, k, s, pad = _effective(block), block.weight.shape[-1], block.stride, block.padding
        groups_diag = False
    s = s if isinstance(s, int) else s[0]
    pad = pad if isinstance(pad, int) else pad[0]
    n_, c_in, h, wd, steps = x.shape
    oh = (h + 2 * pad - k) // s + 1
    ow = (wd + 2 * pad - k) // s + 1
    total = 0
    for n in range(n_):
        for t in range(steps):
            for ci in range(c_in):
                for y in range(h):
                    for xx in range(wd):
                        if x[n, ci, y, xx, t] == 0:
                            continue
                        for co in range(w.shape[0]):
                            if groups_diag and co != ci:
                                continue
                            for ky in range(k):
                                for kx in range(k):
                                    # output (oy, ox) reads input (oy*s - pad + ky, ox*s - pad + kx)
                                    oy, ry = divmod(y + pad - ky, s)
                                    ox, rx = divmod(xx + pad - kx, s)
                                    if ry or rx or not (0 <= oy < oh and 0 <= ox < ow):
                                        continue
                                    if w[co, ci, ky, kx] != 0:
                                        total += 1
    return total


def test_synops_match_hand_count_per_layer():
    model, x = _net(), _input()
    rec = _recorded_inputs(model, x)
    assert [type(b).__name__ for _, b, _ in rec] == ["Conv", "Conv", "Pool", "Conv", "Dense"]
    for name, block, xin in rec:
        assert xin.sum() > 0, f"{name} gets no spikes: the comparison would prove nothing"
        assert block_synops(block, xin) == hand_count(block, xin), name


def test_simulator_synops_match_hand_count():
    model, x = _net(), _input()
    rec = _recorded_inputs(model, x)
    res = simulate(trace(model), x.numpy().astype(np.uint8))
    want = {f"blocks.{name.split('.')[-1]}": hand_count(block, xin) for name, block, xin in rec}
    assert {k: int(v) for k, v in res.synops.items()} == want


def test_synops_match_neurobench():
    macs = pytest.importorskip("neurobench.metrics.utils.layers.macs")
    model, x = _net(), _input()
    for name, block, xin in _recorded_inputs(model, x):
        if isinstance(block, Pool):
            continue  # NeuroBench counts Linear/Conv layers only (snnc's sum-pool is a synapse)
        if isinstance(block, Dense):
            layer = torch.nn.Linear(block.weight.shape[1], block.weight.shape[0], bias=False).double()
            frames = xin.permute(0, 2, 1).reshape(-1, xin.shape[1])
        else:
            layer = torch.nn.Conv2d(
                block.weight.shape[1],
                block.weight.shape[0],
                block.weight.shape[-1],
                stride=block.stride,
                padding=block.padding,
                bias=False,
            ).double()
            n, c, h, w, t = xin.shape
            frames = xin.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w)
        layer.weight.data = _effective(block).clone()
        ops, spiking = macs.single_layer_MACs(frames, layer)
        assert spiking
        assert block_synops(block, xin) == ops, name
