"""Filter L1 norm (Li et al. 2017, arXiv:1608.08710, sec. 3.1): a weight-only baseline
(docs/methods.md, "Baselines")."""

from __future__ import annotations

import torch

from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores
from snnc.prune.scores import normalise


class L1(ChannelMethod):
    name = "l1"
    # Li et al. prune each layer by its own fixed ratio (sec. 4, sensitivity analysis), not by one
    # ranking across layers; uniform is that with one ratio for all.
    allocation_default = "uniform"

    def score(self, event: PruneEvent) -> Scores:
        """L1 norm of each output channel's weights times its BN scale (the current the filter
        actually produces), normalised per layer."""
        out = {}
        for name, b in event.blocks.items():
            w = b.masked_weight().detach().abs().flatten(1).sum(1).double()
            if b.bn is not None:
                w = w * (b.bn.weight / torch.sqrt(b.bn.running_var + b.bn.eps)).detach().abs().double()
            out[name] = normalise(w, b.channel_mask > 0)
        return out


METHOD = L1()
