"""``snnc prune MODEL --method NAME --sparsity F -o pruned.pt``: prune with regeneration.

Steps of :func:`run_prune`: check the options, read the model, settle the :class:`PruneConfig`
(the model file's data settings fill what is not given), join the process group under ``torchrun``,
run :func:`snnc.prune.trainer.prune`, then on rank 0 write the pruned model, the plots and the
JSON report (each atomically; the per-epoch resume checkpoint is removed once they are written).
The methods are those of ``snnc.prune.methods.registry.METHODS``.

The compiler's resource model enters here, because ``snnc.prune`` may not import the targets:
:func:`layer_cores` compiles a model for Loihi 2 and reads the neurocores each layer takes (the
report's ``neurocores_before``/``neurocores_after``), and :func:`neurocore_cost` turns that into the
per-channel cost of ``--objective cores`` (:data:`snnc.prune.costs.UnitCost`) that the trainer
calls at every prune event.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from snnc.commands import Outcome, Table
from snnc.errors import UsageError

if TYPE_CHECKING:
    from snnc.prune.costs import UnitCost
    from snnc.prune.trainer import PruneConfig
    from snnc.ui import Reporter

DATASETS = ("digits", "mnist")  # or a PATH.npz (snnc.data.check_name)
# The report's entries repeated in the pruned model file's header (meta.prune.report).
SUMMARY_KEYS = (
    "method",
    "target_sparsity",
    "channel_sparsity",
    "connection_sparsity",
    "accuracy_before",
    "accuracy_after",
    "synops_before",
    "synops_after",
    "neurocores_before",
    "neurocores_after",
)


@dataclass(frozen=True)
class PruneOptions:
    """What ``snnc prune`` was asked to do. ``dataset``/``steps`` None: the model file's; ``distill``
    and ``allocation`` None: the method's own; ``regen`` None: the trainer's default share (0 =
    no regeneration); ``report`` None: ``output`` with ``.json``."""

    model: str
    method: str
    sparsity: float
    output: str
    epochs: int = 10
    dataset: str | None = None
    steps: int | None = None
    lr: float = 2e-3
    batch_size: int = 64
    train_limit: int | None = None
    test_limit: int | None = None  # accuracy before/after on the first N test samples (None = all)
    window: int = 8
    distill: float | None = None
    lr_schedule: str = "rewind"
    allocation: str | None = None
    variant: str | None = None  # the method's own variant (sca, criticality; docs/methods.md)
    objective: str = "accuracy"
    regen: float | None = None
    report: str | None = None
    plot_dir: str | None = None
    resume: bool = False
    trust_pickle: bool = False
    seed: int = 0
    arch: str | None = None  # --arch: needed for a model file made from a user architecture

    @property
    def report_file(self) -> Path:
        return Path(self.report) if self.report else Path(self.output).with_suffix(".json")

    @property
    def resume_file(self) -> Path:
        """The per-epoch checkpoint ``--resume`` continues from: ``OUTPUT.ckpt``."""
        out = Path(self.output)
        return out.with_name(out.name + ".ckpt")


def check_options(opts: PruneOptions) -> None:
    """One-line usage errors for options that cannot work, before the model is read."""
    from snnc.prune.methods.registry import METHODS

    if opts.method not in METHODS.names():
        METHODS.get(opts.method)  # raises the registry's one-line error, listing the methods
    variants = {"sca": ("potential", "rectified"), "criticality": ("structured", "unstructured")}
    if opts.variant is not None and opts.variant not in variants.get(opts.method, ()):
        choices = ", ".join(f"{m}: {' or '.join(v)}" for m, v in variants.items())
        raise UsageError(f"--variant {opts.variant!r} does not apply to method {opts.method!r} ({choices})")
    if not 0.0 <= opts.sparsity < 1.0:
        raise UsageError(f"--sparsity must be in [0, 1), got {opts.sparsity}")
    if opts.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {opts.epochs}")
    if opts.regen is not None and not 0.0 <= opts.regen <= 1.0:
        raise UsageError(f"--regen must be in [0, 1], got {opts.regen}")
    if opts.dataset is not None:
        from snnc.data import check_name

        check_name(opts.dataset)
    from snnc.fileio import check_distinct_paths

    report = "--report" if opts.report else "the report (-o with .json)"
    outputs = {"-o": opts.output, report: opts.report_file, "the resume checkpoint": opts.resume_file}
    check_distinct_paths({"MODEL": opts.model}, outputs)


def prune_config(opts: PruneOptions, header: dict) -> PruneConfig:
    """The trainer's settings: the options, with the model file's data settings for what is not given."""
    from snnc.prune.trainer import PruneConfig, with_data_defaults

    cfg = PruneConfig(
        method=opts.method,
        sparsity=opts.sparsity,
        epochs=opts.epochs,
        lr=opts.lr,
        batch_size=opts.batch_size,
        train_limit=opts.train_limit,
        test_limit=opts.test_limit,
        seed=opts.seed,
        window=opts.window,
        distill=opts.distill,
        lr_schedule=opts.lr_schedule,
        allocation=opts.allocation,
        variant=opts.variant,
        objective=opts.objective,
    )
    if opts.regen is not None:
        cfg = replace(cfg, regen_fraction=opts.regen)
    return with_data_defaults(cfg, header, dataset=opts.dataset, steps=opts.steps)


# -- the compiler's resource model -----------------------------------------------------------------
def _unbounded_limits(target):
    """The target's limits with the core count lifted, so a net larger than one chip still gets a
    per-layer figure (the cost model, not a fit check)."""
    limits = getattr(target, "limits", None)
    if limits is not None and "cores" in {f.name for f in fields(limits)}:
        return replace(limits, cores=1 << 20)
    return limits


def layer_cores(model, target_name: str = "loihi2") -> dict[str, dict]:
    """``{layer: {"cores", "fraction"}}`` of ``model`` compiled for ``target_name``, read from the
    compile report's rows (what ``snnc compile`` reports): the neurocores each population takes,
    and its fractional use, ``cores`` times its higher utilization of neurons or SRAM per core
    (``cores`` when the mapper reports neither)."""
    import copy

    from snnc.compile.pipeline import compile_model
    from snnc.targets.registry import TARGETS

    target = TARGETS.get(target_name)
    net = copy.deepcopy(model).eval()
    _, report = compile_model(net, target, limits=_unbounded_limits(target))
    out = {}
    for row in report["layers"]:
        cores = int(row.get("cores", 0))
        use = max(float(row.get("utilization_neurons", 0.0)), float(row.get("utilization_sram", 0.0)))
        out[row["name"]] = {"cores": cores, "fraction": cores * use if use > 0 else float(cores)}
    return out


def neurocore_cost(target_name: str = "loihi2") -> UnitCost:
    """The per-channel cost of ``--objective cores``: a layer's fractional neurocores shared equally
    by its active channels (a layer the compiler removed or does not report costs 0)."""
    import torch

    def cost(model, blocks) -> dict:
        usage = layer_cores(model, target_name)
        out = {}
        for name, b in blocks.items():
            kept = max(1, int((b.channel_mask > 0).sum()))
            share = usage.get(name, {}).get("fraction", 0.0) / kept
            out[name] = torch.full((b.out_channels,), share, dtype=torch.float64)
        return out

    return cost


def add_cores(rep: dict, before: dict | None, after: dict | None, error: str | None) -> None:
    """The compiled neurocores, total and per layer, into the report (None with the compiler's
    message when the model does not compile)."""

    def total(d: dict | None) -> int | None:
        return sum(v["cores"] for v in d.values()) if d is not None else None

    rep["neurocores_before"], rep["neurocores_after"] = total(before), total(after)
    if error:
        rep["neurocores_error"] = error
    for row in rep["layers"]:
        row["cores_before"] = (before or {}).get(row["layer"], {}).get("cores")
        row["cores_after"] = (after or {}).get(row["layer"], {}).get("cores")
    rep["summary"]["neurocores_before"] = rep["neurocores_before"]
    rep["summary"]["neurocores_after"] = rep["neurocores_after"]


def _cores_or_error(model) -> tuple[dict | None, str | None]:
    from snnc.errors import SnncError

    try:
        return layer_cores(model), None
    except SnncError as e:
        return None, str(e)


def init_distributed() -> int:
    """Join the process group when run under ``torchrun`` (gloo: a CPU run); returns this rank."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank() if dist.is_initialized() else 0


def finish_distributed() -> None:
    """Wait for every rank (rank 0 writes the files), then leave the process group."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def write_outputs(opts: PruneOptions, cfg: PruneConfig, net, header: dict, rep: dict) -> None:
    """Rank 0: the pruned model file (its header records the run), the plots, the JSON report; then
    the resume checkpoint is no longer needed."""
    from snnc import checkpoint
    from snnc.fileio import atomic_path
    from snnc.train import data_settings

    meta = dict(
        header.get("meta", {}),
        seed=opts.seed,
        accuracy=rep["accuracy_after"],
        prune={
            "method": opts.method,
            "sparsity": opts.sparsity,
            "report": {k: rep[k] for k in SUMMARY_KEYS},
            "config": cfg.to_dict(),
        },
    )
    checkpoint.save_model(opts.output, net, data_settings(cfg.dataset, cfg.steps, cfg.encoding), meta)
    if opts.plot_dir:
        from snnc.prune.plots import save_plots

        rep["plots"] = [str(p) for p in save_plots(rep, opts.plot_dir)]
    with atomic_path(opts.report_file) as tmp:
        tmp.write_text(json.dumps(rep, indent=2))
    opts.resume_file.unlink(missing_ok=True)


def outcome(opts: PruneOptions, rep: dict) -> Outcome:
    """The report without per-batch activity (``--json``), the per-layer table and the summary."""
    rows = [
        [
            r["layer"],
            r["kind"],
            f"{r['channels_kept']}/{r['channels']}",
            f"{r['connections_kept']}/{r['connections']}",
            r["spike_rate_after"] if r["spike_rate_after"] is not None else "-",
            r["synops_before"] or 0.0,
            r["synops_after"] or 0.0,
            "-" if r.get("cores_after") is None else f"{r.get('cores_before')} -> {r['cores_after']}",
        ]
        for r in rep["layers"]
    ]
    columns = [
        "layer",
        "kind",
        "channels",
        "connections",
        "spike rate",
        "SynOps before",
        "SynOps after",
        "neurocores",
    ]
    cores = (
        f"; neurocores {rep['neurocores_before']} -> {rep['neurocores_after']}"
        if rep.get("neurocores_after") is not None
        else ""
    )
    regen = rep["regeneration"]
    summary = (
        f"{opts.method}: channels {rep['channels']['kept']}/{rep['channels']['total']} "
        f"(sparsity {rep['channel_sparsity']:.2f}), connections sparsity "
        f"{rep['connection_sparsity']:.2f}; accuracy "
        f"{100 * rep['accuracy_before']:.2f}% -> "
        f"{100 * rep['accuracy_after']:.2f}%; SynOps {rep['synops_before']:.0f} -> "
        f"{rep['synops_after']:.0f}{cores}; regenerated {regen['total']} "
        f"({regen['survived']} of {regen['units']} units kept); scoring {rep['scoring_seconds']:.2f} s of "
        f"{rep['train_seconds']:.1f} s training -> {Path(opts.output)} (report {opts.report_file})"
    )
    return Outcome(
        {k: v for k, v in rep.items() if k != "activity"},
        table=Table(f"snnc prune --method {opts.method}", columns, rows),
        lines=(summary, *(f"plot: {p}" for p in rep.get("plots", []))),
    )


def run_prune(opts: PruneOptions, reporter: Reporter | None = None) -> Outcome | None:
    """Prune as ``opts`` says and write the outputs. Under ``torchrun`` every rank trains; only
    rank 0 writes and has an outcome (None on the others)."""
    from snnc.commands.models import input_digest, load_trainable  # a model file, or a netx/NIR net
    from snnc.prune.trainer import prune, validate
    from snnc.ui import Reporter

    check_options(opts)
    net, header = load_trainable(opts.model, opts.trust_pickle, opts.arch, opts.dataset, opts.steps)
    cfg = prune_config(opts, header)
    unit_cost = neurocore_cost() if cfg.objective == "cores" else None
    validate(cfg, net, unit_cost)  # bad settings fail before the compiler runs
    rank = init_distributed()
    before, error = _cores_or_error(net) if rank == 0 else (None, None)
    net, rep = prune(
        net,
        cfg,
        reporter if rank == 0 else Reporter(False),
        resume_path=opts.resume_file,
        resume=opts.resume,
        base_digest=input_digest(opts.model, net),
        unit_cost=unit_cost,
    )
    if rank == 0:
        after, error_after = _cores_or_error(net)
        add_cores(rep, before, after, error or error_after)
    rep["input"], rep["output"] = str(opts.model), str(Path(opts.output))
    rep["report"] = str(opts.report_file)
    if rank == 0:
        write_outputs(opts, cfg, net, header, rep)
    finish_distributed()
    return outcome(opts, rep) if rank == 0 else None
