"""The pruning trainer shared by every method: train, score, prune, regenerate, repeat, fine-tune.

One epoch = one pass over the (sharded) training set with Adam and surrogate gradients (as
:mod:`snnc.train`), gradients and optimizer moments of pruned parameters masked at every step
(:mod:`snnc.prune.masks`). In a prune epoch (:mod:`snnc.prune.schedule`) an
:class:`~snnc.prune.monitors.ActivityMonitor` gathers what the method records during the last
``window`` batches, and at the end of the epoch the method scores units, regenerates and prunes to
the schedule's target; the remaining epochs fine-tune with fixed masks. The method is an object
from :data:`snnc.prune.methods.registry.METHODS` (protocol:
:class:`snnc.prune.methods.base.PruningMethod`); nothing here names one.

:func:`prune` reads as its steps: :func:`validate` (settings and model, for the method),
:func:`_set_up` (data, optimizer, teacher, resume or measure the input model), then per epoch
:func:`_prune_epoch` or :func:`_fine_tune_epoch` and :func:`_record_epoch`, then
:func:`_final_report`.

Determinism: the batch order of epoch ``e`` and the spike encoding of batch ``b`` come from
generators seeded by ``(seed, e, b)``, so a run resumed from the per-epoch checkpoint repeats the
uninterrupted run exactly, and under ``torchrun`` every rank sees its own shard of the same
permutation. Gradients, BN statistics and scores are all-reduced, so all ranks hold identical
weights and masks.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from snnc import data as D
from snnc.errors import SnncError, UsageError
from snnc.nn.zoo import SpikingNet
from snnc.prune import masks as M
from snnc.prune.config import LR_SCHEDULES, PruneConfig, with_data_defaults
from snnc.prune.costs import UnitCost, channel_synops
from snnc.prune.distributed import all_reduce_mean, rank_and_world, rank_digests, seeded_generator
from snnc.prune.methods.base import MethodTraining, PruneEvent, PruningMethod
from snnc.prune.methods.registry import METHODS
from snnc.prune.monitors import ActivityMonitor
from snnc.prune.report import prune_report
from snnc.prune.resume import Progress, load_optimizer, load_resume, model_digest, save_resume
from snnc.prune.schedule import Schedule
from snnc.prune.scores import ALLOCATIONS, COMPARABLE, OBJECTIVES
from snnc.prune.synops import measure
from snnc.train import evaluate
from snnc.ui import Reporter

__all__ = [
    "PruneConfig",
    "distill_loss",
    "lr_at",
    "model_digest",
    "prune",
    "train_step",
    "with_data_defaults",
]


class _Splits(NamedTuple):
    """The run's data: training set (``train_limit``), validation and test subsets."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class _Run:
    """One pruning run in progress: what every step reads (and ``progress``, what they update)."""

    cfg: PruneConfig
    method: PruningMethod
    model: SpikingNet
    data: _Splits
    sched: Schedule
    opt: torch.optim.Optimizer
    training: MethodTraining | None  # the method's own trainable state (switcher)
    teacher: SpikingNet | None  # the frozen unpruned model, when distilling
    progress: Progress
    resumed: bool
    batches: list[int]  # this rank's batch indices in each epoch's permutation
    world: int
    unit_cost: UnitCost | None = None  # the caller's per-unit cost (--objective cores)


class _Pass(NamedTuple):
    """One pass over this rank's training shard: mean loss, accuracy, seconds (without scoring)."""

    loss: float
    accuracy: float
    seconds: float


def lr_at(cfg: PruneConfig, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based). ``cosine``: one cosine decay over all epochs.
    ``rewind``: the full rate while the schedule prunes, then a cosine decay restarted over the
    fine-tuning epochs (learning-rate rewinding, Renda, Frankle, Carbin, arXiv:2003.02389)."""
    if cfg.lr_schedule == "rewind":
        n = Schedule(cfg.epochs, cfg.sparsity, cfg.prune_fraction, cfg.regen_fraction).prune_epochs
        if epoch < n:
            return cfg.lr
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - n) / (cfg.epochs - n)))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def prune(
    model: SpikingNet,
    cfg: PruneConfig,
    reporter: Reporter | None = None,
    resume_path: str | Path | None = None,
    resume: bool = False,
    base_digest: str = "",
    on_epoch: Callable[[int, SpikingNet], None] | None = None,
    unit_cost: UnitCost | None = None,
) -> tuple[SpikingNet, dict]:
    """Prune ``model`` in place per ``cfg``. Returns ``(model, report)``.

    ``resume_path``: where the per-epoch checkpoint is written (rank 0 only); with ``resume`` the
    run continues from it when it exists. ``base_digest`` identifies the input model (refuses a
    checkpoint of another model). ``on_epoch(epoch, model)`` is called after each epoch's prune
    event (1-based). ``unit_cost``: the deployed cost of each unit for ``objective="cores"``
    (:data:`snnc.prune.costs.UnitCost`; ``snnc prune`` passes the Loihi 2 core mapper's).
    """
    method = validate(cfg, model, unit_cost)
    reporter = reporter or Reporter(False)
    rank, _ = rank_and_world()
    resume_path = Path(resume_path) if resume_path else None
    run = _set_up(model, cfg, method, resume_path if resume else None, base_digest)
    run.unit_cost = unit_cost
    for epoch in range(run.progress.epoch, cfg.epochs):
        if run.sched.is_prune_epoch(epoch) and cfg.sparsity > 0:
            done, log, scoring_seconds = _prune_epoch(run, epoch, reporter)
        else:
            done, log, scoring_seconds = _fine_tune_epoch(run, epoch, reporter), {}, 0.0
        _record_epoch(run, epoch, done, log, scoring_seconds)
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
        if rank == 0 and resume_path is not None:
            save_resume(resume_path, cfg, base_digest, model, run.opt, run.training, run.progress)
    return model, _final_report(run)


def validate(cfg: PruneConfig, model: SpikingNet, unit_cost: UnitCost | None = None) -> PruningMethod:
    """One-line errors for settings the run cannot go with; returns the method object."""
    method = METHODS.get(cfg.method)
    if cfg.allocation is not None and cfg.allocation not in ALLOCATIONS:
        raise UsageError(f"unknown --allocation {cfg.allocation!r}; choose {' or '.join(ALLOCATIONS)}")
    if cfg.objective not in OBJECTIVES:
        raise UsageError(f"unknown --objective {cfg.objective!r}; choose {', '.join(OBJECTIVES)}")
    if cfg.score_compare not in COMPARABLE:
        raise UsageError(f"unknown score_compare {cfg.score_compare!r}; choose {' or '.join(COMPARABLE)}")
    own_rule = getattr(method, "allocation_default", None) is None
    if own_rule and (cfg.allocation is not None or cfg.objective != "accuracy"):
        raise UsageError(
            f"method {cfg.method!r} allocates its pruning by its own rule; drop --allocation and "
            "--objective, or use a channel method (sca, criticality, l1, random)"
        )
    if cfg.objective == "cores" and unit_cost is None:
        raise UsageError("--objective cores needs the compiler's neurocore model; run it through snnc prune")
    if not (0.0 <= cfg.regen_fraction <= 1.0):
        raise UsageError(f"--regen must be in [0, 1], got {cfg.regen_fraction}")
    if not (0.0 <= cfg.sparsity < 1.0) or math.isnan(cfg.sparsity):
        raise UsageError(f"--sparsity must be in [0, 1), got {cfg.sparsity}")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {cfg.epochs}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown --lr-schedule {cfg.lr_schedule!r}; choose {' or '.join(LR_SCHEDULES)}")
    if not (0.0 <= cfg.distill_weight <= 1.0):
        raise UsageError(f"--distill must be in [0, 1], got {cfg.distill}")
    if cfg.distill_temperature <= 0:
        raise UsageError(f"distill_temperature must be > 0, got {cfg.distill_temperature}")
    method.check(model)
    if tuple(model.input_shape) != tuple(D.load(cfg.dataset).input_shape):
        raise UsageError(
            f"model input shape {tuple(model.input_shape)} does not match dataset "
            f"{cfg.dataset!r} {D.load(cfg.dataset).input_shape}; pass the dataset the "
            "model was trained on"
        )
    return method


# -- set-up and resume -----------------------------------------------------------------------------
def _load_data(cfg: PruneConfig) -> _Splits:
    ds = D.load(cfg.dataset)
    x, y = ds.train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    xv, yv = ds.val if cfg.val_limit is None else (ds.val[0][: cfg.val_limit], ds.val[1][: cfg.val_limit])
    xt, yt = (
        ds.test if cfg.test_limit is None else (ds.test[0][: cfg.test_limit], ds.test[1][: cfg.test_limit])
    )
    return _Splits(x, y, xv, yv, xt, yt)


def _set_up(
    model: SpikingNet,
    cfg: PruneConfig,
    method: PruningMethod,
    resume_from: Path | None,
    base_digest: str,
) -> _Run:
    """Data, schedule, optimizers and teacher; then the state of ``resume_from`` when that file
    exists, else the input model's accuracy and SynOps (``progress.before``)."""
    rank, world = rank_and_world()
    data = _load_data(cfg)
    sched = Schedule(cfg.epochs, cfg.sparsity, cfg.prune_fraction, cfg.regen_fraction)
    torch.manual_seed(cfg.seed)  # before the method's own state is initialised (the switcher's)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    training = method.start(model, cfg)
    # The teacher is the unpruned input model, copied before a resume checkpoint overwrites it.
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if cfg.distill_weight > 0 else None
    n_batches = math.ceil(len(data.x) / cfg.batch_size)
    run = _Run(
        cfg=cfg,
        method=method,
        model=model,
        data=data,
        sched=sched,
        opt=opt,
        training=training,
        teacher=teacher,
        progress=Progress(),
        resumed=False,
        batches=list(range(rank, n_batches - n_batches % world, world)),
        world=world,
    )
    if resume_from is not None and resume_from.exists():
        _resume(run, resume_from, base_digest)
    else:
        run.progress.before = _measure_before(run)
    M.apply_masks(model)
    return run


def _resume(run: _Run, path: Path, base_digest: str) -> None:
    """Model, optimizers, the method's own state, RNG state and progress from the checkpoint."""
    tensors, header = load_resume(path, run.cfg, base_digest)
    run.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer("opt", run.opt, tensors, header["opt"])
    if run.training is not None:
        run.training.load_state(tensors, header)
    torch.set_rng_state(tensors["rng.torch"])
    run.progress = Progress.from_header(header)
    run.resumed = True


def _measure_before(run: _Run) -> dict:
    """Test accuracy, SynOps and channel/connection counts of the input model."""
    cfg, model = run.cfg, run.model
    return {
        "accuracy": evaluate(model, run.data.x_test, run.data.y_test, cfg.steps, cfg.encoding, seed=cfg.seed),
        "synops": measure(model, run.data.x_test[:512], cfg.steps, cfg.encoding, seed=cfg.seed),
        "channels": M.channel_counts(model),
        "connections": M.connection_counts(model),
    }


# -- epochs ----------------------------------------------------------------------------------------
def _prune_epoch(run: _Run, epoch: int, reporter: Reporter) -> tuple[_Pass, dict, float]:
    """Train one epoch while the method records its window (and trains itself), then let it score,
    regenerate and prune to the schedule's target. Returns (pass, event log, scoring seconds)."""
    cfg, method, model = run.cfg, run.method, run.model
    regen = run.sched.regen(epoch)
    blocks = method.targets(model)
    stats = method.records(regen > 0)
    monitor = ActivityMonitor(blocks, stats) if stats else None
    done = _train_pass(run, epoch, reporter, monitor, run.training)
    t0 = time.perf_counter()
    if monitor is not None:
        monitor.all_reduce()
    event = PruneEvent(
        model,
        blocks,
        monitor,
        cfg,
        epoch,
        run.sched.target(epoch),
        regen,
        run.training,
        cost=_unit_cost(run, blocks, epoch),
        allocation=cfg.allocation_used,
    )
    with torch.no_grad():
        log = {"target": event.target, "regenerated": 0, **method.prune(event)}
        M.apply_masks(model)
    M.mask_optimizer_state(model, run.opt)
    scoring_seconds = (monitor.seconds if monitor is not None else 0.0) + time.perf_counter() - t0
    return done, log, scoring_seconds


COST_SAMPLES = 256  # training images the SynOps cost of a unit is measured on


def _unit_cost(run: _Run, blocks: dict, epoch: int) -> dict | None:
    """Per-unit deployed cost for a cost objective (None for ``accuracy``): SynOps per sample on
    the first :data:`COST_SAMPLES` training images (encoding seeded by ``(seed, 13, epoch)``), or
    the caller's ``unit_cost`` (neurocores)."""
    cfg = run.cfg
    if cfg.objective == "synops":
        seed = int(seeded_generator(cfg.seed, 13, epoch).initial_seed()) % (2**31)
        return channel_synops(run.model, blocks, run.data.x[:COST_SAMPLES], cfg.steps, cfg.encoding, seed)
    if cfg.objective == "cores" and run.unit_cost is not None:
        return run.unit_cost(run.model, blocks)
    return None


def _fine_tune_epoch(run: _Run, epoch: int, reporter: Reporter) -> _Pass:
    """Train one epoch with the masks fixed."""
    return _train_pass(run, epoch, reporter)


def _train_pass(
    run: _Run,
    epoch: int,
    reporter: Reporter,
    monitor: ActivityMonitor | None = None,
    training: MethodTraining | None = None,
) -> _Pass:
    """One pass over this rank's shard at :func:`lr_at`; ``monitor`` watches the last ``window``
    task-net batches; ``training`` may take batches for the method's own step. BN running
    statistics are averaged over ranks at the end."""
    cfg, model, opt = run.cfg, run.model, run.opt
    for g in opt.param_groups:
        g["lr"] = lr_at(cfg, epoch)
    distill = cfg.distill_weight
    x, y = run.data.x, run.data.y
    order = torch.randperm(len(x), generator=seeded_generator(cfg.seed, 1, epoch))
    t_epoch = time.perf_counter()
    loss_sum = correct = seen = 0
    window_start = max(0, len(run.batches) - cfg.window)
    watching = False
    with reporter.task(len(run.batches), f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}") as advance:
        for bi, b in enumerate(run.batches):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].numpy()
            spikes = D.encode(
                torch.from_numpy(x[idx]),
                cfg.steps,
                cfg.encoding,
                generator=seeded_generator(cfg.seed, 2, epoch, b),
            )
            yb = torch.from_numpy(y[idx])
            if training is not None and training.step(bi, spikes, yb):
                advance(1)
                continue
            if monitor is not None and bi >= window_start and not watching:
                monitor.start()
                watching = True
            loss, counts = train_step(model, opt, spikes, yb, run.teacher, distill, cfg.distill_temperature)
            loss_sum += float(loss) * len(yb)
            correct += int((counts.argmax(1) == yb).sum())
            seen += len(yb)
            advance(1, loss=float(loss), acc=correct / max(seen, 1))
    if monitor is not None:
        monitor.stop()
    all_reduce_mean([b for n, b in model.named_buffers() if "running_" in n])
    seconds = time.perf_counter() - t_epoch - (monitor.seconds if monitor is not None else 0.0)
    return _Pass(loss_sum / max(seen, 1), correct / max(seen, 1), seconds)


def _record_epoch(run: _Run, epoch: int, done: _Pass, log: dict, scoring_seconds: float) -> None:
    """Validate and append the epoch to ``progress.history``."""
    cfg, model, progress = run.cfg, run.model, run.progress
    progress.scoring_seconds += scoring_seconds
    progress.train_seconds += done.seconds
    progress.regenerated_total += log.get("regenerated", 0)
    kept, total = M.channel_counts(model)
    ckept, ctotal = M.connection_counts(model)
    val = evaluate(model, run.data.x_val, run.data.y_val, cfg.steps, cfg.encoding, seed=cfg.seed)
    progress.history.append(
        {
            "epoch": epoch + 1,
            "lr": lr_at(cfg, epoch),
            "loss": done.loss,
            "train_acc": done.accuracy,
            "val_acc": val,
            "channel_sparsity": 1 - kept / total if total else 0.0,
            "connection_sparsity": 1 - ckept / ctotal if ctotal else 0.0,
            "target": log.get("target"),
            "regenerated": log.get("regenerated", 0),
            "regen_budget": log.get("regen_budget"),
            "revived": log.get("revived", []),
            "train_seconds": done.seconds,
            "scoring_seconds": scoring_seconds,
            "channels_kept": {k: int(b.channel_mask.sum()) for k, b in M.channel_targets(model)},
            # The method's own entries of the event log (e.g. criticality's regeneration survival).
            "method_log": {k: v for k, v in log.items() if k not in _SHARED_LOG_KEYS},
        }
    )
    progress.epoch = epoch + 1


_SHARED_LOG_KEYS = ("target", "regenerated", "regen_budget", "revived")


# -- report ----------------------------------------------------------------------------------------
def _final_report(run: _Run) -> dict:
    """Check that all ranks agree, measure the pruned model on the test set, build the report."""
    cfg, model = run.cfg, run.model
    model.eval()
    digests = rank_digests(model)
    if len(set(digests)) != 1:
        raise SnncError(
            "ranks ended with different masks or weights; this is a bug in the distributed "
            "pruning loop, rerun without torchrun"
        )
    acc = evaluate(model, run.data.x_test, run.data.y_test, cfg.steps, cfg.encoding, seed=cfg.seed)
    after_ops = measure(model, run.data.x_test[:512], cfg.steps, cfg.encoding, seed=cfg.seed)
    return prune_report(
        cfg, run.method.unit, model, run.progress, acc, after_ops, run.resumed, run.world, digests
    )


# -- one step --------------------------------------------------------------------------------------
def distill_loss(
    counts: torch.Tensor,
    teacher_counts: torch.Tensor,
    labels: torch.Tensor,
    weight: float,
    temperature: float,
) -> torch.Tensor:
    """Knowledge distillation (Hinton, Vinyals, Dean 2015, arXiv:1503.02531, sec. 2) on output
    spike counts ``(N, classes)``::

        (1 - a) CE(counts, labels) + a T^2 KL(softmax(teacher / T) || softmax(counts / T))

    ``a = weight``, ``T = temperature``; ``T^2`` keeps the soft term's gradient on the scale of the
    hard term's."""
    ce = F.cross_entropy(counts, labels)
    if weight <= 0:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(counts / t, 1),
        F.log_softmax(teacher_counts / t, 1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * ce + weight * t * t * kl


def train_step(
    model: SpikingNet,
    opt: torch.optim.Optimizer,
    spikes: torch.Tensor,
    labels: torch.Tensor,
    teacher: SpikingNet | None = None,
    distill: float = 0.0,
    temperature: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One masked optimizer step on spikes ``(N, *input_shape, T)``: gradients averaged over ranks,
    pruned parameters' gradients and moments zeroed, pruned connections held at 0. With a
    ``teacher`` (the frozen unpruned net), the loss is :func:`distill_loss` with weight
    ``distill``. Returns (loss, output spike counts ``(N, classes)``)."""
    counts = model(spikes).sum(-1)
    if teacher is not None and distill > 0:
        with torch.no_grad():
            teacher_counts = teacher(spikes).sum(-1)
        loss = distill_loss(counts, teacher_counts, labels, distill, temperature)
    else:
        loss = F.cross_entropy(counts, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    all_reduce_mean([p.grad for p in model.parameters() if p.grad is not None])
    M.mask_gradients(model)
    opt.step()
    M.mask_optimizer_state(model, opt)
    M.apply_masks(model)
    return loss.detach(), counts.detach()
