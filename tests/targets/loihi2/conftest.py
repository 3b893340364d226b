"""Fixtures of the Loihi 2 target tests: trained digits models (module-scoped)."""

from __future__ import annotations

import pytest
import torch


def _train(arch: str, epochs: int):
    from snnc.train import TrainConfig, train

    torch.set_num_threads(1)
    model, result = train(TrainConfig(dataset="digits", arch=arch, epochs=epochs, seed=0))
    return model.eval(), result


@pytest.fixture(scope="module")
def trained_mlp():
    return _train("mlp", 10)


@pytest.fixture(scope="module")
def trained_convnet():
    return _train("convnet", 6)
