"""Float vs compiled fixed-point accuracy of a zoo net (target: within 0.3 pt on MNIST, DESIGN.md).

Trains a model (or loads one with --model), compiles it (trace -> fold_bn -> remove_dead ->
quantize -> map_cores), and runs both the float graph (== the torch model in eval mode) and the
fixed-point graph in ``snnc.sim`` on the same encoded test spikes. Prints what was used and
the figures in one run::

    .venv/bin/python benchmarks/compile_accuracy.py --dataset mnist --arch convnet --epochs 2 \\
        --train-limit 10000 --test-limit 2000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=["digits", "mnist"])
    ap.add_argument("--arch", default="convnet")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--model", default=None, help="a model file to compile instead of training")
    ap.add_argument("--save-model", default=None, help="write the trained model file here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from snnc import checkpoint
    from snnc import data as D
    from snnc.compile.pipeline import compile_graph
    from snnc.compile.trace import trace
    from snnc.sim import simulate
    from snnc.targets.loihi2 import TARGET
    from snnc.train import TrainConfig, model_for, run_epoch, seed_everything

    t0 = time.perf_counter()
    if args.model:
        model, header = checkpoint.load_model(args.model)
        steps, encoding = header["data"]["steps"], header["data"]["encoding"]
        used = f"model file {args.model}"
    else:
        # run_epoch directly: train() would also evaluate the full validation and test splits
        ds = D.load(args.dataset)
        cfg = TrainConfig(
            dataset=args.dataset,
            arch=args.arch,
            epochs=args.epochs,
            seed=args.seed,
            train_limit=args.train_limit,
        )
        gen = seed_everything(args.seed)
        model = model_for(cfg, ds)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        xt, yt = ds.train
        xt, yt = xt[: args.train_limit], yt[: args.train_limit]
        for _ in range(args.epochs):
            run_epoch(
                model,
                opt,
                xt,
                yt,
                cfg.steps,
                cfg.encoding,
                cfg.batch_size,
                gen,
                torch.device("cpu"),
            )
        steps, encoding = cfg.steps, cfg.encoding
        used = (
            f"{args.arch} trained {args.epochs} epoch(s) on {args.train_limit} {args.dataset} "
            f"training samples, T={steps}, {encoding} encoding, seed {args.seed}"
        )
    model.eval()
    if args.save_model and not args.model:
        checkpoint.save_model(
            args.save_model,
            model,
            {"dataset": args.dataset, "steps": steps, "encoding": encoding},
            {"seed": args.seed, "benchmark": used},
        )
    t_train = time.perf_counter() - t0
    compiled = compile_graph(trace(model), TARGET)
    ds = D.load(args.dataset)
    x, y = ds.test
    x, y = x[: args.test_limit], y[: args.test_limit]
    gen = torch.Generator().manual_seed(args.seed)
    spikes = D.encode(x, steps, encoding, generator=gen).numpy().astype(np.uint8)
    t1 = time.perf_counter()
    pred_float, pred_fixed = [], []
    for i in range(0, len(spikes), 250):
        pred_float.append(simulate(compiled.source, spikes[i : i + 250]).output.sum(-1).argmax(1))
        pred_fixed.append(simulate(compiled.final, spikes[i : i + 250]).output.sum(-1).argmax(1))
    pf, pq = np.concatenate(pred_float), np.concatenate(pred_fixed)
    acc_float, acc_fixed = float((pf == y).mean()), float((pq == y).mean())
    result = {
        "used": used,
        "test_samples": int(len(y)),
        "float_accuracy": acc_float,
        "fixed_accuracy": acc_fixed,
        "difference_pt": 100 * (acc_fixed - acc_float),
        "prediction_agreement": float((pf == pq).mean()),
        "target_pt": 0.3,
        "within_target": abs(100 * (acc_fixed - acc_float)) <= 0.3,
        "params_before": compiled.report["totals"]["params_before"],
        "params_after": compiled.report["totals"]["params_after"],
        "cores": compiled.report["totals"]["cores"],
        "train_seconds": t_train,
        "sim_seconds": time.perf_counter() - t1,
    }
    print(f"used: {used}; {len(y)} {args.dataset} test samples")
    print(
        f"float {100 * acc_float:.2f}%  fixed {100 * acc_fixed:.2f}%  "
        f"difference {result['difference_pt']:+.2f} pt (target |diff| <= 0.3 pt: "
        f"{'met' if result['within_target'] else 'NOT met'}); predictions agree on "
        f"{100 * result['prediction_agreement']:.2f}%"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
