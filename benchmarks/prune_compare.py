"""Compare every pruning method on an MNIST convnet at 50% and 80% sparsity, in one run.

One shared pre-trained convnet; for each method and sparsity: accuracy, channels, params, SynOps
(NeuroBench), scoring time and its share of training time. Prints a table and the targets of
DESIGN.md (met or not), and saves ``results.json`` and ``compare.png`` into ``--out``.

Sparsity is the fraction of conv channels for sca/criticality/l1/random and the fraction of
connections for relief (conv + dense) and switcher (dense); every row reports its channel and
connection sparsity.

    python benchmarks/prune_compare.py --out build/prune_compare            # full size, < 60 min,
    2 cores
    python benchmarks/prune_compare.py --out /tmp/pc --quick                # minutes, proves it
    works
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from snnc import checkpoint  # noqa: E402
from snnc.fileio import atomic_path  # noqa: E402
from snnc.prune.methods.registry import METHODS as REGISTRY  # noqa: E402
from snnc.prune.trainer import PruneConfig, prune  # noqa: E402
from snnc.train import TrainConfig, data_settings, train  # noqa: E402

METHODS = REGISTRY.names()
CHANNEL_METHODS = tuple(m for m in METHODS if REGISTRY.get(m).unit == "conv channels")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for results.json and compare.png")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    p.add_argument("--steps", type=int, default=8, help="time steps T")
    p.add_argument("--train-limit", type=int, default=6000, help="training subset (samples)")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--prune-epochs", type=int, default=6)
    p.add_argument("--test-limit", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sparsities", default="0.5,0.8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    a = p.parse_args()
    if a.quick:
        a.train_limit, a.pretrain_epochs, a.prune_epochs, a.test_limit = 256, 1, 2, 256
    return a


def main() -> None:
    a = parse()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    sparsities = [float(s) for s in a.sparsities.split(",")]
    print(
        f"prune_compare: dataset={a.dataset} arch=convnet T={a.steps} train_limit={a.train_limit} "
        f"pretrain_epochs={a.pretrain_epochs} prune_epochs={a.prune_epochs} "
        f"test_limit={a.test_limit} batch={a.batch_size} threads={a.threads} seed={a.seed} "
        f"device={'cuda' if torch.cuda.is_available() else 'cpu'}",
        flush=True,
    )
    t0 = time.perf_counter()
    base, res = train(
        TrainConfig(
            dataset=a.dataset,
            arch="convnet",
            epochs=a.pretrain_epochs,
            steps=a.steps,
            batch_size=a.batch_size,
            lr=5e-3,
            seed=a.seed,
            train_limit=a.train_limit,
            device="cpu",
        )
    )
    checkpoint.save_model(
        out / "base.pt",
        base,
        data_settings(a.dataset, a.steps, "rate"),
        {"seed": a.seed, "accuracy": res["test_accuracy"]},
    )
    print(
        f"pre-training: {time.perf_counter() - t0:.0f} s, test accuracy "
        f"{100 * res['test_accuracy']:.2f}% (full test set)",
        flush=True,
    )
    rows = []
    for sp in sparsities:
        for m in methods:
            t1 = time.perf_counter()
            model = copy.deepcopy(base)
            _, rep = prune(
                model,
                PruneConfig(
                    method=m,
                    sparsity=sp,
                    epochs=a.prune_epochs,
                    dataset=a.dataset,
                    steps=a.steps,
                    lr=5e-3,
                    batch_size=a.batch_size,
                    train_limit=a.train_limit,
                    seed=a.seed,
                    val_limit=500,
                    test_limit=a.test_limit,
                ),
            )
            rows.append(
                {
                    "method": m,
                    "sparsity": sp,
                    "unit": rep["sparsity_unit"],
                    "accuracy_before": rep["accuracy_before"],
                    "accuracy": rep["accuracy_after"],
                    "channels_kept": rep["channels"]["kept"],
                    "channels": rep["channels"]["total"],
                    "channel_sparsity": rep["channel_sparsity"],
                    "params_before": rep["params_before"],
                    "params": rep["params_after"],
                    "synops_before": rep["synops_before"],
                    "synops": rep["synops_after"],
                    "synops_reduction": rep["synops_reduction"],
                    "scoring_seconds": rep["scoring_seconds"],
                    "train_seconds": rep["train_seconds"],
                    "overhead": rep["scoring_overhead"],
                    "regenerated": rep["regenerated_total"],
                    "wall_seconds": time.perf_counter() - t1,
                }
            )
            r = rows[-1]
            print(
                f"  {m:12s} s={sp:.1f}: acc {100 * r['accuracy']:.2f}% "
                f"(before {100 * r['accuracy_before']:.2f}%), channels {r['channels_kept']}/"
                f"{r['channels']}, SynOps x{r['synops_reduction'] or 0:.2f}, scoring "
                f"{r['scoring_seconds']:.2f} s ({100 * (r['overhead'] or 0):.1f}% of training), "
                f"{r['wall_seconds']:.0f} s",
                flush=True,
            )
    total = time.perf_counter() - t0
    targets = check_targets(rows)
    if a.quick:
        targets["note"] = "quick mode: sizes far too small for the targets to mean anything"
    show(rows, targets, total)
    result = {
        "settings": vars(a),
        "base_accuracy": res["test_accuracy"],
        "rows": rows,
        "targets": targets,
        "total_seconds": total,
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    plot(rows, out / "compare.png")
    print(f"wrote {out / 'results.json'} and {out / 'compare.png'} ({total / 60:.1f} min)")


def check_targets(rows: list[dict]) -> dict:
    """DESIGN.md's pruning numbers, each with the measured value and met/not."""
    ch = [r for r in rows if r["method"] in CHANNEL_METHODS]
    good = [r for r in ch if r["channel_sparsity"] >= 0.6 and r["accuracy"] >= r["accuracy_before"] - 0.005]
    best = max(good, key=lambda r: r["synops_reduction"] or 0, default=None)
    t = {
        "best_>=60%_channels_<=0.5pt_drop": {
            "method": best and best["method"],
            "synops_reduction": best and best["synops_reduction"],
            "met": bool(best and (best["synops_reduction"] or 0) >= 3),
        }
    }
    at80 = {r["method"]: r["accuracy"] for r in rows if abs(r["sparsity"] - 0.8) < 1e-9}
    if all(k in at80 for k in ("sca", "criticality", "l1", "random")):
        margin = min(at80["sca"], at80["criticality"]) - max(at80["l1"], at80["random"])
        t["sca_criticality_>=1pt_above_l1_random_at_80%"] = {
            "margin_pt": 100 * margin,
            "met": margin >= 0.01,
        }
    worst = max((r["overhead"] or 0 for r in rows), default=0)
    t["pruning_overhead_<=5%"] = {"worst": worst, "met": worst <= 0.05}
    sc = {r["method"]: r["scoring_seconds"] for r in rows if r["sparsity"] == rows[0]["sparsity"]}
    if "sca" in sc and "criticality" in sc and sc["sca"] > 0:
        t["criticality_scoring_cost_vs_sca"] = {"ratio": sc["criticality"] / sc["sca"]}
    return t


def show(rows: list[dict], targets: dict, total: float) -> None:
    from rich.console import Console

    from snnc.ui import table

    console = Console(width=170)  # the whole table, also when stdout is a pipe

    cols = [
        "method",
        "sparsity",
        "acc %",
        "Δ pt",
        "channels",
        "params",
        "SynOps",
        "SynOps ×",
        "scoring s",
        "overhead %",
    ]
    body = [
        [
            r["method"],
            r["sparsity"],
            round(100 * r["accuracy"], 2),
            round(100 * (r["accuracy"] - r["accuracy_before"]), 2),
            f"{r['channels_kept']}/{r['channels']}",
            f"{r['params']}/{r['params_before']}",
            round(r["synops"]),
            round(r["synops_reduction"] or 0, 2),
            round(r["scoring_seconds"], 3),
            round(100 * (r["overhead"] or 0), 2),
        ]
        for r in rows
    ]
    console.print(table("pruning methods (convnet)", cols, body))
    for k, v in targets.items():
        console.print(f"target {k}: {json.dumps(v)}")
    console.print(f"total {total / 60:.1f} min")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        ax[0].plot([r["sparsity"] for r in rs], [100 * r["accuracy"] for r in rs], marker="o", label=m)
        ax[1].plot(
            [r["sparsity"] for r in rs],
            [r["synops_reduction"] or 0 for r in rs],
            marker="o",
            label=m,
        )
    ax[0].axhline(100 * rows[0]["accuracy_before"], ls="--", c="grey")
    ax[0].set(xlabel="target sparsity", ylabel="test accuracy (%)")
    ax[1].set(xlabel="target sparsity", ylabel="SynOps reduction (×)")
    ax[0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
