"""Fixtures of the pruning tests: a convnet trained on digits once per session, and a small
untrained one."""

from __future__ import annotations

import pytest
import torch

BASE_STEPS = 16


@pytest.fixture(scope="session")
def base_convnet(tmp_path_factory):
    """``(path, model)``: the zoo convnet, channels 24-48-64, trained on digits (T=16, the
    deterministic ``regular`` rate code), saved as a model file. Twice the zoo's default width:
    pruning half the channels of the 12-24-32 net leaves a 6-12-16 net that cannot hold its
    accuracy. The deterministic code makes a test accuracy one number: with Bernoulli spikes, one
    draw of the encoding moves it by up to 2 pt on the 360 test digits (docs/methods.md,
    "Measured")."""
    from snnc import checkpoint
    from snnc.train import TrainConfig, data_settings, train

    cfg = TrainConfig(
        dataset="digits",
        arch="convnet",
        epochs=20,
        steps=BASE_STEPS,
        lr=5e-3,
        batch_size=32,
        seed=0,
        encoding="regular",
        arch_config={"channels": [24, 48, 64]},
    )
    model, result = train(cfg)
    path = tmp_path_factory.mktemp("prune-models") / "convnet.pt"
    checkpoint.save_model(
        path,
        model,
        data_settings("digits", cfg.steps, cfg.encoding),
        {"seed": 0, "accuracy": result["test_accuracy"]},
    )
    return path, model


@pytest.fixture
def small_convnet():
    """An untrained small convnet for digits (fast unit tests)."""
    from snnc.nn.zoo import build

    torch.manual_seed(0)
    return build("convnet", {"input_shape": [1, 8, 8], "num_classes": 10, "channels": [4, 6, 8]})
