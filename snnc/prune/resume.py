"""The per-epoch resume checkpoint of a pruning run (safetensors + JSON header, written atomically).

It holds the model (weights and masks), the Adam state, the method's own trainable state (the
switcher network and its optimizer, :meth:`~snnc.prune.methods.base.MethodTraining.state_tensors`),
the global torch RNG state and the run's :class:`Progress`, so a resumed run repeats the
uninterrupted one exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from snnc import checkpoint
from snnc.errors import SnncError, UsageError

if TYPE_CHECKING:
    from snnc.nn.zoo import SpikingNet
    from snnc.prune.config import PruneConfig
    from snnc.prune.methods.base import MethodTraining

RESUME_FORMAT = "snnc-prune-resume"


@dataclass
class Progress:
    """Everything that changes between epochs besides the model and optimizers.

    ``epoch``: epochs done; ``before``: the input model's test accuracy, SynOps and counts.
    """

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    scoring_seconds: float = 0.0
    train_seconds: float = 0.0
    before: dict = field(default_factory=dict)
    regenerated_total: int = 0

    def to_header(self) -> dict:
        return {
            "epoch": self.epoch,
            "history": self.history,
            "scoring_seconds": self.scoring_seconds,
            "train_seconds": self.train_seconds,
            "before": self.before,
            "regenerated_total": self.regenerated_total,
        }

    @classmethod
    def from_header(cls, header: dict) -> Progress:
        return cls(**{k: header[k] for k in cls().to_header()})


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimizer's state as ``{prefix.index.key: tensor}`` and a JSON-able rest (scalars, param
    groups) for the header."""
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


def load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, info: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
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
    training: MethodTraining | None,
    progress: Progress,
) -> None:
    """Write the per-epoch resume checkpoint (safetensors + JSON header), atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    ot, oinfo = optimizer_tensors("opt", opt)
    tensors.update(ot)
    header = {
        "format": RESUME_FORMAT,
        "version": 1,
        "config": cfg.to_dict(),
        "base": base_digest,
        **progress.to_header(),
        "opt": oinfo,
    }
    if training is not None:
        mt, minfo = training.state_tensors()
        tensors.update(mt)
        header.update(minfo)
    tensors["rng.torch"] = torch.get_rng_state()
    checkpoint.save_tensors(path, tensors, header)


def load_resume(path: Path, cfg: PruneConfig, base_digest: str) -> tuple[dict, dict]:
    """``(tensors, header)`` of a checkpoint written by :func:`save_resume` with the same settings
    and input model; one-line errors otherwise."""
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


def model_digest(path: str | Path) -> str:
    """Digest of a model file's tensors: identifies the input model of a resumed run."""
    tensors, _ = checkpoint.read_tensors(path)
    return checkpoint.tensor_digest(tensors)
