"""Switcher against magnitude pruning of the FC connections, at equal FC sparsity, on digits.

Both runs start from the same trained base (an MLP by default: every synaptic layer is FC), use the
same pruning loop (:func:`snnc.prune.trainer.prune`: schedule, epochs, learning rate, seed) and the
same selection (:func:`snnc.prune.methods.switcher.switcher_masks`: global ranking over the FC
layers, every neuron keeps its best input); only the ranking differs: the switcher's learned switch
probability ``p`` against ``|w|``. Printed per sparsity and seed: test accuracy of each, and how far
the switcher's masks are from magnitude's: at every prune event, the share of the switcher's kept
connections that magnitude (same count, same rule) would keep on the weights of that moment
(``agreement``; 1.0 = the switcher learned nothing magnitude does not say), the kept connections
per layer, and the Jaccard index of the two runs' final masks.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/switcher_vs_magnitude.py [--sparsity 0.9 0.95]
        [--seeds 0 1] [--epochs 8] [--json out.json]

Results: docs/methods.md, "Switcher network".
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from snnc.nn.blocks import Dense
from snnc.prune import masks as M
from snnc.prune.methods.base import Method, PruneEvent, Scores
from snnc.prune.methods.registry import METHODS
from snnc.prune.methods.switcher import switcher_masks
from snnc.prune.trainer import PruneConfig, prune
from snnc.train import TrainConfig, train


class FCMagnitude(Method):
    """Magnitude pruning of FC connections with the switcher's selection rule and schedule."""

    name = "fc-magnitude"
    unit = "dense connections"

    def targets(self, model):
        return dict(M.connection_targets(model, (Dense,)))

    def score(self, event: PruneEvent) -> Scores:
        return {k: (b.weight.detach().abs() * b.weight_mask).double() for k, b in event.blocks.items()}

    def prune(self, event: PruneEvent) -> dict:
        blocks = event.blocks
        total = sum(b.weight.numel() for b in blocks.values())
        new = switcher_masks(self.score(event), blocks, int(round(event.target * total)))
        for k, b in blocks.items():
            b.weight_mask.copy_(new[k])
        return {"regenerated": 0}


def fc_masks(model) -> dict[str, torch.Tensor]:
    return {k: (b.weight_mask > 0).clone() for k, b in M.connection_targets(model, (Dense,))}


def jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    inter = sum(int((a[k] & b[k]).sum()) for k in a)
    union = sum(int((a[k] | b[k]).sum()) for k in a)
    return inter / max(union, 1)


def capture_logs(method, logs: list) -> None:
    """Keep a copy of every prune-event log of ``method`` (the trainer's history keeps only some
    entries)."""
    inner = method.prune

    def prune_and_log(event):
        out = inner(event)
        logs.append(dict(out, epoch=event.epoch + 1))
        return out

    method.prune = prune_and_log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="mlp")
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.9, 0.95])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--base-epochs", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    base, res = train(
        TrainConfig(
            dataset="digits",
            arch=args.arch,
            epochs=args.base_epochs,
            steps=args.steps,
            lr=args.lr,
            batch_size=32,
            seed=0,
            encoding="regular",
        )
    )
    print(f"base {args.arch}: test accuracy {res['test_accuracy']:.4f}")
    METHODS.register(FCMagnitude())
    rows = []
    try:
        for s in args.sparsity:
            for seed in args.seeds:
                row = {"sparsity": s, "seed": seed}
                masks: dict[str, dict] = {}
                for method, sw_lr in (("switcher", 0.05), ("switcher-untrained", 0.0), ("fc-magnitude", 0.0)):
                    t0 = time.perf_counter()
                    model = copy.deepcopy(base)
                    cfg = PruneConfig(
                        method=method.replace("-untrained", ""),
                        switcher_lr=sw_lr,
                        sparsity=s,
                        epochs=args.epochs,
                        steps=args.steps,
                        lr=args.lr,
                        batch_size=32,
                        seed=seed,
                        encoding="regular",
                        distill=0.0,
                        val_limit=64,
                    )
                    logs: list[dict] = []
                    obj = METHODS.get(method.replace("-untrained", ""))
                    capture_logs(obj, logs)
                    try:
                        _, rep = prune(model, cfg)
                    finally:
                        del obj.prune  # back to the class's method
                    masks[method] = fc_masks(model)
                    row[method] = {
                        "accuracy": rep["accuracy_after"],
                        "fc_sparsity": rep["fc_connection_sparsity"],
                        "kept_per_layer": {k: int(m.sum()) for k, m in masks[method].items()},
                        "regenerated": rep.get("regenerated_total", 0),
                        "magnitude_agreement": [
                            round(x["magnitude_agreement"], 3) for x in logs if "magnitude_agreement" in x
                        ],
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                row["accuracy_before"] = rep["accuracy_before"]
                row["mask_jaccard"] = jaccard(masks["switcher"], masks["fc-magnitude"])
                rows.append(row)
                sw, mg, un = row["switcher"], row["fc-magnitude"], row["switcher-untrained"]
                print(
                    f"sparsity {s:.2f} seed {seed}: before {row['accuracy_before']:.4f}  "
                    f"switcher {sw['accuracy']:.4f} (FC sparsity {sw['fc_sparsity']:.3f}, kept "
                    f"{sw['kept_per_layer']}, regenerated {sw['regenerated']}, agreement with magnitude per "
                    f"event {sw['magnitude_agreement']})  "
                    f"magnitude {mg['accuracy']:.4f} (FC sparsity {mg['fc_sparsity']:.3f}, kept "
                    f"{mg['kept_per_layer']})  untrained switcher {un['accuracy']:.4f}  mask Jaccard "
                    f"{row['mask_jaccard']:.3f}"
                )
    finally:
        METHODS.unregister("fc-magnitude")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
