"""The settings of one pruning run (:class:`PruneConfig`; validated by
:func:`snnc.prune.trainer.validate`).

The method is named here, not dispatched on: ``cfg.method`` is looked up in
:data:`snnc.prune.methods.registry.METHODS`, whose method object knows its default distillation
weight.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from snnc.prune.methods.registry import METHODS

LR_SCHEDULES = ("cosine", "rewind")


@dataclass(frozen=True)
class PruneConfig:
    """Settings of one pruning run (the CLI packs its options into this).

    ``sparsity``: fraction of the method's units removed (its ``unit``: conv channels for sca,
    criticality, l1, random; conv + dense connections for relief; dense connections for switcher).
    ``window``: batches per scoring window. ``val_limit``/``test_limit``: evaluate on the first N
    samples (None = all). ``distill``: weight of knowledge distillation from the frozen unpruned model
    at temperature ``distill_temperature`` (:func:`snnc.prune.trainer.distill_loss`; 0 =
    cross-entropy only); None = the method's ``distill_default`` (0 for every built-in method;
    docs/methods.md, "Distillation"). ``lr_schedule``: ``rewind`` (default) or ``cosine``
    (:func:`snnc.prune.trainer.lr_at`).
    """

    method: str
    sparsity: float
    epochs: int = 10
    dataset: str = "digits"
    steps: int = 16
    encoding: str = "rate"
    lr: float = 2e-3
    batch_size: int = 64
    train_limit: int | None = None
    seed: int = 0
    window: int = 8
    prune_fraction: float = 0.6
    regen_fraction: float = 0.2
    min_keep_fraction: float = 0.1
    alpha_conv: float = 0.9
    alpha_fc: float = 0.95
    switcher_lambda: float = 0.01
    switcher_lr: float = 0.05
    distill: float | None = None
    distill_temperature: float = 4.0
    lr_schedule: str = "rewind"
    # The method's own variant (docs/methods.md): sca potential|rectified, criticality
    # structured|unstructured; None = the method's default.
    variant: str | None = None
    val_limit: int | None = 1000
    test_limit: int | None = None
    # How pruning is split over layers and what it saves (docs/methods.md, "Allocation"):
    # allocation None = the method's allocation_default; objective accuracy|synops|cores.
    allocation: str | None = None
    objective: str = "accuracy"
    score_compare: str = "mean"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def distill_weight(self) -> float:
        """``distill`` if given, else the method's default (UsageError for an unknown method)."""
        if self.distill is not None:
            return self.distill
        return METHODS.get(self.method).distill_default

    @property
    def allocation_used(self) -> str | None:
        """``allocation`` if given, else the method's ``allocation_default`` (None: the method
        allocates by its own rule)."""
        if self.allocation is not None:
            return self.allocation
        return getattr(METHODS.get(self.method), "allocation_default", None)


def with_data_defaults(cfg: PruneConfig, header: dict, **given) -> PruneConfig:
    """Fill dataset/steps/encoding from the model file's ``data`` settings unless given."""
    data = header.get("data", {}) or {}
    fields = {
        k: given[k] if given.get(k) is not None else data.get(k, getattr(cfg, k))
        for k in ("dataset", "steps", "encoding")
    }
    return replace(cfg, **fields)
