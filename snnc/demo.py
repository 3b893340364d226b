"""``make demo``: the whole prune-then-compile path on bundled offline data, in a few minutes on 2 cores.

1. train an mlp on digits and a convnet on MNIST (a subset, few epochs: a demo, not a benchmark);
2. prune the convnet's channels with SCA (activity-based pruning with regeneration);
3. compile it for Loihi 2 (dead channels removed, fixed point, neurocores) -> ``network.net``;
4. check our simulator against Lava's own fixed-point CPU simulation on a few test samples (spike by spike);
5. report the deployed (fixed-point, simulated) accuracy.

Every step runs the real ``snnc`` command as a user would and reads its ``--json`` result.
Outputs go to ``demo_out/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from snnc.ui import console


def snnc(*args, label: str) -> dict:
    """Run one snnc command with --json; print its wall time; return the parsed result."""
    cmd = [sys.executable, "-m", "snnc", *map(str, args), "--json"]
    t0 = time.perf_counter()
    console.print(f"[bold cyan]$ snnc {' '.join(map(str, args))}[/]")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        console.print(f"[red]{label} failed ({dt:.0f} s):[/] {proc.stderr.strip()}")
        sys.exit(proc.returncode)
    console.print(f"  {label}: done in {dt:.0f} s")
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    out["_seconds"] = dt
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="snnc end-to-end demo")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mnist-train", type=int, default=8000, help="MNIST training samples used")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    t_start = time.perf_counter()
    seed = ["--seed", args.seed]

    mlp = snnc(
        "train",
        "--dataset",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        15,
        *seed,
        "-o",
        out / "mlp_digits.pt",
        label="mlp on digits",
    )
    conv = snnc(
        "train",
        "--dataset",
        "mnist",
        "--arch",
        "convnet",
        "--epochs",
        args.epochs,
        "--train-limit",
        args.mnist_train,
        "--val-limit",
        2000,  # validating on all 10 000 each epoch was ~40 of the demo's 300 s
        *seed,
        "-o",
        out / "convnet_mnist.pt",
        label="convnet on MNIST",
    )
    pruned = snnc(
        "prune",
        out / "convnet_mnist.pt",
        "--method",
        "sca",
        "--sparsity",
        0.5,
        "--epochs",
        2,
        # Distillation pays off over longer fine-tuning (docs/methods.md); in this 2-epoch run it
        # cost 1.9 pt and 60 s (measured: 90.02% vs 92.83%, 363 s vs 291 s for the whole demo).
        "--distill",
        0,
        "--train-limit",
        args.mnist_train // 2,
        "--plot",
        out / "plots",
        *seed,
        "-o",
        out / "convnet_sca.pt",
        label="SCA pruning",
    )
    build = out / "build"
    comp = snnc(
        "compile",
        out / "convnet_sca.pt",
        "--target",
        "loihi2",
        "--dataset",
        "mnist",
        "--limit",
        500,
        *seed,
        "-o",
        build,
        label="compile for loihi2",
    )

    # Sim vs Lava, spike for spike, on a few encoded test samples.
    import torch

    from snnc import data as D

    steps = int(comp.get("data", {}).get("steps", 16))
    x = D.load("mnist").test[0][:3]
    gen = torch.Generator().manual_seed(args.seed)
    spikes = D.encode(x, steps, "rate", gen).numpy().astype(np.int8)
    np.save(out / "x.npy", spikes)
    snnc(
        "simulate",
        build,
        "--input",
        out / "x.npy",
        "--output",
        out / "y_sim.npy",
        "--backend",
        "sim",
        label="simulate (sim)",
    )
    snnc(
        "simulate",
        build,
        "--input",
        out / "x.npy",
        "--output",
        out / "y_lava.npy",
        "--backend",
        "lava",
        label="simulate (Lava fixed_pt, CPU)",
    )
    y_sim, y_lava = np.load(out / "y_sim.npy"), np.load(out / "y_lava.npy")
    mismatches = int((y_sim != y_lava).sum())
    ev = snnc(
        "evaluate",
        build,
        "--dataset",
        "mnist",
        "--backend",
        "sim",
        "--limit",
        2000,
        *seed,
        label="deployed accuracy (sim)",
    )

    total = time.perf_counter() - t_start
    t = Table(title="snnc demo")
    t.add_column("stage")
    t.add_column("result", justify="left")
    t.add_row("mlp / digits", f"test accuracy {100 * mlp['test_accuracy']:.2f}%  -> {mlp['output']}")
    t.add_row(
        "convnet / MNIST",
        f"test accuracy {100 * conv['test_accuracy']:.2f}% "
        f"({args.mnist_train} training samples, {args.epochs} epochs)  -> {conv['output']}",
    )
    rep = pruned.get("summary", pruned)
    t.add_row(
        "SCA pruning",
        f"channels kept {rep.get('channels_kept', '?')}/{rep.get('channels_total', '?')}, "
        f"accuracy {_pct(rep.get('accuracy_before'))} -> {_pct(rep.get('accuracy_after'))}, "
        f"SynOps x{_ratio(rep.get('synops_reduction'))} fewer  -> {out / 'convnet_sca.pt'}",
    )
    tot = comp.get("totals", {})
    t.add_row(
        "compile (loihi2)",
        f"{tot.get('neurons', '?')} neurons, {tot.get('synapses', '?')} synapses, "
        f"{tot.get('cores', '?')} neurocores; float {_pct(comp.get('accuracy', {}).get('float'))} vs "
        f"fixed {_pct(comp.get('accuracy', {}).get('fixed'))}  -> {build / 'network.net'}",
    )
    t.add_row("sim vs Lava", f"{mismatches} mismatched spikes of {y_sim.size} (3 samples, T={steps})")
    t.add_row(
        "deployed accuracy",
        f"{_pct(ev.get('accuracy'))} on {ev.get('samples', '?')} MNIST test "
        "samples (fixed point, simulated)",
    )
    t.add_row("prune report", f"{pruned.get('report')}; plots: {', '.join(pruned.get('plots', []))}")
    t.add_row("total time", f"{total:.0f} s")
    console.print(t)
    if mismatches:
        console.print("[red]sim and Lava disagree[/]")
        sys.exit(1)


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "?"


def _ratio(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "?"


if __name__ == "__main__":
    main()
