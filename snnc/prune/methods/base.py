"""What the pruning trainer (:mod:`snnc.prune.trainer`) asks of a method: :class:`PruningMethod`.

A method is one object (``METHOD`` in its own module under ``snnc/prune/methods/``) registered in
:data:`snnc.prune.methods.registry.METHODS`; the trainer names no method. Per run the trainer calls
``check(model)`` and ``start(model, cfg)``; in every prune epoch it watches ``targets(model)`` with an
:class:`~snnc.prune.monitors.ActivityMonitor` gathering ``records(regen)`` during the last
``--window`` batches (no monitor when that is empty), hands every batch to the method's own training
first (``MethodTraining.step``), and at the end of the epoch calls ``prune(event)`` with a
:class:`PruneEvent`. The report's ``sparsity_unit`` is ``unit``; ``--distill`` defaults to
``distill_default``.

Optional attribute (read with ``getattr``, so a method written before it existed still works):
``allocation_default``, how the method splits its pruning over layers when ``--allocation`` is not
given: ``"global"`` (one ranking of all layers' units) or ``"uniform"`` (every layer loses the same
share); ``None`` (the default of :class:`Method`, and of any method without the attribute) means the
method allocates by its own rule (relief: per neuron by alpha; switcher: learned), so
``--allocation`` and a cost ``--objective`` do not apply to it and are refused.
:class:`ChannelMethod` declares ``"global"``; ``l1`` and ``random`` override it with ``"uniform"``.
A method that reads ``event.cost`` (per-unit deployed cost, :class:`PruneEvent`) may honour
``--objective`` itself; :class:`ChannelMethod` does.

Two bases carry the shared parts: :class:`Method` (defaults: no model requirement, nothing recorded,
no own training, no regeneration, its own allocation) and :class:`ChannelMethod` (prunes conv output
channels: :func:`snnc.prune.scores.select` with the run's allocation, a global regrowth budget of
:func:`snnc.prune.scores.regen_budget` and the run's cost objective); a channel method only writes
``score`` (and ``regrow`` and ``records`` if it regenerates or needs activity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from snnc.errors import UsageError
from snnc.prune import masks as M
from snnc.prune import scores as S

if TYPE_CHECKING:
    from snnc.nn.blocks import SpikingBlock
    from snnc.nn.zoo import SpikingNet
    from snnc.prune.config import PruneConfig
    from snnc.prune.monitors import ActivityMonitor

Scores = dict[str, torch.Tensor]
"""Per unit of each target block, ``{layer: tensor}``; higher = keep."""


@dataclass(frozen=True)
class PruneEvent:
    """What a method sees at the end of a prune epoch.

    ``blocks``: ``method.targets(model)``; ``monitor``: the window's statistics (None when the method
    records nothing); ``epoch``: 0-based; ``target``: sparsity of ``unit`` to reach now (the
    schedule's); ``regen``: share of the currently pruned units that may come back
    (:meth:`snnc.prune.schedule.Schedule.regen`); ``training``: what ``start`` returned.
    """

    model: SpikingNet
    blocks: dict[str, SpikingBlock]
    monitor: ActivityMonitor | None
    cfg: PruneConfig
    epoch: int
    target: float
    regen: float
    training: MethodTraining | None = None
    cost: Scores | None = None
    allocation: str | None = None


class MethodTraining(Protocol):
    """A method's own trainable state during a run (the switcher network and its optimizer)."""

    def step(self, batch_index: int, spikes: torch.Tensor, labels: torch.Tensor) -> bool:
        """Called for every batch of a prune epoch before the task net's step; True when the method
        trained on this batch itself (the task net then skips it). ``spikes`` ``(N, *input, T)``."""
        ...

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors and JSON header entries for the resume checkpoint (names unique to the method)."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor], header: dict) -> None:
        """Restore from what :meth:`state_tensors` wrote."""
        ...


class PruningMethod(Protocol):
    """A pruning method.

    ``name``: the ``--method`` value. ``unit``: what ``--sparsity`` counts (``"conv channels"``,
    ``"conv+dense connections"``, ``"dense connections"``; the report's ``sparsity_unit``).
    ``distill_default``: the ``--distill`` weight when none is given. Optional:
    ``allocation_default`` (see the module docstring; missing = None).
    """

    name: str
    unit: str
    distill_default: float

    def check(self, model: SpikingNet) -> None:
        """Raise a one-line :class:`~snnc.errors.UsageError` if the method cannot prune ``model``."""
        ...

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        """The blocks whose units the method prunes (and its monitor watches), ``{name: block}``."""
        ...

    def records(self, regen: bool) -> tuple[str, ...]:
        """The :data:`snnc.prune.monitors.STATS` to gather on ``targets`` during a prune epoch's
        window (``regen``: whether this event may regenerate); empty = no monitor."""
        ...

    def start(self, model: SpikingNet, cfg: PruneConfig) -> MethodTraining | None:
        """The method's own training state for the run, or None. Called once, after
        ``torch.manual_seed(cfg.seed)`` and before a resume checkpoint is loaded."""
        ...

    def score(self, event: PruneEvent) -> Scores:
        """Per-unit scores of ``event.blocks``, higher = keep."""
        ...

    def regrow(self, event: PruneEvent) -> Scores | None:
        """Per-unit regrowth signal for pruned units (higher = back first); None when the method does
        not regenerate through a separate signal."""
        ...

    def prune(self, event: PruneEvent) -> dict:
        """Score, regenerate and write the target blocks' masks to reach ``event.target`` (the
        trainer then zeroes pruned weights). Runs under ``torch.no_grad``. Returns the event's log:
        ``regenerated`` (count), optionally ``revived`` (``[[layer, unit], ...]``) and other
        method-specific entries."""
        ...


class Method:
    """Defaults of :class:`PruningMethod`: any model, nothing recorded, no own training, no
    regrowth signal. Subclasses set ``name``, ``unit``, ``distill_default`` and write ``targets``,
    ``score`` and ``prune``."""

    name: str
    unit: str
    distill_default: float = 0.0
    allocation_default: str | None = None  # allocates by its own rule

    def check(self, model: SpikingNet) -> None:
        return None

    def records(self, regen: bool) -> tuple[str, ...]:
        return ()

    def start(self, model: SpikingNet, cfg: PruneConfig) -> MethodTraining | None:
        return None

    def regrow(self, event: PruneEvent) -> Scores | None:
        return None

    def __repr__(self) -> str:
        return f"<pruning method {self.name!r}>"


class ChannelMethod(Method):
    """A method that prunes the output channels of the convs with their own neuron
    (:func:`snnc.prune.masks.channel_targets`).

    At an event, first ``regen_budget(pruned, event.regen)`` of the pruned channels of all layers
    (at least one while any is pruned, when ``regrow`` gives a signal) with the highest positive
    ``regrow`` come back; then channels are pruned to ``event.target`` by
    :func:`snnc.prune.scores.select`: ``global`` (the default) ranks all layers together, each
    layer's scores divided by their active mean; ``uniform`` takes the same share from every
    layer; every layer keeps at least ``max(1, ceil(min_keep_fraction * C))``. With ``event.cost``
    the key is score per unit of cost. Subclasses write ``score`` (and ``records`` and ``regrow``
    when they need activity or regenerate).
    """

    unit = "conv channels"
    # Off: from the default-trained digits base (an undertrained teacher) distillation held the
    # pruned net at the teacher's level; without it the pruned net gained (docs/methods.md,
    # "Measured"). --distill 0.9 helped from well-trained bases.
    distill_default = 0.0
    # The criticality authors' code ranks all layers globally; SCA's paper suggests it (PAPERS.md).
    allocation_default: str | None = "global"

    def check(self, model: SpikingNet) -> None:
        if not M.channel_targets(model):
            raise UsageError(
                f"method {self.name!r} prunes conv channels but the model "
                f"({model.arch['name']}) has no conv layers; use --method relief or switcher"
            )

    def targets(self, model: SpikingNet) -> dict[str, SpikingBlock]:
        return dict(M.channel_targets(model))

    def prune(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.out_channels for b in blocks.values())
        current = {k: b.channel_mask for k, b in blocks.items()}
        n_pruned = int(round(event.target * total))
        score = self.score(event)
        regrow = self.regrow(event)
        pruned_now = sum(int((m == 0).sum()) for m in current.values())
        n_regen = S.regen_budget(pruned_now, event.regen) if regrow is not None else 0
        floor = S.floors({k: b.out_channels for k, b in blocks.items()}, event.cfg.min_keep_fraction)
        if regrow is not None:  # each layer's signal relative to its typical active channel's
            regrow = {k: S.normalise(r.double(), current[k] > 0) for k, r in regrow.items()}
        new, revived = S.select(
            current,
            score,
            n_pruned,
            allocation=event.allocation or self.allocation_default or "global",
            regrow=regrow,
            n_regen=n_regen,
            min_keep=floor,
            cost=event.cost,
            compare=getattr(event.cfg, "score_compare", "mean"),
        )
        for k, b in blocks.items():
            b.channel_mask.copy_(new[k])
        return {
            "regenerated": len(revived),
            "regen_budget": n_regen,
            "revived": [[k, i] for k, i in revived],
        }
