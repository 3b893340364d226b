"""Blocks: masks, batch-norm split, shapes through the zoo."""

from __future__ import annotations

import pytest
import torch

from snnc.nn import Conv, NeuronParams, build
from snnc.nn.zoo import ZOO


@pytest.mark.parametrize("arch", sorted(ZOO))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_zoo_shapes(arch, shape):
    model = build(arch, {"input_shape": list(shape), "num_classes": 10})
    out = model(torch.zeros(2, *shape, 4))
    assert out.shape == (2, 10, 4)


def test_channel_mask_silences_channel_including_bn_shift():
    torch.manual_seed(0)
    conv = Conv(1, 4, 3, padding=1, neuron=NeuronParams(threshold=0.1), batch_norm=True)
    with torch.no_grad():
        conv.bn.bias.fill_(5.0)  # a large BN shift would make every channel fire by itself
    conv.eval()
    conv.channel_mask[1] = 0
    out = conv(torch.zeros(1, 1, 5, 5, 6))
    assert out[:, 1].sum() == 0
    assert out[:, 0].sum() > 0  # unmasked channel fires from its BN shift alone


def test_bn_shift_enters_voltage_bias():
    conv = Conv(1, 1, 1, neuron=NeuronParams(threshold=10.0), batch_norm=True)
    conv.eval()
    with torch.no_grad():
        conv.bn.running_mean.fill_(2.0)
        conv.bn.running_var.fill_(4.0 - conv.bn.eps)
        conv.bn.weight.fill_(3.0)
        conv.bn.bias.fill_(1.0)
    scaled, shift = conv.bn(torch.ones(1, 1, 1, 1, 1))
    assert torch.allclose(scaled, torch.full_like(scaled, 1.5))  # 3/2 * a
    assert torch.allclose(shift, torch.tensor([1.0 - 3.0 * 2.0 / 2.0]))


def test_weight_mask_removes_connections():
    model = build("mlp", {"input_shape": [1, 8, 8], "num_classes": 10})
    dense = model.blocks[1]
    dense.weight_mask.zero_()
    out = dense(torch.ones(1, 64, 5))
    assert out.sum() == 0


def test_conv_pool_equals_single_strided_conv():
    import numpy as np
    import torch.nn.functional as F

    from snnc.nn.blocks import conv_pool_weight

    torch.manual_seed(1)
    conv = Conv(3, 5, 3, padding=1, neuron=None, pool=2)
    x = torch.rand(2, 3, 9, 9, 4)
    y = conv.synapse(x)
    w = torch.from_numpy(conv_pool_weight(conv.weight.detach().numpy(), 2))
    ref = F.conv2d(x.permute(0, 4, 1, 2, 3).reshape(8, 3, 9, 9), w, stride=2, padding=1)
    ref = ref.reshape(2, 4, 5, 4, 4).permute(0, 2, 3, 4, 1)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.detach().numpy(), ref.detach().numpy(), atol=1e-5)
