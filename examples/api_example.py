"""snnc's Python API end to end on the digits dataset (docs/api.md): train a LeNet-style net, prune
half its conv channels with the training data given as a PyTorch-style loader, compile it for
Loihi 2, simulate the build and compare its predictions with the pruned float model's.

    python examples/api_example.py [OUT_DIR] [--quick]

About a minute on 2 CPU cores (``--quick``: a few seconds, on a tenth of the data; what the test
runs).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import snnc
from snnc import data as D


def main(out_dir: Path, quick: bool = False) -> dict:
    limit, epochs = (200, 1) if quick else (None, 4)
    # 1. train a zoo model: snnc train --dataset digits --arch lenet --epochs 4
    trained = snnc.train("digits", arch="lenet", epochs=epochs, train_limit=limit, seed=0)

    # 2. prune: the data can be anything that yields (x, y) batches, like a torch DataLoader
    x_train, y_train = D.load("digits").train
    n = limit or len(x_train)
    loader = [
        (torch.from_numpy(x_train[i : i + 64]), torch.from_numpy(y_train[i : i + 64]))
        for i in range(0, n, 64)
    ]
    pruned = snnc.prune(
        trained.model,
        loader,
        method="l1",
        sparsity=0.5,
        epochs=epochs,
        seed=0,
        out=out_dir / "pruned.pt",
    )

    # 3. compile for Loihi 2: snnc compile pruned.pt --target loihi2 -o build
    build = snnc.compile(pruned.model, target="loihi2", out=out_dir / "build")

    # 4. simulate the build on encoded test digits: snnc simulate build --input x.npy --output y.npy
    x_test = D.load("digits").test[0][:64]
    spikes = D.encode(x_test, 16, "rate", generator=torch.Generator().manual_seed(0))
    sim = snnc.simulate(out_dir / "build", spikes.numpy().astype(np.uint8))
    with torch.no_grad():
        float_pred = pruned.model(spikes).sum(-1).argmax(1).numpy()
    summary = {
        "trained_accuracy": trained.result["test_accuracy"],
        "pruned_accuracy": pruned.result["accuracy_after"],
        "channel_sparsity": pruned.result["channel_sparsity"],
        "neurocores": build.result["totals"]["cores"],
        "deployed_equals_float_prediction": float((sim.output.sum(-1).argmax(1) == float_pred).mean()),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    quick = "--quick" in sys.argv[1:]
    if args:
        main(Path(args[0]), quick)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp), quick)
