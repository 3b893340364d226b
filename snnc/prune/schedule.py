"""Sparsity schedule: when to prune and how much, per epoch.

The target grows cubically (Zhu & Gupta 2017, "To prune, or not to prune", arXiv:1710.01878, eq. 1):
``s_t = S * (1 - (1 - t / n)^3)`` for prune event ``t = 1..n``, so most units go early while the net
can still adapt, and the last events remove few. Prune events sit at the end of the first ``n``
epochs; the remaining epochs fine-tune with fixed masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """``epochs`` in total; prune at the end of epochs ``1..prune_epochs``; final sparsity
    ``sparsity``.

    ``regen_fraction``: share of the currently pruned units (all layers together) that may be
    regenerated at an event; it decays linearly from ``regen_fraction`` at the first event to
    ``regen_fraction / n`` at the last (regeneration explores early; the fine-tuning epochs after
    the last event train the final structure). The method turns it into a count of at least one
    unit (:func:`snnc.prune.scores.regen_budget`); 0 turns regeneration off.
    """

    epochs: int
    sparsity: float
    prune_fraction: float = 0.6
    regen_fraction: float = 0.2

    @property
    def prune_epochs(self) -> int:
        if self.epochs <= 1:
            return self.epochs
        return max(1, min(self.epochs - 1, math.ceil(self.prune_fraction * self.epochs)))

    def is_prune_epoch(self, epoch: int) -> bool:
        """``epoch`` counts from 0; prune after it?"""
        return epoch < self.prune_epochs

    def target(self, epoch: int) -> float:
        """Sparsity to reach after epoch ``epoch`` (0-based)."""
        n = self.prune_epochs
        if n == 0:
            return 0.0
        t = min(epoch + 1, n)
        return self.sparsity * (1.0 - (1.0 - t / n) ** 3)

    def regen(self, epoch: int) -> float:
        """Fraction of the pruned units that may come back after epoch ``epoch`` (0-based):
        ``regen_fraction * (1 - epoch / n)`` at prune events, 0 after them."""
        n = self.prune_epochs
        if epoch >= n or self.regen_fraction <= 0:
            return 0.0
        return self.regen_fraction * (1.0 - epoch / n)
