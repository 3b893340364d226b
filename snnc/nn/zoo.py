"""Model zoo: mlp, lenet, convnet, resnet. Every model is a :class:`SpikingNet`, rebuilt from
``{"name": ..., "config": {...}}`` by :func:`build` (the model file stores exactly that).

Sizes are chosen so that an MNIST epoch at the default ``T`` trains in minutes on a 2-core CPU.
"""

from __future__ import annotations

import importlib
import math
import re
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


LAYERS = "layers"  # a network described layer by layer (config "layers"), as graph_to_model makes it
MAX_LAYERS = 256


def _neuron_of(spec: dict) -> NeuronParams | None:
    n = spec.get("neuron")
    return None if n is None else NeuronParams.from_dict(n)


def _one_or_pair(v) -> int | tuple[int, int]:
    """An int for equal pairs (as the zoo's own blocks hold them), else the pair."""
    a, b = (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))
    return a if a == b else (a, b)


def _layer_block(spec: dict) -> nn.Module:
    kind = spec["kind"]
    if kind == "flatten":
        return Flatten()
    if kind == "dense":
        return Dense(
            spec["in"],
            spec["out"],
            _neuron_of(spec),
            bias=spec.get("bias", False),
            batch_norm=spec.get("bn", False),
        )
    if kind == "pool":
        return Pool(spec["kernel"], spec["stride"], weight=spec["weight"], neuron=_neuron_of(spec))
    if kind == "conv":
        kh, kw = spec["kernel"]
        block = Conv(
            spec["in"],
            spec["out"],
            kh,
            stride=_one_or_pair(spec.get("stride", 1)),
            padding=_one_or_pair(spec.get("padding", 0)),
            dilation=_one_or_pair(spec.get("dilation", 1)),
            groups=spec.get("groups", 1),
            neuron=_neuron_of(spec),
            bias=spec.get("bias", False),
            batch_norm=spec.get("bn", False),
            pool=spec.get("pool", 1),
        )
        if kw != kh:  # the block's constructor makes square kernels: give it the (kH, kW) one
            shape = (spec["out"], spec["in"] // block.groups, kh, kw)
            block.weight = nn.Parameter(torch.empty(shape))
            block.weight_mask = torch.ones(shape)
        return block
    if kind == "residual":
        main = [_layer_block(m) for m in spec["main"]]
        return Residual(main, _layer_block(spec["shortcut"]), _neuron_of(spec))
    raise ValueError(f"unknown layer kind {kind!r}")


def layers(config: dict) -> list[nn.Module]:
    """The blocks ``config["layers"]`` lists, in order. Each entry is ``{"kind": ...}`` with:
    ``dense``: ``in``, ``out``, ``bias``, ``bn``, ``neuron``; ``conv``: ``in``, ``out``, ``kernel``
    ``[kH, kW]``, ``stride``/``padding``/``dilation`` ``[y, x]``, ``groups``, ``bias``, ``bn``,
    ``neuron`` (null: a synapse only, inside a residual); ``pool``: ``kernel``, ``stride``,
    ``weight`` (the tap), ``neuron``; ``flatten``; ``residual``: ``main`` (layers, the last a
    synapse-only conv), ``shortcut`` (a synapse-only conv), ``neuron``. ``neuron`` is a
    :class:`NeuronParams` dict (per layer: imported nets have one threshold per layer)."""
    return [_layer_block(spec) for spec in config["layers"]]


def _pair_list(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


def _block_spec(block: nn.Module) -> dict:
    """A block's entry in a ``layers`` config (the inverse of ``_layer_block``)."""
    neuron = getattr(block, "neuron", None)
    nspec = None if neuron is None else neuron.to_dict()
    if isinstance(block, Flatten):
        return {"kind": "flatten"}
    if isinstance(block, Pool):
        k, st = block.kernel_size, block.stride
        if not (isinstance(k, int) and isinstance(st, int)):
            raise SnncError("a Pool with a non-square window cannot be described as layers")
        return {"kind": "pool", "kernel": k, "stride": st, "weight": float(block.weight), "neuron": nspec}
    if isinstance(block, Residual):
        return {
            "kind": "residual",
            "main": [_block_spec(b) for b in block.main],
            "shortcut": _block_spec(block.shortcut),
            "neuron": nspec,
        }
    if isinstance(block, Dense | Conv):
        w = block.weight
        spec = {"bias": block.bias is not None, "bn": block.bn is not None, "neuron": nspec}
        if isinstance(block, Dense):
            return {"kind": "dense", "in": int(w.shape[1]), "out": int(w.shape[0]), **spec}
        return {
            "kind": "conv",
            "in": int(w.shape[1] * block.groups),
            "out": int(w.shape[0]),
            "kernel": [int(w.shape[2]), int(w.shape[3])],
            "stride": _pair_list(block.stride),
            "padding": _pair_list(block.padding),
            "dilation": _pair_list(block.dilation),
            "groups": int(block.groups),
            "pool": int(block.pool),
            **spec,
        }
    raise SnncError(f"a {type(block).__name__} is not an snnc.nn block; it cannot be described as layers")


def describe(model: SpikingNet, num_classes: int | None = None) -> dict:
    """The :data:`LAYERS` config that rebuilds ``model`` block for block: ``build(LAYERS, config)``
    has the same modules and state-dict keys, so ``load_state_dict(model.state_dict())`` gives the
    same network. For a model assembled by hand (no zoo ``arch``), so it can go into a model file."""
    with torch.no_grad():
        out = model(torch.zeros((1, *model.input_shape, 1), device=next(model.parameters()).device))
    return {
        "input_shape": [int(v) for v in model.input_shape],
        "num_classes": int(num_classes or out.shape[1]),
        "layers": [_block_spec(b) for b in model.blocks],
    }


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
    if name == LAYERS:
        specs = config.get("layers")
        if not (isinstance(specs, list) and 1 <= len(specs) <= MAX_LAYERS):
            raise bad("layers", f"expected a list of 1 to {MAX_LAYERS} layers")
        for i, spec in enumerate(specs):
            problem = _layer_problem(spec, depth=0)
            if problem:
                raise SnncError(f"architecture config layer {i}: {problem}; the model file is corrupt")


_LAYER_INTS = {
    "dense": ("in", "out"),
    "conv": ("in", "out", "groups", "pool"),
    "pool": ("kernel", "stride"),
    "flatten": (),
    "residual": (),
}


def _layer_problem(spec, depth: int) -> str | None:
    """Why ``spec`` is not a valid entry of a ``layers`` config (None when it is)."""
    if not isinstance(spec, dict) or spec.get("kind") not in _LAYER_INTS:
        return f"expected an object with 'kind' one of {', '.join(_LAYER_INTS)}"
    kind = spec["kind"]
    for key in _LAYER_INTS[kind]:
        if not _size(spec.get(key, 1 if key in ("groups", "pool") else None)):
            return f"{kind} {key!r} must be an integer in [1, {MAX_DIM}]"
    if kind == "conv":
        for key, low in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            v = spec.get(key, [low, low])
            ok = isinstance(v, list | tuple) and len(v) == 2
            if not (
                ok and all(isinstance(x, int) and not isinstance(x, bool) and low <= x <= MAX_DIM for x in v)
            ):
                return f"conv {key!r} must be two integers in [{low}, {MAX_DIM}]"
    if kind == "pool" and not isinstance(spec.get("weight"), int | float):
        return "pool 'weight' must be a number"
    for key in ("bias", "bn"):
        if not isinstance(spec.get(key, False), bool):
            return f"{kind} {key!r} must be true or false"
    if kind in ("dense", "conv", "pool", "residual"):
        n = spec.get("neuron")
        if n is None and kind in ("pool", "residual", "dense"):
            return f"{kind} needs a 'neuron'"
        if n is not None:
            try:
                NeuronParams.from_dict(n)
            except (TypeError, ValueError, AttributeError) as e:
                return f"{kind} 'neuron': {e}"
    if kind == "residual":
        if depth > 0:
            return "residual blocks do not nest"
        main, short = spec.get("main"), spec.get("shortcut")
        if not (isinstance(main, list) and 1 <= len(main) <= MAX_LAYERS):
            return "residual 'main' must be a list of layers"
        for m in [*main, short]:
            problem = _layer_problem(m, depth + 1)
            if problem:
                return f"residual: {problem}"
            if m["kind"] not in ("conv", "dense"):
                return "residual layers must be conv or dense"
    return None


def build(name: str, config: dict, max_elements: int | None = None) -> SpikingNet:
    """Build a zoo model. ``config`` needs ``input_shape`` and ``num_classes``; the rest has defaults.

    ``name`` is a :data:`ZOO` name, :data:`LAYERS` (a network described layer by layer, what
    :func:`snnc.nn.from_graph.graph_to_model` makes of a netx or NIR graph) or a user architecture
    ``package.module:factory`` (:func:`build_user`: this imports the user's module, so callers pass
    such a name only when the user named it on the command line).

    The config is checked first (:func:`check_config`), then the model is built on torch's
    ``meta`` device (shapes only, no memory) and its parameter and buffer count checked against
    :data:`MAX_PARAMS` and ``max_elements`` (the tensor elements a model file holds), so a crafted
    config cannot make this allocate more than the file it came from.
    """
    if is_user_arch(name):
        return build_user(name, config)
    if name not in ZOO and name != LAYERS:
        raise UsageError(f"unknown architecture {name!r}; choose one of {', '.join(ZOO)}")
    builder = layers if name == LAYERS else ZOO[name]
    check_config(name, config)
    try:
        with torch.device("meta"):
            probe = SpikingNet(builder(config), tuple(config["input_shape"]), {})
            if name == LAYERS:  # the layer sizes must chain: one step on meta tensors checks them
                probe(torch.zeros((1, *config["input_shape"], 1)))
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
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
    blocks = builder(config)
    return SpikingNet(blocks, tuple(config["input_shape"]), {"name": name, "config": config})


# -- user architectures: ``--arch package.module:factory`` -----------------------------------------
_USER_SPEC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_BLOCK_TYPES = (Dense, Conv, Pool, Flatten, Residual)


def is_user_arch(name) -> bool:
    """Whether ``name`` names a user architecture (``package.module:factory``) rather than the zoo's."""
    return isinstance(name, str) and ":" in name


def check_user_spec(spec: str) -> None:
    """A one-line :class:`UsageError` unless ``spec`` reads ``package.module:factory``."""
    if not _USER_SPEC.fullmatch(spec):
        raise UsageError(
            f"--arch {spec[:80]!r} is neither a zoo architecture ({', '.join(ZOO)}) nor "
            "package.module:factory"
        )


def user_factory(spec: str) -> Callable:
    """Import ``package.module`` and return its ``factory`` (one-line errors for a module that does
    not import, a missing attribute, or one that is not callable). Imports user code: call it only
    for a name the user gave on the command line."""
    check_user_spec(spec)
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"--arch {spec}: cannot import module {module_name!r} ({e}); put its folder on PYTHONPATH"
        ) from None
    except Exception as e:  # the user's module failed while it was being imported
        first = (str(e).splitlines() or [""])[0][:200]
        raise SnncError(
            f"--arch {spec}: importing {module_name!r} failed ({type(e).__name__}: {first})"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"--arch {spec}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise UsageError(f"--arch {spec}: {attr!r} is a {type(factory).__name__}, not a function")
    return factory


def build_user(spec: str, config: dict) -> SpikingNet:
    """Call the user's factory (no arguments) and return its network as a :class:`SpikingNet`
    whose ``arch`` is ``{"name": spec, "config": {"input_shape", "num_classes"}}``.

    The factory returns a :class:`SpikingNet`, or a list / ``nn.Sequential`` of ``snnc.nn`` blocks
    (Dense, Conv, Pool, Flatten, Residual; the input shape is then ``config["input_shape"]``).
    One-line errors when it raises, returns anything else, or builds for another input shape or
    number of classes than ``config`` gives."""
    factory = user_factory(spec)
    try:
        made = factory()
    except Exception as e:  # the user's code: any failure is reported in one line
        first = (str(e).splitlines() or [""])[0][:200]
        raise SnncError(f"--arch {spec}: the factory raised {type(e).__name__}: {first}") from None
    want = tuple(config.get("input_shape") or ())
    if isinstance(made, SpikingNet):
        blocks, shape = list(made.blocks), tuple(made.input_shape)
    elif isinstance(made, list | tuple | nn.Sequential | nn.ModuleList):
        blocks, shape = list(made), want
    else:
        raise UsageError(
            f"--arch {spec}: the factory returned {type(made).__name__!r}, not a network of snnc.nn "
            "blocks (return a snnc.nn.SpikingNet or a list of snnc.nn blocks)"
        )
    bad = [type(b).__name__ for b in blocks if not isinstance(b, _BLOCK_TYPES)]
    if not blocks or bad:
        what = f"holds {', '.join(sorted(set(bad)))}" if bad else "is empty"
        raise UsageError(
            f"--arch {spec}: the network {what}; build it from snnc.nn Dense, Conv, Pool, Flatten, Residual"
        )
    if want and shape != want:
        raise UsageError(f"--arch {spec}: the network takes input {shape} but the data is {want}")
    net = SpikingNet(blocks, shape, {})
    try:
        with torch.no_grad():
            out = net(torch.zeros((1, *shape, 1)))
    except (RuntimeError, ValueError, IndexError) as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise UsageError(f"--arch {spec}: the network does not run on input {shape} ({first})") from None
    classes = config.get("num_classes")
    if out.dim() != 3 or (classes is not None and out.shape[1] < classes):
        raise UsageError(
            f"--arch {spec}: the network's output {tuple(out.shape[1:-1])} has fewer than the data's "
            f"{classes} classes; end with Dense(..., {classes}, ...)"
        )
    net.arch = {"name": spec, "config": {"input_shape": list(shape), "num_classes": int(out.shape[1])}}
    return net
