"""SCA, spiking channel activity (Li et al. 2024, arXiv:2406.01072; docs/methods.md, "SCA").

Prunes the conv channels with the lowest activity (mean spike rate and mean ``|v|`` over the scoring
window) and brings back the pruned channels with the largest loss gradient on their masked output.
"""

from __future__ import annotations

from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores
from snnc.prune.scores import normalise


class SCA(ChannelMethod):
    name = "sca"

    def records(self, regen: bool) -> tuple[str, ...]:
        return ("rate", "vabs", "grad")

    def score(self, event: PruneEvent) -> Scores:
        """Mean spike rate and mean ``|v|`` of each channel over the window, each normalised per
        layer, averaged."""
        mon, out = event.monitor, {}
        for name, b in mon.blocks.items():
            keep = b.channel_mask > 0
            rate, vabs = mon.mean(name, "rate"), mon.mean(name, "vabs")
            out[name] = 0.5 * normalise(rate, keep) + 0.5 * normalise(vabs, keep)
        return out

    def regrow(self, event: PruneEvent) -> Scores:
        """Mean ``|dL/ds|`` of the channel's masked output spikes, normalised by the layer's active
        mean."""
        mon = event.monitor
        return {name: normalise(mon.mean(name, "grad"), b.channel_mask > 0) for name, b in mon.blocks.items()}


METHOD = SCA()
