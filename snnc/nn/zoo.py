"""Model zoo: mlp, lenet, convnet, resnet. Every model is a :class:`SpikingNet`, rebuilt from
``{"name": ..., "config": {...}}`` by :func:`build` (the model file stores exactly that).

Sizes are chosen so that an MNIST epoch at the default ``T`` trains in minutes on a 2-core CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from snnc.errors import SnncError, UsageError
from snnc.nn.blocks import Conv, Dense, Flatten, Pool, Residual
from snnc.nn.neuron import NeuronParams


class SpikingNet(nn.Module):
    """A sequential spiking network. Input ``(N, *input_shape, T)`` spikes; output ``(N, classes, T)``.

    ``arch`` is the zoo entry that rebuilds it. Classification is by output spike count over T.
    """

    def __init__(self, blocks: list[nn.Module], input_shape: tuple[int, ...], arch: dict) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.input_shape = tuple(input_shape)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def neuron_params(self) -> NeuronParams:
        return NeuronParams.from_dict(self.arch["config"].get("neuron", {}))


def named_blocks(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """All blocks with a ``kind`` (Dense, Conv, Pool, Flatten, Residual and its parts), in order."""
    for name, module in model.named_modules():
        if getattr(module, "kind", None) is not None and module is not model:
            yield name, module


def prunable_blocks(model: nn.Module, kinds: tuple[str, ...] = ("conv", "dense")) -> list:
    """``(name, block)`` of blocks with a ``channel_mask`` of the given kinds (and Residual adds)."""
    out = []
    for name, block in named_blocks(model):
        if hasattr(block, "channel_mask") and (block.kind in kinds or block.kind == "residual"):
            out.append((name, block))
    return out


def _neuron(config: dict) -> NeuronParams:
    return NeuronParams.from_dict(config.get("neuron", {}))


def _flat_size(blocks: list[nn.Module], input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        x = torch.zeros((1, *input_shape, 2))
        for b in blocks:
            x = b(x)
    return int(x[0, ..., 0].numel())


def mlp(config: dict) -> list[nn.Module]:
    """Flatten -> Dense(hidden...) -> Dense(classes). Default hidden (128,) fits digits."""
    neuron = _neuron(config)
    sizes = [math.prod(config["input_shape"])] + list(config.get("hidden", [128]))
    blocks: list[nn.Module] = [Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        blocks.append(Dense(a, b, neuron))
    blocks.append(Dense(sizes[-1], config["num_classes"], neuron))
    return blocks


def lenet(config: dict) -> list[nn.Module]:
    """LeNet-style: conv c1 5x5 -> pool -> conv c2 5x5 -> pool -> dense 84 -> dense classes."""
    neuron = _neuron(config)
    c1, c2 = config.get("channels", [8, 16])
    in_c = config["input_shape"][0]
    feats: list[nn.Module] = [
        Conv(in_c, c1, 5, padding=2, neuron=neuron),
        Pool(2),
        Conv(c1, c2, 5, padding=2, neuron=neuron),
        Pool(2),
        Flatten(),
    ]
    flat = _flat_size(feats, config["input_shape"])
    return feats + [
        Dense(flat, config.get("hidden", 84), neuron),
        Dense(config.get("hidden", 84), config["num_classes"], neuron),
    ]


def convnet(config: dict) -> list[nn.Module]:
    """Three conv layers with BN (the pruning workhorse): conv 5x5/2 -> conv 3x3 -> pool -> conv 3x3 -> dense.

    The strided first conv halves the resolution where neurons are most numerous (training cost is
    dominated by neuron updates); the pool between conv2 and conv3 exercises pooling in the compiler.
    """
    neuron = _neuron(config)
    c1, c2, c3 = config.get("channels", [12, 24, 32])
    in_c = config["input_shape"][0]
    feats: list[nn.Module] = [
        Conv(in_c, c1, 5, stride=2, padding=2, neuron=neuron, batch_norm=True),
        Conv(c1, c2, 3, padding=1, neuron=neuron, batch_norm=True),
        Pool(2),
        Conv(c2, c3, 3, padding=1, neuron=neuron, batch_norm=True),
        Flatten(),
    ]
    flat = _flat_size(feats, config["input_shape"])
    return feats + [Dense(flat, config["num_classes"], neuron)]


def resnet(config: dict) -> list[nn.Module]:
    """Small residual net: conv 5x5/2 + BN -> residual(conv+BN, conv) -> pool -> residual -> dense."""
    neuron = _neuron(config)
    c1, c2 = config.get("channels", [16, 24])
    in_c = config["input_shape"][0]

    def res(cin: int, cout: int) -> Residual:
        main = [
            Conv(cin, cout, 3, padding=1, neuron=neuron, batch_norm=True),
            Conv(cout, cout, 3, padding=1, neuron=None),
        ]
        return Residual(main, Conv(cin, cout, 1, neuron=None), neuron)

    feats: list[nn.Module] = [
        Conv(in_c, c1, 5, stride=2, padding=2, neuron=neuron, batch_norm=True),
        res(c1, c1),
        Pool(2),
        res(c1, c2),
        Flatten(),
    ]
    flat = _flat_size(feats, config["input_shape"])
    return feats + [Dense(flat, config["num_classes"], neuron)]


ZOO: dict[str, Callable[[dict], list[nn.Module]]] = {
    "mlp": mlp,
    "lenet": lenet,
    "convnet": convnet,
    "resnet": resnet,
}


MAX_DIM = 1 << 16  # a size (features, channels, pixels per side, classes) no zoo model comes near
MAX_PARAMS = 50_000_000  # parameters and buffers together (the zoo's largest default: ~0.2 M)
_LISTS = {"lenet": ("channels", 2), "convnet": ("channels", 3), "resnet": ("channels", 2)}


def _size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_DIM


def check_config(name: str, config) -> None:
    """One-line :class:`SnncError` unless ``config`` is a zoo config of sane types and sizes:
    ``input_shape`` 1 to 3 sizes (3 for the conv nets), ``num_classes``, ``hidden`` and
    ``channels`` integers in [1, :data:`MAX_DIM`], ``neuron`` valid :class:`NeuronParams`."""

    def bad(key: str, want: str):
        got = repr(config.get(key))
        got = got if len(got) <= 40 else got[:37] + "..."
        return SnncError(f"architecture config {key!r} = {got}: {want}; the model file is corrupt")

    if not isinstance(config, dict):
        raise SnncError("architecture config is not an object; the model file is corrupt")
    for key in ("input_shape", "num_classes"):
        if key not in config:
            raise UsageError(f"architecture config lacks {key!r}; the model file is incomplete")
    shape = config["input_shape"]
    rank = (3,) if name in _LISTS else (1, 2, 3)
    if not (isinstance(shape, list | tuple) and len(shape) in rank and all(_size(v) for v in shape)):
        raise bad("input_shape", f"expected {' or '.join(map(str, rank))} integers in [1, {MAX_DIM}]")
    if not _size(config["num_classes"]):
        raise bad("num_classes", f"expected an integer in [1, {MAX_DIM}]")
    hidden = config.get("hidden", [128] if name == "mlp" else 84)
    if name == "mlp":
        ok = isinstance(hidden, list | tuple) and len(hidden) <= 64 and all(_size(v) for v in hidden)
        if not ok:
            raise bad("hidden", f"expected a list of at most 64 integers in [1, {MAX_DIM}]")
    elif name == "lenet" and not _size(hidden):
        raise bad("hidden", f"expected an integer in [1, {MAX_DIM}]")
    if name in _LISTS:
        key, n = _LISTS[name]
        v = config.get(key, [1] * n)
        if not (isinstance(v, list | tuple) and len(v) == n and all(_size(c) for c in v)):
            raise bad(key, f"expected {n} integers in [1, {MAX_DIM}]")
    neuron = config.get("neuron", {})
    if not isinstance(neuron, dict):
        raise bad("neuron", "expected an object")
    try:
        NeuronParams.from_dict(neuron)
    except (TypeError, ValueError) as e:
        raise bad("neuron", str(e)) from None


def build(name: str, config: dict, max_elements: int | None = None) -> SpikingNet:
    """Build a zoo model. ``config`` needs ``input_shape`` and ``num_classes``; the rest has defaults.

    The config is checked first (:func:`check_config`), then the model is built on torch's
    ``meta`` device (shapes only, no memory) and its parameter and buffer count checked against
    :data:`MAX_PARAMS` and ``max_elements`` (the tensor elements a model file holds), so a crafted
    config cannot make this allocate more than the file it came from.
    """
    if name not in ZOO:
        raise UsageError(f"unknown architecture {name!r}; choose one of {', '.join(ZOO)}")
    check_config(name, config)
    try:
        with torch.device("meta"):
            probe = SpikingNet(ZOO[name](config), tuple(config["input_shape"]), {})
    except (RuntimeError, ValueError) as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise SnncError(f"architecture {name!r} cannot be built from its config ({first})") from None
    count = sum(t.numel() for t in probe.state_dict().values())
    limit = MAX_PARAMS if max_elements is None else min(MAX_PARAMS, max_elements)
    if count > limit:
        raise SnncError(
            f"architecture {name!r} as configured needs {count} values, more than "
            + ("the limit" if limit == MAX_PARAMS else "the file holds")
            + f" ({limit}); the model file is corrupt"
        )
    blocks = ZOO[name](config)
    return SpikingNet(blocks, tuple(config["input_shape"]), {"name": name, "config": config})
