"""Random channel pruning: the baseline every score must beat (docs/methods.md, "Baselines")."""

from __future__ import annotations

import torch

from snnc.prune.distributed import seeded_generator
from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores


class Random(ChannelMethod):
    name = "random"
    # Random scores have no scale to compare across layers; the same share from every layer.
    allocation_default = "uniform"

    def score(self, event: PruneEvent) -> Scores:
        """Uniform scores from a generator seeded by ``(seed, 7, epoch)``: identical on every rank
        and in a resumed run."""
        generator = seeded_generator(event.cfg.seed, 7, event.epoch)
        return {
            name: torch.rand(b.out_channels, generator=generator, dtype=torch.float64)
            for name, b in event.blocks.items()
        }


METHOD = Random()
