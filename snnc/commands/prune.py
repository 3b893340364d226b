"""``snnc prune``: click wrapper over :func:`snnc.prune.trainer.prune` (registered by
snnc/cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def _init_distributed() -> None:
    """Join the process group when run under ``torchrun`` (gloo on CPU, NCCL is not used: CPU
    run)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")


def register(cli: click.Group) -> None:
    from snnc.cli import CONTEXT, common_options, emit_json, reporter, show

    @cli.command(context_settings=CONTEXT)
    @click.argument("model", type=click.Path())
    @click.option("--method", required=True, help="sca, criticality, relief, switcher, l1 or random.")
    @click.option(
        "--sparsity",
        type=float,
        required=True,
        help="Fraction removed: conv channels (sca, criticality, l1, random), conv+dense "
        "connections (relief) or dense connections (switcher). In [0, 1).",
    )
    @click.option("--epochs", type=int, default=10, show_default=True)
    @click.option("--dataset", default=None, help="digits or mnist (default: the model file's).")
    @click.option(
        "--steps",
        "-T",
        type=click.IntRange(min=1),
        default=None,
        help="Time steps (default: the model file's).",
    )
    @click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option(
        "--train-limit",
        type=click.IntRange(min=1),
        default=None,
        help="Use only the first N training samples.",
    )
    @click.option(
        "--window",
        type=click.IntRange(min=1),
        default=8,
        show_default=True,
        help="Batches per activity-scoring window.",
    )
    @click.option(
        "--distill",
        type=click.FloatRange(0, 1),
        default=None,
        help="Weight of knowledge distillation from the unpruned model (0 = cross-entropy only; "
        "default 0.9 for sca, criticality, l1 and random, 0 for relief and switcher).",
    )
    @click.option(
        "--lr-schedule",
        type=click.Choice(["cosine", "rewind"]),
        default="cosine",
        show_default=True,
        help="cosine: one decay over all epochs; rewind: full rate while pruning, then a decay "
        "restarted over the fine-tuning epochs.",
    )
    @click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False),
        required=True,
        help="Pruned model file to write (safetensors).",
    )
    @click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="JSON report path (default: OUTPUT with .json).",
    )
    @click.option(
        "--plot",
        "plot_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Write PNG plots into this directory.",
    )
    @click.option("--resume", is_flag=True, help="Continue from OUTPUT.ckpt if it exists.")
    @click.option("--trust-pickle", is_flag=True, help="Load a PyTorch pickle you made yourself.")
    @common_options
    def prune(
        model,
        method,
        sparsity,
        epochs,
        dataset,
        steps,
        lr,
        batch_size,
        train_limit,
        window,
        distill,
        lr_schedule,
        output,
        report_path,
        plot_dir,
        resume,
        trust_pickle,
        seed,
        as_json,
        quiet,
    ):
        """Prune MODEL with regeneration toward --sparsity; write the pruned model and a JSON
        report."""
        from snnc import checkpoint
        from snnc.errors import UsageError
        from snnc.fileio import atomic_path
        from snnc.prune import METHODS
        from snnc.prune.trainer import PruneConfig, model_digest, with_data_defaults
        from snnc.prune.trainer import prune as run_prune
        from snnc.train import data_settings

        if method not in METHODS:
            raise UsageError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 <= sparsity < 1.0:
            raise UsageError(f"--sparsity must be in [0, 1), got {sparsity}")
        if epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {epochs}")
        if dataset is not None and dataset not in ("digits", "mnist"):
            raise UsageError(f"unknown dataset {dataset!r}; choose digits or mnist")
        net, header = checkpoint.load_model(model, trust_pickle=trust_pickle)
        cfg = PruneConfig(
            method=method,
            sparsity=sparsity,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            train_limit=train_limit,
            seed=seed,
            window=window,
            distill=distill,
            lr_schedule=lr_schedule,
        )
        cfg = with_data_defaults(cfg, header, dataset=dataset, steps=steps)
        _init_distributed()
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_initialized() else 0
        out = Path(output)
        ckpt = out.with_name(out.name + ".ckpt")
        net, rep = run_prune(
            net,
            cfg,
            reporter(quiet or rank != 0, as_json),
            resume_path=ckpt,
            resume=resume,
            base_digest=model_digest(model),
        )
        rep["input"], rep["output"] = str(model), str(out)
        report_file = Path(report_path) if report_path else out.with_suffix(".json")
        rep["report"] = str(report_file)
        if rank == 0:
            summary = {
                k: rep[k]
                for k in (
                    "method",
                    "target_sparsity",
                    "channel_sparsity",
                    "connection_sparsity",
                    "accuracy_before",
                    "accuracy_after",
                    "synops_before",
                    "synops_after",
                )
            }
            meta = dict(
                header.get("meta", {}),
                seed=seed,
                accuracy=rep["accuracy_after"],
                prune={
                    "method": method,
                    "sparsity": sparsity,
                    "report": summary,
                    "config": cfg.to_dict(),
                },
            )
            checkpoint.save_model(out, net, data_settings(cfg.dataset, cfg.steps, cfg.encoding), meta)
            if plot_dir:
                from snnc.prune.plots import save_plots

                rep["plots"] = [str(p) for p in save_plots(rep, plot_dir)]
            with atomic_path(report_file) as tmp:
                tmp.write_text(json.dumps(rep, indent=2))
            ckpt.unlink(missing_ok=True)
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        if rank != 0:
            return
        if as_json:
            emit_json({k: v for k, v in rep.items() if k not in ("activity",)})
            return
        from snnc.ui import table

        rows = [
            [
                r["layer"],
                r["kind"],
                f"{r['channels_kept']}/{r['channels']}",
                f"{r['connections_kept']}/{r['connections']}",
                r["spike_rate_after"] if r["spike_rate_after"] is not None else "-",
                r["synops_before"] or 0.0,
                r["synops_after"] or 0.0,
            ]
            for r in rep["layers"]
        ]
        show(
            table(
                f"snnc prune --method {method}",
                [
                    "layer",
                    "kind",
                    "channels",
                    "connections",
                    "spike rate",
                    "SynOps before",
                    "SynOps after",
                ],
                rows,
            ),
            quiet,
            as_json,
        )
        if not quiet:
            click.echo(
                f"{method}: channels {rep['channels']['kept']}/{rep['channels']['total']} "
                f"(sparsity {rep['channel_sparsity']:.2f}), connections sparsity "
                f"{rep['connection_sparsity']:.2f}; accuracy "
                f"{100 * rep['accuracy_before']:.2f}% -> "
                f"{100 * rep['accuracy_after']:.2f}%; SynOps {rep['synops_before']:.0f} -> "
                f"{rep['synops_after']:.0f}; scoring {rep['scoring_seconds']:.2f} s of "
                f"{rep['train_seconds']:.1f} s training -> {out} (report {report_file})"
            )
            for p in rep.get("plots", []):
                click.echo(f"plot: {p}")
