"""Activity monitors: per-channel statistics accumulated over a window of batches, without keeping
the recorded tensors.

A monitor switches ``block.record`` on for its blocks (snnc/nn/blocks.py stores ``input``, ``v``
(voltage before reset) and ``spikes``, each ``(N, C, [H, W,] T)``), folds them into running sums in
a forward hook, and optionally adds a tensor hook on the block's output to sum ``|dL/d spikes|`` per
channel (the regrowth signal of ``sca``). Statistics are sums with a count, so windows of several
ranks add up exactly (:meth:`ActivityMonitor.all_reduce`). ``seconds`` is the wall time spent in the
monitor: the scoring cost.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from snnc.nn.blocks import Conv, SpikingBlock
from snnc.nn.neuron import cuba_lif, delay_one_step

STATS = ("rate", "vabs", "vpos", "crit", "crit_atan", "grad", "shadow", "relief")


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``(N, C, ...)`` over every axis but the channel: ``(C,)``."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).sum(1)


def criticality(v: torch.Tensor, threshold: float, slope: float) -> torch.Tensor:
    """Per-element criticality of a voltage ``v``: the spike's surrogate derivative ``1 / (1 + k |v
    - theta| / theta)^2`` (1 at threshold, -> 0 far from it). See docs/methods.md."""
    return 1.0 / (1.0 + slope * (v - threshold).abs() / threshold) ** 2


def atan_criticality(v: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-element criticality of the authors' code of Chen et al. (arXiv:2311.16141; public
    repository MmPple/pruning-criticality, ``channel_pruning/vggprune.py``): the ATan surrogate
    derivative scaled to peak 1 at threshold, ``1 / (1 + (pi (v - theta) / theta)^2)``. The code has
    ``theta = 1``; dividing by ``theta`` keeps the width the same in units of the threshold."""
    x = (v - threshold) / threshold
    return 1.0 / (1.0 + (torch.pi * x) ** 2)


def sample_criticality(v: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per sample and channel, the max over positions of the time-mean :func:`atan_criticality`:
    ``(N, C)`` from ``v`` ``(N, C, [H, W,] T)`` (a dense layer has no positions). The authors'
    ``crit_c`` is the mean of this over samples."""
    f = atan_criticality(v, threshold).mean(-1)
    return f.flatten(2).amax(2) if f.dim() > 2 else f


class ActivityMonitor:
    """Accumulate per-channel statistics of ``blocks`` (``{name: block}``) while ``active``.

    ``stats`` chooses what to gather (from :data:`STATS`): ``rate`` spikes per neuron and step;
    ``vabs`` mean ``|v|``; ``vpos`` mean ``max(v, 0)``; ``crit`` mean criticality (fast-sigmoid
    form, :func:`criticality`); ``crit_atan`` per-sample max over positions of the time-mean
    :func:`atan_criticality` (summed over samples, count ``crit_samples``); ``grad`` mean
    ``|dL/ds|`` of the block's (masked) output spikes; ``shadow`` the criticality a *pruned*
    channel would have if unmasked (its current recomputed from the recorded input); ``relief`` the
    NNrelief input-contribution sums (see :mod:`snnc.prune.scores`).
    """

    def __init__(self, blocks: dict[str, SpikingBlock], stats: tuple[str, ...]) -> None:
        self.blocks = blocks
        self.stats = tuple(stats)
        self.sums: dict[str, dict[str, torch.Tensor]] = {}
        self.seconds = 0.0
        self._hooks: list = []
        self.out_hw: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.sums = {name: {} for name in self.blocks}

    def _add(self, name: str, key: str, value: torch.Tensor) -> None:
        d = self.sums[name]
        d[key] = d[key] + value if key in d else value.detach().double().clone()

    # -- switching on and off --------------------------------------------------------------------
    def start(self) -> None:
        for name, block in self.blocks.items():
            block.record = {}
            self._hooks.append(block.register_forward_hook(self._forward_hook(name)))

    def stop(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for block in self.blocks.values():
            block.record = None

    def _forward_hook(self, name: str):
        def hook(block, inputs, out):
            t0 = time.perf_counter()
            rec, block.record = block.record, {}
            with torch.no_grad():
                self._fold(name, block, rec)
            if "grad" in self.stats and out.requires_grad:

                def grad_hook(g: torch.Tensor) -> None:
                    t1 = time.perf_counter()
                    self._add(name, "grad", _per_channel(g.detach().abs()))
                    self.seconds += time.perf_counter() - t1

                out.register_hook(grad_hook)
            self.seconds += time.perf_counter() - t0

        return hook

    # -- folding one batch into the sums ---------------------------------------------------------
    def _fold(self, name: str, block: SpikingBlock, rec: dict) -> None:
        v, spikes, x = rec["v"], rec["spikes"], rec["input"]
        per = spikes[:, 0].numel()
        self.out_hw[name] = int(spikes[0, 0, ..., 0].numel())
        self._add(name, "count", torch.tensor(float(per)))
        self._add(name, "samples", torch.tensor(float(spikes.shape[0])))
        if "rate" in self.stats:
            self._add(name, "rate", _per_channel(spikes))
        if "vabs" in self.stats:
            self._add(name, "vabs", _per_channel(v.abs()))
        if "vpos" in self.stats:
            self._add(name, "vpos", _per_channel(v.clamp(min=0)))
        if "crit_atan" in self.stats:
            self._add(name, "crit_atan", sample_criticality(v, float(block.neuron.threshold)).sum(0))
            self._add(name, "crit_samples", torch.tensor(float(v.shape[0])))
        if "crit" in self.stats or "shadow" in self.stats:
            theta = float(block.neuron.threshold)
            self._add(name, "crit", _per_channel(criticality(v, theta, block.neuron.surrogate_slope)))
        if "shadow" in self.stats and "shadow" not in self.sums[name]:
            # Only the window's first batch: the would-be voltage of pruned channels needs the
            # synapse recomputed, and regrowth needs a ranking, not a precise mean (keeps
            # criticality cheap).
            self._add(name, "shadow", self._shadow(block, x))
            self._add(name, "shadow_count", torch.tensor(float(per)))
        if "relief" in self.stats and float(self.sums[name].get("relief_batches", 0)) < 2:
            # Two batches are NNrelief's "pruning set": the grouped conv per (input, output) pair is
            # the costliest statistic here, and two batches rank connections stably.
            self._add(name, "relief_batches", torch.tensor(1.0))
            self._add(name, "relief", relief_contributions(block, x))
            self._add(name, "relief_samples", torch.tensor(float(x.shape[0] * x.shape[-1])))

    def _shadow(self, block: SpikingBlock, x: torch.Tensor) -> torch.Tensor:
        """Per-channel criticality sums the masked channels would have with their mask set to 1."""
        out = torch.zeros(block.out_channels, dtype=torch.float64)
        idx = torch.nonzero(block.channel_mask == 0).flatten()
        if len(idx) == 0:
            return out
        # The block's own synapse (conv, pooling, masks), then only the pruned channels.
        a = block.synapse(x)[:, idx]
        vbias = torch.zeros(len(idx))
        if block.bn is not None:
            # Batch statistics per channel, as the block's BN computes them in training.
            dims = [0] + list(range(2, a.dim()))
            mean, var = a.mean(dims), a.var(dims, unbiased=False)
            scale = block.bn.weight[idx] / torch.sqrt(var + block.bn.eps)
            a = a * scale.view((1, -1) + (1,) * (a.dim() - 2))
            vbias = block.bn.bias[idx] - scale * mean
        if block.bias is not None:
            vbias = vbias + block.bias[idx]
        vb = vbias.view((-1,) + (1,) * (a.dim() - 3))
        rec: dict = {}
        cuba_lif(delay_one_step(a), block.neuron, vb, record=rec)
        crit = criticality(rec["v"], float(block.neuron.threshold), block.neuron.surrogate_slope)
        out[idx] = _per_channel(crit).double()
        return out

    # -- results ---------------------------------------------------------------------------------
    def all_reduce(self) -> None:
        """Sum the statistics over all ranks (torch.distributed), so every rank scores alike."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for name in sorted(self.sums):
            for key in sorted(self.sums[name]):
                dist.all_reduce(self.sums[name][key])

    def mean(self, name: str, key: str) -> torch.Tensor:
        """Per-channel mean of ``key`` over the window (per neuron and time step; ``crit_atan``:
        per sample)."""
        d = self.sums[name]
        if key not in d:
            return torch.zeros(self.blocks[name].out_channels, dtype=torch.float64)
        if key == "crit_atan":
            return d[key] / d["crit_samples"].clamp(min=1.0)
        return d[key] / d["count"].clamp(min=1.0)


@torch.no_grad()
def relief_contributions(block: SpikingBlock, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """NNrelief input contributions summed over samples (each time step is a sample), ``(C_out,
    C_in)``.

    Dense: ``sum_n |w_ji x_ni|``. Conv: ``sum_n || |x_ni| * |K_ji| ||_F`` (``*`` the convolution of
    input map ``i`` with kernel ``K_ji``; Dekhovich et al. 2021, arXiv:2109.10795, sec. 3.2). ``w``
    is the effective weight: masked, times the BN scale of the output channel (running statistics).
    """
    w = block.masked_weight().abs()
    if block.bn is not None:
        scale = (block.bn.weight / torch.sqrt(block.bn.running_var + block.bn.eps)).abs()
        w = w * scale.view((-1,) + (1,) * (w.dim() - 1))
    if not isinstance(block, Conv):
        # (N, in, T): sum over samples and steps of |x|, times |w|.
        return (w * x.abs().sum((0, 2)).unsqueeze(0)).double()
    if block.groups != 1:
        raise ValueError("relief supports ungrouped convolutions only")
    n, c_in, h, wd, t = x.shape
    c_out = w.shape[0]
    pool = getattr(block, "pool", 1)
    if pool > 1:  # a conv followed by a sum-pool of its current is one conv with stride ``pool``
        from snnc.nn.blocks import conv_pool_weight

        w = torch.from_numpy(conv_pool_weight(w.numpy(), pool))
    xf = x.abs().permute(0, 4, 1, 2, 3).reshape(n * t, c_in, h, wd)
    # Grouped conv: group i convolves input map i with every |K_ji|: out channel i*C_out + j.
    kern = w.transpose(0, 1).reshape(c_in * c_out, 1, *w.shape[2:])
    total = torch.zeros(c_in * c_out, dtype=torch.float64)
    for s in range(0, xf.shape[0], chunk):
        y = F.conv2d(
            xf[s : s + chunk],
            kern,
            stride=pool if pool > 1 else block.stride,
            padding=block.padding,
            dilation=block.dilation,
            groups=c_in,
        )
        total += y.flatten(2).norm(dim=2).sum(0).double()
    return total.reshape(c_in, c_out).t().contiguous()
