"""Shared fixtures."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("MPLBACKEND", "Agg")

# Property tests draw the same examples on every run (a CI run is reproducible); set
# SNNC_HYPOTHESIS_PROFILE=explore to draw new ones.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("SNNC_HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def digits_mlp(tmp_path_factory):
    """A small mlp trained on digits: (model file path, training result)."""
    from snnc import checkpoint
    from snnc.train import TrainConfig, data_settings, train

    cfg = TrainConfig(dataset="digits", arch="mlp", epochs=15, seed=0)
    model, result = train(cfg)
    path = tmp_path_factory.mktemp("models") / "mlp.pt"
    checkpoint.save_model(
        path,
        model,
        data_settings("digits", cfg.steps, cfg.encoding),
        {"seed": 0, "accuracy": result["test_accuracy"]},
    )
    return path, result


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
