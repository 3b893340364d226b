"""A pruning method added without editing snnc: a toy method defined here, registered in
``METHODS``, run through ``snnc prune --method toy`` (docs/architecture.md, "How to add a method")."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import snnc.cli
from snnc import checkpoint
from snnc.prune.masks import channel_targets
from snnc.prune.methods.base import ChannelMethod, PruneEvent, Scores
from snnc.prune.methods.registry import METHODS

CHANNELS = [4, 6, 8]


class LowIndexFirst(ChannelMethod):
    """Keeps the lowest-numbered channels of every layer: score = minus the channel index."""

    name = "toy"

    def score(self, event: PruneEvent) -> Scores:
        return {k: -torch.arange(b.out_channels, dtype=torch.float64) for k, b in event.blocks.items()}


@pytest.fixture
def toy_method():
    method = METHODS.register(LowIndexFirst())
    yield method
    METHODS.unregister(method.name)


@pytest.fixture
def convnet_file(tmp_path):
    """A small untrained digits convnet saved as a model file (channels 4-6-8)."""
    from snnc.nn.zoo import build

    torch.manual_seed(0)
    net = build("convnet", {"input_shape": [1, 8, 8], "num_classes": 10, "channels": CHANNELS})
    path = tmp_path / "convnet.pt"
    checkpoint.save_model(path, net, {"dataset": "digits", "steps": 4, "encoding": "rate"})
    return path


def test_toy_method_prunes_through_the_cli(toy_method, convnet_file, tmp_path):
    out = tmp_path / "pruned.pt"
    args = [
        "prune",
        str(convnet_file),
        "--method",
        "toy",
        "--sparsity",
        "0.5",
        "--epochs",
        "1",
        "--dataset",
        "digits",
        "--train-limit",
        "128",
        "--quiet",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(snnc.cli.cli, args)
    assert result.exit_code == 0, result.output
    net, _ = checkpoint.load_model(out)
    kept = {name: b.channel_mask.tolist() for name, b in channel_targets(net)}
    # 9 of 18 channels go, split over the layers by width (2, 3, 4): each keeps its lowest indices.
    assert list(kept.values()) == [[1.0] * (c // 2) + [0.0] * (c - c // 2) for c in CHANNELS]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["method"] == "toy"
    assert report["sparsity_unit"] == "conv channels"
    assert report["channels"] == {"kept": 9, "total": 18}


def test_unregistered_toy_is_an_unknown_method(convnet_file, tmp_path):
    args = ["prune", str(convnet_file), "--method", "toy", "--sparsity", "0.5", "-o", str(tmp_path / "p.pt")]
    result = CliRunner().invoke(snnc.cli.cli, args)
    assert result.exit_code != 0
    assert "unknown pruning method 'toy'" in result.output
