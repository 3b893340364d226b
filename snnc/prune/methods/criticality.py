"""Criticality (Chen et al. 2023, arXiv:2311.16141; docs/methods.md, "Criticality").

Prunes the conv channels whose membrane sits farthest from threshold (lowest mean surrogate
derivative of the spike, :func:`snnc.prune.monitors.criticality`) and brings back the pruned channels
that would be most critical unmasked.
"""

from __future__ import annotations

import torch

from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores


def _reference(crit: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean criticality over the layer's active channels (1 when it is not positive)."""
    ref = crit[keep].mean() if bool(keep.any()) else crit.mean()
    return ref if float(ref) > 0 else torch.tensor(1.0, dtype=crit.dtype)


class Criticality(ChannelMethod):
    name = "criticality"

    def records(self, regen: bool) -> tuple[str, ...]:
        # The shadow voltage of pruned channels is only needed when some may come back.
        return ("crit", "shadow") if regen else ("crit",)

    def score(self, event: PruneEvent) -> Scores:
        """Mean criticality of each channel over the window, divided by the layer's active mean."""
        mon, out = event.monitor, {}
        for name, b in mon.blocks.items():
            crit = mon.mean(name, "crit")
            out[name] = crit / _reference(crit, b.channel_mask > 0)
        return out

    def regrow(self, event: PruneEvent) -> Scores:
        """Pruned channels are scored on the voltage they would have unmasked (``shadow``, the
        window's first batch), on the same scale as :meth:`score`."""
        mon, out = event.monitor, {}
        for name, b in mon.blocks.items():
            crit = mon.mean(name, "crit")
            d = mon.sums[name]
            shadow = d["shadow"] / d["shadow_count"] if "shadow" in d else torch.zeros_like(crit)
            out[name] = shadow / _reference(crit, b.channel_mask > 0)
        return out


METHOD = Criticality()
