"""Training and evaluation of zoo models on the offline datasets (surrogate-gradient BPTT, Adam).

Loss: cross-entropy on output spike counts over the ``T`` steps (classification by spike count, as the
deployed net is read out). Deterministic for a given seed: the same seed gives byte-identical weights.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from snnc import data as D
from snnc.errors import UsageError
from snnc.nn.zoo import SpikingNet, build
from snnc.ui import Reporter


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "digits"
    arch: str = "mlp"
    epochs: int = 10
    steps: int | None = 16  # None: 16, or a spike dataset's own T
    encoding: str = "rate"  # a spike dataset's is "given" whatever this says
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    device: str = "auto"
    arch_config: dict = field(default_factory=dict)
    train_limit: int | None = None
    val_limit: int | None = None  # validate on the first N validation samples (None = all)
    test_limit: int | None = None  # report test accuracy on the first N test samples (None = all)

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code that uses the legacy API
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def data_settings(dataset: str, steps: int, encoding: str) -> dict:
    return {"dataset": dataset, "steps": steps, "encoding": encoding}


def model_for(cfg: TrainConfig, ds: D.Dataset) -> SpikingNet:
    arch_config = {"input_shape": list(ds.input_shape), "num_classes": ds.num_classes}
    arch_config.update(cfg.arch_config)
    return build(cfg.arch, arch_config)


def run_epoch(
    model: SpikingNet,
    opt: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    cfg_steps: int,
    encoding: str,
    batch_size: int,
    gen: torch.Generator,
    device: torch.device,
    advance=None,
    after_step=None,
) -> tuple[float, float]:
    """One training epoch. Returns (mean loss, train accuracy). ``after_step(model)`` runs after each
    optimizer step (pruning uses it to re-apply masks)."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for xb, yb in D.batches(x, y, batch_size, shuffle=True, generator=gen):
        spikes = D.encode(xb, cfg_steps, encoding, generator=gen).to(device)
        yb = yb.to(device)
        counts = model(spikes).sum(-1)
        loss = F.cross_entropy(counts, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(model)
        total_loss += float(loss) * len(yb)
        correct += int((counts.argmax(1) == yb).sum())
        seen += len(yb)
        if advance is not None:
            advance(len(yb), loss=float(loss), acc=correct / seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: SpikingNet,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    encoding: str,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> float:
    """Accuracy by output spike count; the encoding noise is seeded by ``seed`` (deterministic)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator()
    gen.manual_seed(seed)
    correct = 0
    for xb, yb in D.batches(x, y, batch_size, shuffle=False, generator=None):
        spikes = D.encode(xb, steps, encoding, generator=gen).to(device)
        correct += int((model(spikes).sum(-1).argmax(1).cpu() == yb).sum())
    model.train(was_training)
    return correct / len(y)


def train(cfg: TrainConfig, reporter: Reporter | None = None) -> tuple[SpikingNet, dict]:
    """Train a zoo model. Returns ``(model, result)`` with accuracies, history and timing."""
    if cfg.epochs < 0 or (cfg.steps is not None and cfg.steps < 1):
        raise UsageError("--epochs must be >= 0 and --steps >= 1")
    reporter = reporter or Reporter(False)
    ds = D.load(cfg.dataset)
    steps, encoding = D.resolve_settings(ds, cfg.steps, cfg.encoding)
    cfg = replace(cfg, steps=steps, encoding=encoding)
    device = pick_device(cfg.device)
    gen = seed_everything(cfg.seed)
    model = model_for(cfg, ds).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    x, y = ds.train
    if cfg.train_limit:
        x, y = x[: cfg.train_limit], y[: cfg.train_limit]
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        te = time.perf_counter()
        with reporter.task(len(x), f"epoch {epoch + 1}/{cfg.epochs}") as advance:
            loss, acc = run_epoch(
                model, opt, x, y, cfg.steps, cfg.encoding, cfg.batch_size, gen, device, advance
            )
        sched.step()
        xv, yv = ds.val
        val = evaluate(
            model, xv[: cfg.val_limit], yv[: cfg.val_limit], cfg.steps, cfg.encoding, seed=cfg.seed
        )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss,
                "train_acc": acc,
                "val_acc": val,
                "seconds": time.perf_counter() - te,
            }
        )
    train_seconds = time.perf_counter() - t0
    xt, yt = ds.test[0][: cfg.test_limit], ds.test[1][: cfg.test_limit]
    test_acc = evaluate(model, xt, yt, cfg.steps, cfg.encoding, seed=cfg.seed)
    result = {
        "arch": cfg.arch,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "encoding": cfg.encoding,
        "test_accuracy": test_acc,
        "test_samples": int(len(yt)),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(cfg.epochs, 1),
        "train_samples": int(len(x)),
        "device": str(device),
        "history": history,
    }
    return model.cpu(), result
