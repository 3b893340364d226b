"""Helpers of the compiler tests: small zoo models with random masks, inputs, graph equality."""

from __future__ import annotations

import numpy as np
import torch

from snnc.nn.zoo import build

ARCHS = ("mlp", "lenet", "convnet", "resnet")
INPUT = (1, 8, 8)


def masked_model(arch: str, seed: int, keep: float = 0.7, gain: float = 3.0, channels=None):
    """A float64 zoo model on 8x8 inputs with random channel/weight masks, BN statistics and biases.

    ``gain`` scales the random weights so that every layer spikes (an equality test on silent
    layers would prove nothing). Every prunable block keeps at least one channel.
    """
    torch.manual_seed(seed)
    cfg = {"input_shape": list(INPUT), "num_classes": 10}
    if channels is not None:
        cfg["channels"] = channels
    model = build(arch, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, b in model.named_modules():
            w = getattr(b, "weight", None)
            if isinstance(w, torch.nn.Parameter) and hasattr(b, "weight_mask"):
                w.mul_(gain)
                b.weight_mask.copy_((torch.rand(w.shape, generator=g) > 0.2).float())
            if hasattr(b, "channel_mask"):
                m = (torch.rand(b.channel_mask.shape, generator=g) < keep).float()
                m[int(torch.randint(len(m), (1,), generator=g))] = 1.0
                b.channel_mask.copy_(m)
            bias = getattr(b, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.normal_(0.0, 0.2, generator=g)
            bn = getattr(b, "bn", None)
            if bn is not None:
                bn.running_mean.normal_(0.0, 0.3, generator=g)
                bn.running_var.uniform_(0.5, 2.0, generator=g)
                bn.bias.normal_(0.0, 0.2, generator=g)
                bn.weight.uniform_(0.5, 1.5, generator=g)
    return model.eval().double()


def spikes(n: int, t: int, seed: int, p: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, *INPUT, t)) < p).astype(np.uint8)


def torch_output(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float64))).numpy()


def params(graph) -> int:
    return int(sum(r["params"] for r in graph.summary()))


def graphs_equal(a, b) -> bool:
    """Structural equality: same nodes (names, kinds, arrays, hyper-parameters), edges and
    precision."""
    import dataclasses

    if list(a.nodes) != list(b.nodes) or a.edges != b.edges or a.precision != b.precision:
        return False

    def same(x, y) -> bool:
        if dataclasses.is_dataclass(x) and dataclasses.is_dataclass(y):
            if type(x) is not type(y):
                return False
            return all(
                same(getattr(x, f.name), getattr(y, f.name))
                for f in dataclasses.fields(x)
                if f.name != "meta"
            )
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return np.shape(x) == np.shape(y) and np.array_equal(x, y)
        return x == y

    return all(same(a.nodes[k], b.nodes[k]) for k in a.nodes)


def residual_index(model) -> int:
    """Index in ``model.blocks`` of the first Residual block."""
    from snnc.nn.blocks import Residual

    return next(i for i, b in enumerate(model.blocks) if isinstance(b, Residual))


def block_index(model, kind: str, nth: int = 0) -> int:
    """Index of the ``nth`` block of ``kind`` ("conv", "dense", ...) in ``model.blocks``."""
    idx = [i for i, b in enumerate(model.blocks) if getattr(b, "kind", None) == kind]
    return idx[nth]
