"""Spiking blocks: Dense, Conv (optional BatchNorm), sum-Pool, Flatten, Residual (Add).

Tensors carry time last, as in lava-dl: spikes ``(N, C, H, W, T)`` or ``(N, F, T)``.
Each synaptic block adds exactly one step of latency (``delay_one_step``), as every Loihi synapse does.

Pruning hooks, all plain buffers so regeneration can bring a unit back and masks travel in the model file:
``channel_mask`` ``(C_out,)`` zeroes an output channel's current *and* bias (after batch-norm, so a masked
channel leaks no BN shift) and its spikes; ``weight_mask`` (same shape as ``weight``) removes connections.
Setting ``block.record = {}`` makes the next forward store ``input``, ``v`` and ``spikes`` there (detached).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snnc.nn.neuron import DECAY_UNITY, NeuronParams, cuba_lif, delay_one_step


def _fold_time(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W, T)`` -> ``(N*T, C, H, W)``."""
    n, c, h, w, t = x.shape
    return x.permute(0, 4, 1, 2, 3).reshape(n * t, c, h, w)


def _unfold_time(y: torch.Tensor, n: int, t: int) -> torch.Tensor:
    """``(N*T, C, H, W)`` -> ``(N, C, H, W, T)``."""
    _, c, h, w = y.shape
    return y.reshape(n, t, c, h, w).permute(0, 2, 3, 4, 1)


class VoltageBiasBatchNorm(nn.Module):
    """Batch-norm over the synaptic current whose shift goes into the neuron's voltage bias.

    ``BN(a) = gamma * (a - mean) / std + beta`` is split into a scale on the current
    (``gamma / std * a``) and a constant ``beta - gamma * mean / std`` that the neuron adds to ``v`` each
    step (Loihi's bias enters ``v``, docs/loihi2.md §2.1). The split makes folding into the deployed
    weights and bias exact whatever the current decay (see docs/methods.md).
    Statistics are over batch, space and time.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum = momentum
        self.eps = eps

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a``: ``(N, C, ..., T)``. Returns (scaled current, per-channel voltage bias ``(C,)``)."""
        if self.training:
            dims = [0] + list(range(2, a.dim()))
            mean = a.mean(dim=dims)
            var = a.var(dim=dims, unbiased=False)
            with torch.no_grad():
                count = a.numel() / a.shape[1]
                unbiased = var * count / max(count - 1, 1)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (a.dim() - 2)
        return a * scale.view(shape), self.bias - scale * mean


class SpikingBlock(nn.Module):
    """Base of the synaptic blocks: weight, masks, optional BN, optional neuron.

    With ``neuron=None`` the block is a synapse only: it returns the delayed current, for a
    :class:`Residual` to sum before its own neuron.
    """

    kind = "block"

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        fan_in: int,
        neuron: NeuronParams | None,
        bias: bool,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        out_channels = weight_shape[0]
        self.weight = nn.Parameter(torch.empty(weight_shape))
        # Uniform init scaled to the threshold: strong enough to fire, weak enough that v stays near
        # threshold where the surrogate gradient is large.
        bound = (neuron.threshold if neuron else 1.0) / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias and neuron else None
        self.bn = VoltageBiasBatchNorm(out_channels) if batch_norm and neuron else None
        self.neuron = neuron
        self.register_buffer("channel_mask", torch.ones(out_channels))
        self.register_buffer("weight_mask", torch.ones(weight_shape))
        self.record: dict | None = None

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.weight_mask

    def synapse(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
        """Per-channel ``(C,)`` -> broadcastable over ``(N, C, ...)`` without the time axis."""
        return t.view((-1,) + (1,) * (ndim - 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.synapse(x)
        ndim = current.dim()
        vbias = self.bias
        if self.bn is not None:
            current, bn_shift = self.bn(current)
            vbias = bn_shift if vbias is None else vbias + bn_shift
        mask = self._channel_view(self.channel_mask, ndim)
        current = delay_one_step(current * mask.unsqueeze(-1))
        if self.neuron is None:
            return current
        if vbias is not None:
            vbias = self._channel_view(vbias, ndim) * mask
        rec = {} if self.record is not None else None
        spikes = cuba_lif(current, self.neuron, vbias, record=rec) * mask.unsqueeze(-1)
        if self.record is not None:
            self.record.update(input=x.detach(), v=rec["v"], spikes=spikes.detach())
        return spikes


class Dense(SpikingBlock):
    """Fully connected synapse + CUBA-LIF. ``(N, in, T) -> (N, out, T)``."""

    kind = "dense"

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: NeuronParams | None = None,
        bias: bool = True,
        batch_norm: bool = False,
    ) -> None:
        super().__init__((out_features, in_features), in_features, neuron, bias, batch_norm)

    def synapse(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oi,nit->not", self.masked_weight(), x)


class Conv(SpikingBlock):
    """2-D convolution synapse (PyTorch correlation, CHW) + optional BN + CUBA-LIF.

    ``(N, C_in, H, W, T) -> (N, C_out, H', W', T)``.
    """

    kind = "conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        neuron: NeuronParams | None = None,
        bias: bool = False,
        batch_norm: bool = False,
        pool: int = 1,
    ) -> None:
        k = kernel_size
        shape = (out_channels, in_channels // groups, k, k)
        super().__init__(shape, in_channels // groups * k * k, neuron, bias, batch_norm)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        if pool > 1 and (stride != 1 or dilation != 1):
            raise ValueError("pool > 1 needs stride 1 and dilation 1")
        self.pool = pool

    def synapse(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[-1]
        y = F.conv2d(
            _fold_time(x),
            self.masked_weight(),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )
        if self.pool > 1:
            # Sum-pool of the current (linear): together with the conv it is one conv of kernel
            # k + pool - 1 and stride pool (see conv_pool_weight), so it needs no neuron layer of its own.
            y = F.avg_pool2d(y, self.pool) * (self.pool * self.pool)
        return _unfold_time(y, n, t)


def conv_pool_weight(weight, pool: int):
    """Kernel of the single conv equal to ``sum_pool(conv(x, weight), pool)`` (stride ``pool``).

    ``weight`` ``(C_out, C_in/g, k, k)`` (numpy or torch) -> ``(C_out, C_in/g, k+pool-1, k+pool-1)``:
    the sum of ``weight`` shifted over the ``pool x pool`` window.
    Exact: output sizes and receptive fields coincide.
    """
    import numpy as np

    w = np.asarray(weight)
    o, i, kh, kw = w.shape
    out = np.zeros((o, i, kh + pool - 1, kw + pool - 1), dtype=w.dtype)
    for dy in range(pool):
        for dx in range(pool):
            out[:, :, dy : dy + kh, dx : dx + kw] += w
    return out


def pool_neuron() -> NeuronParams:
    """The default pool neuron: no memory (decays 4096), threshold 0.5 with unit tap weights.

    ``u`` and ``v`` equal this step's summed input, so a pool neuron spikes iff any input in its window
    spiked one step earlier: an OR (spike max-pool) that is exact in float and in fixed point.
    """
    return NeuronParams(threshold=0.5, current_decay=DECAY_UNITY, voltage_decay=DECAY_UNITY)


class Pool(nn.Module):
    """Sum-pool synapse (all taps ``weight``) + CUBA-LIF, per channel; emitted as a grouped conv."""

    kind = "pool"

    def __init__(
        self,
        kernel_size: int = 2,
        stride: int | None = None,
        weight: float = 1.0,
        neuron: NeuronParams | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size
        self.weight = float(weight)
        self.neuron = neuron or pool_neuron()
        self.record: dict | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[-1]
        k = self.kernel_size
        y = F.avg_pool2d(_fold_time(x), k, self.stride) * (k * k * self.weight)
        current = delay_one_step(_unfold_time(y, n, t))
        rec = {} if self.record is not None else None
        spikes = cuba_lif(current, self.neuron, None, record=rec)
        if self.record is not None:
            self.record.update(input=x.detach(), v=rec["v"], spikes=spikes.detach())
        return spikes


class Flatten(nn.Module):
    """``(N, C, H, W, T) -> (N, C*H*W, T)`` in PyTorch (C, H, W) order; no latency."""

    kind = "flatten"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, x.shape[-1])


class Residual(nn.Module):
    """Residual block: ``neuron(main(x) + shortcut(x))``.

    ``main`` is a list of blocks whose last is a synapse-only Conv; ``shortcut`` is a synapse-only 1x1
    Conv. Their delayed currents are summed at the Add neuron (Lava sums every OutPort connected to one
    InPort, docs/loihi2.md §2.5). The Add has its own bias and ``channel_mask``.
    """

    kind = "residual"

    def __init__(self, main: list[nn.Module], shortcut: Conv, neuron: NeuronParams) -> None:
        super().__init__()
        if getattr(main[-1], "neuron", 0) is not None or shortcut.neuron is not None:
            raise ValueError("the last main block and the shortcut must be synapse-only (neuron=None)")
        self.main = nn.ModuleList(main)
        self.shortcut = shortcut
        self.neuron = neuron
        channels = shortcut.out_channels
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("channel_mask", torch.ones(channels))
        self.record: dict | None = None

    @property
    def out_channels(self) -> int:
        return self.shortcut.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.main:
            h = block(h)
        current = h + self.shortcut(x)
        mask = self.channel_mask.view(-1, 1, 1)
        current = current * mask.unsqueeze(-1)
        rec = {} if self.record is not None else None
        spikes = cuba_lif(current, self.neuron, self.bias.view(-1, 1, 1) * mask, record=rec)
        spikes = spikes * mask.unsqueeze(-1)
        if self.record is not None:
            self.record.update(input=x.detach(), v=rec["v"], spikes=spikes.detach())
        return spikes
