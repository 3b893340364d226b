"""The pruning trainer shared by every method: train, score, prune, regenerate, repeat, fine-tune.

One epoch = one pass over the (sharded) training set with Adam and surrogate gradients (as
:mod:`snnc.train`), gradients and optimizer moments of pruned parameters masked at every step
(:mod:`snnc.prune.masks`). During the last ``window`` batches of each prune epoch an
:class:`~snnc.prune.monitors.ActivityMonitor` gathers the method's statistics; at the end of the
epoch the method scores units, regenerates and prunes to the schedule's target
(:mod:`snnc.prune.schedule`).

Determinism: the batch order of epoch ``e`` and the spike encoding of batch ``b`` come from
generators seeded by ``(seed, e, b)``, so a run resumed from the per-epoch checkpoint repeats the
uninterrupted run exactly, and under ``torchrun`` every rank sees its own shard of the same
permutation. Gradients, BN statistics and scores are all-reduced, so all ranks hold identical
weights and masks.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from snnc import checkpoint
from snnc import data as D
from snnc.errors import SnncError, UsageError
from snnc.nn.blocks import Conv, Dense
from snnc.nn.zoo import SpikingNet
from snnc.prune import CHANNEL_METHODS, METHODS
from snnc.prune import masks as M
from snnc.prune import scores as S
from snnc.prune.monitors import ActivityMonitor
from snnc.prune.schedule import Schedule
from snnc.prune.switcher import Switcher, straight_through, switcher_masks
from snnc.prune.synops import measure
from snnc.train import evaluate
from snnc.ui import Reporter

RESUME_FORMAT = "snnc-prune-resume"
# Measured on digits for sca and criticality (docs/methods.md, "Measured"). Relief and switcher are
# not measured with it; on switcher it raised the conv layers' SynOps more than FC pruning saved.
DISTILL_DEFAULT = 0.9
LR_SCHEDULES = ("cosine", "rewind")


@dataclass(frozen=True)
class PruneConfig:
    """Settings of one pruning run (the CLI packs its options into this).

    ``sparsity``: fraction of conv channels removed (sca, criticality, l1, random) or of connections
    removed (relief: conv + dense weights; switcher: dense weights). ``window``: batches per scoring
    window. ``val_limit``/``test_limit``: evaluate on the first N samples (None = all).
    ``distill``: weight of knowledge distillation from the frozen unpruned model at temperature
    ``distill_temperature`` (:func:`distill_loss`; 0 = cross-entropy only); None = the method's
    default, :data:`DISTILL_DEFAULT` for channel methods, 0 for relief and switcher.
    ``lr_schedule``: ``cosine`` or ``rewind`` (:func:`_lr`).
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
    lr_schedule: str = "cosine"
    val_limit: int | None = 1000
    test_limit: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def distill_weight(self) -> float:
        if self.distill is not None:
            return self.distill
        return DISTILL_DEFAULT if self.method in CHANNEL_METHODS else 0.0


def validate(cfg: PruneConfig, model: SpikingNet) -> None:
    """One-line errors for settings the method cannot run with."""
    if cfg.method not in METHODS:
        raise UsageError(f"unknown pruning method {cfg.method!r}; choose one of {', '.join(METHODS)}")
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
    if cfg.method in CHANNEL_METHODS and not M.channel_targets(model):
        raise UsageError(
            f"method {cfg.method!r} prunes conv channels but the model "
            f"({model.arch['name']}) has no conv layers; use --method relief or switcher"
        )
    if cfg.method == "switcher" and not M.connection_targets(model, (Dense,)):
        raise UsageError("method 'switcher' prunes FC connections but the model has no dense layers")
    if tuple(model.input_shape) != tuple(D.load(cfg.dataset).input_shape):
        raise UsageError(
            f"model input shape {tuple(model.input_shape)} does not match dataset "
            f"{cfg.dataset!r} {D.load(cfg.dataset).input_shape}; pass the dataset the "
            "model was trained on"
        )


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_mean(tensors) -> None:
    import torch.distributed as dist

    rank, world = _dist()
    if world == 1:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(world)


def _gen(*keys: int) -> torch.Generator:
    g = torch.Generator()
    h = 0
    for k in keys:
        h = (h * 1_000_003 + int(k) + 1) % (2**62)
    g.manual_seed(h)
    return g


class _State:
    """Everything that changes between epochs besides the model and optimizers."""

    def __init__(self) -> None:
        self.epoch = 0
        self.history: list[dict] = []
        self.scoring_seconds = 0.0
        self.train_seconds = 0.0
        self.before: dict = {}
        self.regenerated_total = 0


# -- the method-specific step at the end of a prune epoch ------------------------------------------
def _monitor_stats(method: str, regen: bool) -> tuple[str, ...]:
    if method == "sca":
        return ("rate", "vabs", "grad")
    if method == "criticality":
        return ("crit", "shadow") if regen else ("crit",)
    if method == "relief":
        return ("relief",)
    return ()


def _monitored_blocks(method: str, model: SpikingNet) -> dict:
    if method in ("sca", "criticality"):
        return dict(M.channel_targets(model))
    if method == "relief":
        return dict(M.connection_targets(model))
    return {}


@torch.no_grad()
def _prune_event(
    cfg: PruneConfig,
    model: SpikingNet,
    mon: ActivityMonitor | None,
    epoch: int,
    sched: Schedule,
    switcher: Switcher | None,
) -> dict:
    """Score, regenerate and prune to the schedule's target after epoch ``epoch``. Returns a log."""
    target = sched.target(epoch)
    log: dict = {"target": target, "regenerated": 0}
    if cfg.method in CHANNEL_METHODS:
        blocks = dict(M.channel_targets(model))
        total = sum(b.out_channels for b in blocks.values())
        current = {k: b.channel_mask for k, b in blocks.items()}
        n_pruned = int(round(target * total))
        regrow = None
        if cfg.method == "sca":
            score, regrow = S.sca_scores(mon)
        elif cfg.method == "criticality":
            score, regrow = S.criticality_scores(mon)
        elif cfg.method == "l1":
            score = S.l1_scores(blocks)
        else:
            score = S.random_scores(blocks, _gen(cfg.seed, 7, epoch))
        floor = {k: max(1, math.ceil(cfg.min_keep_fraction * b.out_channels)) for k, b in blocks.items()}
        new, revived = S.select_channels_per_layer(
            current, score, n_pruned, regrow, sched.regen(epoch) if regrow else 0.0, floor
        )
        for k, b in blocks.items():
            b.channel_mask.copy_(new[k])
        log["regenerated"] = len(revived)
        log["revived"] = [[k, i] for k, i in revived]
    elif cfg.method == "relief":
        blocks = dict(M.connection_targets(model))
        total = sum(b.weight.numel() for b in blocks.values())
        keys = {}
        for k, b in blocks.items():
            shares = S.relief_shares(
                mon.sums[k]["relief"],
                float(mon.sums[k]["relief_samples"]),
                S.relief_bias(b),
                mon.out_hw.get(k, 1) if isinstance(b, Conv) else 1,
            )
            keys[k] = S.relief_keys(shares, cfg.alpha_conv if isinstance(b, Conv) else cfg.alpha_fc)
        new = S.select_connections(blocks, keys, int(round(target * total)))
        for k, b in blocks.items():
            b.weight_mask.copy_(new[k])
        log["orphans_removed"] = M.remove_orphans(model)
    else:  # switcher
        blocks = dict(M.connection_targets(model, (Dense,)))
        total = sum(b.weight.numel() for b in blocks.values())
        new = switcher_masks(switcher, blocks, int(round(target * total)))
        for k, b in blocks.items():
            before = b.weight_mask.clone()
            b.weight_mask.copy_(new[k])
            log["regenerated"] += int(((before == 0) & (new[k] > 0)).sum())
    M.apply_masks(model)
    return log


# -- resume checkpoints ----------------------------------------------------------------------------
def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = val.reshape(-1) if val.dim() == 0 else val
                if val.dim() == 0:
                    scalars[f"{idx}.{key}"] = True
            else:
                scalars[f"{idx}.{key}"] = val
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def _load_opt(prefix: str, opt: torch.optim.Optimizer, tensors: dict, info: dict) -> None:
    state: dict = {}
    for name, t in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        idx, key = name[len(prefix) + 1 :].split(".", 1)
        zero_dim = info["scalars"].get(f"{idx}.{key}") is True
        state.setdefault(int(idx), {})[key] = t.reshape(()) if zero_dim else t
    for ik, val in info["scalars"].items():
        if val is not True:
            idx, key = ik.split(".", 1)
            state.setdefault(int(idx), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_resume(
    path: Path,
    cfg: PruneConfig,
    base_digest: str,
    model: SpikingNet,
    opt: torch.optim.Optimizer,
    switcher: Switcher | None,
    sw_opt: torch.optim.Optimizer | None,
    st: _State,
) -> None:
    """Write the per-epoch resume checkpoint (safetensors + JSON header), atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    ot, oinfo = _opt_tensors("opt", opt)
    tensors.update(ot)
    header = {
        "format": RESUME_FORMAT,
        "version": 1,
        "config": cfg.to_dict(),
        "base": base_digest,
        "epoch": st.epoch,
        "history": st.history,
        "scoring_seconds": st.scoring_seconds,
        "train_seconds": st.train_seconds,
        "before": st.before,
        "regenerated_total": st.regenerated_total,
        "opt": oinfo,
    }
    if switcher is not None:
        tensors.update({f"switcher.{k}": v for k, v in switcher.state_dict().items()})
        st_t, sinfo = _opt_tensors("swopt", sw_opt)
        tensors.update(st_t)
        header["swopt"] = sinfo
    tensors["rng.torch"] = torch.get_rng_state()
    checkpoint.save_tensors(path, tensors, header)


def load_resume(path: Path, cfg: PruneConfig, base_digest: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {}).get("snnc", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise SnncError(
            f"{path}: resume checkpoint is corrupt ({type(e).__name__}); delete it and "
            "rerun without --resume"
        ) from None
    if header.get("format") != RESUME_FORMAT or header.get("sha256") != checkpoint.tensor_digest(tensors):
        raise SnncError(f"{path}: not a valid prune resume checkpoint; delete it and rerun")
    if header.get("config") != json.loads(json.dumps(cfg.to_dict())) or header.get("base") != base_digest:
        raise UsageError(
            f"{path}: checkpoint was written with other settings or another model; "
            "rerun with the same options, or delete it to start over"
        )
    return tensors, header


# -- the loop --------------------------------------------------------------------------------------
def _lr(cfg: PruneConfig, epoch: int) -> float:
    """``cosine``: one cosine decay over all epochs. ``rewind``: the full rate while the schedule
    prunes, then a cosine decay restarted over the fine-tuning epochs (learning-rate rewinding,
    Renda, Frankle, Carbin, arXiv:2003.02389)."""
    if cfg.lr_schedule == "rewind":
        n = Schedule(cfg.epochs, cfg.sparsity, cfg.prune_fraction, cfg.regen_fraction).prune_epochs
        if epoch < n:
            return cfg.lr
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - n) / (cfg.epochs - n)))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def _layer_report(model: SpikingNet, before: dict, after: dict) -> list[dict]:
    rows = []
    chan = {id(b) for _, b in M.channel_targets(model)}
    for name, b in M.connection_targets(model):
        em = M.effective_weight_mask(b)
        rows.append(
            {
                "layer": name,
                "kind": b.kind,
                "channels_kept": int(b.channel_mask.sum()),
                "channels": b.out_channels,
                "channel_pruned_by_method": id(b) in chan,
                "connections_kept": int(em.sum()),
                "connections": b.weight.numel(),
                "spike_rate_before": before["layers"].get(name, {}).get("spike_rate"),
                "spike_rate_after": after["layers"].get(name, {}).get("spike_rate"),
                "synops_before": before["layers"].get(name, {}).get("synops"),
                "synops_after": after["layers"].get(name, {}).get("synops"),
            }
        )
    return rows


def prune(
    model: SpikingNet,
    cfg: PruneConfig,
    reporter: Reporter | None = None,
    resume_path: str | Path | None = None,
    resume: bool = False,
    base_digest: str = "",
    on_epoch: Callable[[int, SpikingNet], None] | None = None,
) -> tuple[SpikingNet, dict]:
    """Prune ``model`` in place per ``cfg``. Returns ``(model, report)``.

    ``resume_path``: where the per-epoch checkpoint is written (rank 0 only); with ``resume`` the
    run continues from it when it exists. ``base_digest`` identifies the input model (refuses a
    checkpoint of another model). ``on_epoch(epoch, model)`` is called after each epoch's prune
    event (1-based).
    """
    validate(cfg, model)
    reporter = reporter or Reporter(False)
    rank, world = _dist()
    ds = D.load(cfg.dataset)
    x, y = ds.train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    xv, yv = ds.val if cfg.val_limit is None else (ds.val[0][: cfg.val_limit], ds.val[1][: cfg.val_limit])
    xt, yt = (
        ds.test if cfg.test_limit is None else (ds.test[0][: cfg.test_limit], ds.test[1][: cfg.test_limit])
    )
    sched = Schedule(cfg.epochs, cfg.sparsity, cfg.prune_fraction, cfg.regen_fraction)
    torch.manual_seed(cfg.seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    switcher = sw_opt = None
    fc = dict(M.connection_targets(model, (Dense,)))
    if cfg.method == "switcher":
        switcher = Switcher()
        sw_opt = torch.optim.SGD(switcher.parameters(), lr=cfg.switcher_lr, momentum=0.9)
    # The teacher is the unpruned input model, copied before a resume checkpoint overwrites it.
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if cfg.distill_weight > 0 else None
    st = _State()
    resume_path = Path(resume_path) if resume_path else None
    resumed = False
    if resume and resume_path is not None and resume_path.exists():
        tensors, header = load_resume(resume_path, cfg, base_digest)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_opt("opt", opt, tensors, header["opt"])
        if switcher is not None:
            switcher.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("switcher.")})
            _load_opt("swopt", sw_opt, tensors, header["swopt"])
        torch.set_rng_state(tensors["rng.torch"])
        st.epoch, st.history = header["epoch"], header["history"]
        st.scoring_seconds, st.train_seconds = header["scoring_seconds"], header["train_seconds"]
        st.before, st.regenerated_total = header["before"], header["regenerated_total"]
        resumed = True
    else:
        acc = evaluate(model, xt, yt, cfg.steps, cfg.encoding, seed=cfg.seed)
        ops = measure(model, xt[:512], cfg.steps, cfg.encoding, seed=cfg.seed)
        st.before = {
            "accuracy": acc,
            "synops": ops,
            "channels": M.channel_counts(model),
            "connections": M.connection_counts(model),
        }
    M.apply_masks(model)

    n_batches = math.ceil(len(x) / cfg.batch_size)
    mine = list(range(rank, n_batches - n_batches % world, world))
    for epoch in range(st.epoch, cfg.epochs):
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, epoch)
        prune_now = sched.is_prune_epoch(epoch) and cfg.sparsity > 0
        stats = _monitor_stats(cfg.method, sched.regen(epoch) > 0) if prune_now else ()
        mon = ActivityMonitor(_monitored_blocks(cfg.method, model), stats) if stats else None
        order = torch.randperm(len(x), generator=_gen(cfg.seed, 1, epoch))
        t_epoch = time.perf_counter()
        loss_sum = correct = seen = 0
        window_start = max(0, len(mine) - cfg.window)
        with reporter.task(len(mine), f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}") as advance:
            for bi, b in enumerate(mine):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].numpy()
                spikes = D.encode(
                    torch.from_numpy(x[idx]),
                    cfg.steps,
                    cfg.encoding,
                    generator=_gen(cfg.seed, 2, epoch, b),
                )
                yb = torch.from_numpy(y[idx])
                if switcher is not None and prune_now and bi % 2 == 1:
                    _switcher_step(cfg, model, switcher, sw_opt, fc, spikes, yb)
                    advance(1)
                    continue
                if mon is not None and bi == window_start:
                    mon.start()
                loss, counts = train_step(
                    model, opt, spikes, yb, teacher, cfg.distill_weight, cfg.distill_temperature
                )
                loss_sum += float(loss) * len(yb)
                correct += int((counts.argmax(1) == yb).sum())
                seen += len(yb)
                advance(1, loss=float(loss), acc=correct / max(seen, 1))
        if mon is not None:
            mon.stop()
        _all_reduce_mean([b for n, b in model.named_buffers() if "running_" in n])
        train_time = time.perf_counter() - t_epoch - (mon.seconds if mon else 0.0)
        log: dict = {}
        score_time = mon.seconds if mon else 0.0
        if prune_now:
            t0 = time.perf_counter()
            if mon is not None:
                mon.all_reduce()
            log = _prune_event(cfg, model, mon, epoch, sched, switcher)
            M.mask_optimizer_state(model, opt)
            score_time += time.perf_counter() - t0
        st.scoring_seconds += score_time
        st.train_seconds += train_time
        st.regenerated_total += log.get("regenerated", 0)
        kept, total = M.channel_counts(model)
        ckept, ctotal = M.connection_counts(model)
        val = evaluate(model, xv, yv, cfg.steps, cfg.encoding, seed=cfg.seed)
        st.history.append(
            {
                "epoch": epoch + 1,
                "lr": _lr(cfg, epoch),
                "loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "val_acc": val,
                "channel_sparsity": 1 - kept / total if total else 0.0,
                "connection_sparsity": 1 - ckept / ctotal if ctotal else 0.0,
                "target": log.get("target"),
                "regenerated": log.get("regenerated", 0),
                "revived": log.get("revived", []),
                "train_seconds": train_time,
                "scoring_seconds": score_time,
                "channels_kept": {k: int(b.channel_mask.sum()) for k, b in M.channel_targets(model)},
            }
        )
        st.epoch = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
        if rank == 0 and resume_path is not None:
            save_resume(resume_path, cfg, base_digest, model, opt, switcher, sw_opt, st)

    model.eval()
    digests = _rank_digests(model)
    if len(set(digests)) != 1:
        raise SnncError(
            "ranks ended with different masks or weights; this is a bug in the distributed "
            "pruning loop, rerun without torchrun"
        )
    acc = evaluate(model, xt, yt, cfg.steps, cfg.encoding, seed=cfg.seed)
    after_ops = measure(model, xt[:512], cfg.steps, cfg.encoding, seed=cfg.seed)
    kept, total = M.channel_counts(model)
    ckept, ctotal = M.connection_counts(model)
    fkept, ftotal = M.connection_counts(model, (Dense,))
    before_ops = st.before["synops"]
    report = {
        "method": cfg.method,
        "target_sparsity": cfg.sparsity,
        "sparsity_unit": "conv channels"
        if cfg.method in CHANNEL_METHODS
        else ("conv+dense connections" if cfg.method == "relief" else "dense connections"),
        "channel_sparsity": 1 - kept / total if total else 0.0,
        "connection_sparsity": 1 - ckept / ctotal if ctotal else 0.0,
        "fc_connection_sparsity": 1 - fkept / ftotal if ftotal else 0.0,
        "channels": {"kept": kept, "total": total},
        "connections": {"kept": ckept, "total": ctotal},
        "accuracy_before": st.before["accuracy"],
        "accuracy_after": acc,
        "synops_before": before_ops["total"],
        "synops_after": after_ops["total"],
        "synops_reduction": before_ops["total"] / after_ops["total"] if after_ops["total"] else None,
        "params_before": st.before["connections"][0],
        "params_after": ckept,
        "scoring_seconds": st.scoring_seconds,
        "train_seconds": st.train_seconds,
        "scoring_overhead": st.scoring_seconds / st.train_seconds if st.train_seconds else None,
        "regenerated_total": st.regenerated_total,
        "distill_weight": cfg.distill_weight,
        "resumed": resumed,
        "world_size": world,
        "rank_digests": digests,
        "layers": _layer_report(model, before_ops, after_ops),
        "activity": {
            "before": {k: v.get("channel_rates") for k, v in before_ops["layers"].items()},
            "after": {k: v.get("channel_rates") for k, v in after_ops["layers"].items()},
        },
        "history": st.history,
        "config": cfg.to_dict(),
    }
    report["summary"] = {
        "method": cfg.method,
        "channels_kept": kept,
        "channels_total": total,
        "channel_sparsity": report["channel_sparsity"],
        "connection_sparsity": report["connection_sparsity"],
        "accuracy_before": report["accuracy_before"],
        "accuracy_after": acc,
        "synops_before": report["synops_before"],
        "synops_after": report["synops_after"],
        "synops_reduction": report["synops_reduction"],
        "scoring_seconds": st.scoring_seconds,
    }
    return model, report


def _rank_digests(model: SpikingNet) -> list[str]:
    """SHA-256 of the model's masks and weights on every rank (gathered), to prove they agree."""
    import hashlib

    import torch.distributed as dist

    digest = checkpoint.tensor_digest(model.state_dict())
    rank, world = _dist()
    if world == 1:
        return [digest]
    mine = torch.tensor(list(hashlib.sha256(digest.encode()).digest()), dtype=torch.uint8)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    return [bytes(g.tolist()).hex() for g in gathered]


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
    _all_reduce_mean([p.grad for p in model.parameters() if p.grad is not None])
    M.mask_gradients(model)
    opt.step()
    M.mask_optimizer_state(model, opt)
    M.apply_masks(model)
    return loss.detach(), counts.detach()


def _switcher_step(
    cfg: PruneConfig,
    model: SpikingNet,
    switcher: Switcher,
    sw_opt: torch.optim.Optimizer,
    fc: dict,
    spikes: torch.Tensor,
    yb: torch.Tensor,
) -> None:
    """One SGD step of the switcher on ``task loss + lambda * mean switch``; the task net is
    fixed."""
    saved = {k: b.weight_mask for k, b in fc.items()}
    probs = []
    try:
        for b in fc.values():
            p = switcher(b.weight)
            probs.append(p.flatten())
            # The switch replaces the mask for this step (a buffer may hold a non-leaf tensor).
            b.weight_mask = straight_through(p)
        counts = model(spikes).sum(-1)
        loss = F.cross_entropy(counts, yb) + cfg.switcher_lambda * torch.cat(probs).mean()
        sw_opt.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        for k, b in fc.items():
            b.weight_mask = saved[k]
    for p in model.parameters():
        p.grad = None
    _all_reduce_mean([p.grad for p in switcher.parameters() if p.grad is not None])
    sw_opt.step()


def model_digest(path: str | Path) -> str:
    tensors, _ = checkpoint.read_tensors(path)
    return checkpoint.tensor_digest(tensors)


def with_data_defaults(cfg: PruneConfig, header: dict, **given) -> PruneConfig:
    """Fill dataset/steps/encoding from the model file's ``data`` settings unless given."""
    data = header.get("data", {}) or {}
    fields = {
        k: given[k] if given.get(k) is not None else data.get(k, getattr(cfg, k))
        for k in ("dataset", "steps", "encoding")
    }
    return replace(cfg, **fields)
