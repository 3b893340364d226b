"""Loihi 2 hardware rules: what ``snnc check`` reports and the ``loihi2`` emitter refuses to write.

Each rule is a named :class:`Rule` with its limit and its source (docs/loihi2.md §8 lists them); a
broken rule gives one :class:`Violation` per layer ``(layer, rule, message, source)``. Two kinds:

- layer rules read one layer's numbers as the network holds them (no re-quantization): the
  synaptic weights (IR mantissas or a netx file's integers) and any stored ``num_weight_bits`` /
  weight exponent, the threshold, bias and decay mantissas;
- graph rules read the whole network: 24-bit state wrap where it is decidable, and the neurocore
  mapping (the ``mapping`` that :func:`~snnc.targets.loihi2.map_cores.map_cores` records in
  ``node.meta``, or a fresh one when the graph has none) against
  :class:`~snnc.targets.loihi2.spec.CoreLimits`.

:func:`check_graph` checks an IR graph (the compile hook, :func:`require_rules`);
:func:`check_path` a build directory (its ``network.net``, else ``graph.safetensors``), a netx file
(ours or lava-dl's: the raw HDF5 fields for the layer rules, :func:`read_netx` for the graph
rules) or a ``graph.safetensors``. A value the IR cannot hold (a decay above 4096) is still
reported: the layer rules read it from the file, and the graph rules run on a copy with it clamped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnc import ir
from snnc.errors import SnncError, UsageError
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_UNITY, STATE_WRAP
from snnc.targets.loihi2.map_cores import chunk_axons, is_population, map_cores
from snnc.targets.loihi2.netx import NETX_FILE, netx_dense_weights, read_netx
from snnc.targets.loihi2.spec import (
    BIAS_EXP,
    BIAS_MAX,
    BIAS_MIN,
    LIMITS,
    VTH_MAX,
    WEIGHT_MANTISSA_BITS,
    CoreLimits,
    lava_weights,
    weight_sign_mode,
)

# Loihi 1's synapse weight exponent range (nengo-loihi ``validate_synapse_cfg``: -7 <= weight_exp
# <= 7), a conservative stand-in: Lava enforces none and Loihi 2's is not public (docs/loihi2.md §8).
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -7, 7
# Lava's bit-accurate LIF documents bias_exp as an unsigned 3-bit integer (0 to 7) (§4, §8).
BIAS_EXP_MAX = 7
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_EXAMPLES = 3  # offending values quoted per message


@dataclass(frozen=True)
class Violation:
    """One broken rule: the layer (IR node name), the rule's name, what is wrong, the source."""

    layer: str
    rule: str
    message: str
    source: str

    def line(self) -> str:
        return f"{self.layer}: {self.rule}: {self.message} ({self.source})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NeuronFields:
    """A population's neuron numbers as stored (``bias`` ``(C,)`` mantissas or ``None``).
    ``netx_default``: none stored; these are netx's own integrator defaults (§1.4)."""

    threshold: float
    current_decay: float
    voltage_decay: float
    bias: np.ndarray | None = None
    netx_default: bool = False


@dataclass(frozen=True)
class Layer:
    """One layer's numbers as the network holds them, for the layer rules.

    ``weight``: the synapse's stored weights (an IR dense's mantissas, a conv's or pool's effective
    integers, a netx file's values as written); ``num_weight_bits``: a stored field (else 8);
    ``exponents``: stored or derived weight exponents by what they are; ``netx_weight``: a dense
    layer's effective weights, which netx rescales (§1.5).
    """

    name: str
    kind: str
    weight: np.ndarray | None = None
    num_weight_bits: int | None = None
    exponents: dict = field(default_factory=dict)
    netx_weight: np.ndarray | None = None
    neuron: NeuronFields | None = None


@dataclass(frozen=True)
class Rule:
    """A named rule: ``check(layer) -> [message]`` (scope ``"layer"``) or ``check(context) ->
    [Violation]`` (scope ``"graph"``); ``limit`` and ``source`` are what docs/loihi2.md §8 lists."""

    name: str
    limit: str
    source: str
    scope: str
    check: Callable


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_path` found: the file checked, its layers, the rules, the violations and
    notes on rules that could not run."""

    path: str
    checked: str
    layers: int
    rules: int
    violations: list[Violation]
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        return f"{self.layers} layers, {self.rules} rules checked, {len(self.violations)} violations"

    def to_dict(self) -> dict:
        return {
            "net": self.path,
            "checked": self.checked,
            "layers": self.layers,
            "rules": self.rules,
            "violations": [v.to_dict() for v in self.violations],
            "notes": list(self.notes),
            "summary": self.summary(),
        }


# -- layer rules -------------------------------------------------------------------------------------
def _examples(values: np.ndarray) -> str:
    vals = np.unique(values.reshape(-1))[:_EXAMPLES]
    return ", ".join(f"{v:g}" for v in vals)


def lava_keeps(w: np.ndarray, mode: str, num_weight_bits: int = WEIGHT_MANTISSA_BITS) -> np.ndarray:
    """Which integer weights Lava's ``truncate_weights(clip_weights(w, mode, 8), mode,
    num_weight_bits)`` leaves unchanged (``utils/weightutils.py``, docs/loihi2.md §1.5)."""
    w = np.asarray(w, dtype=np.int64)
    return lava_weights(w, num_weight_bits, mode) == w


def _grid(mode: str, nwb: int) -> str:
    """The values Lava keeps in ``mode`` at ``nwb`` bits, in words."""
    k = WEIGHT_MANTISSA_BITS - nwb + int(mode == "mixed")
    top = ((2**WEIGHT_MANTISSA_BITS - 1) >> k) << k
    ranges = {"mixed": (-(2**WEIGHT_MANTISSA_BITS), top), "excitatory": (0, top), "inhibitory": (-top, 0)}
    lo, hi = ranges[mode]
    what = "integers" if k == 0 else ("even integers" if k == 1 else f"multiples of {2**k}")
    return f"{what} in [{lo}, {hi}]"


def _weight_bits(layer: Layer) -> list[str]:
    w = layer.weight
    if w is None or w.size == 0:
        return []
    w = np.asarray(w, dtype=np.float64)
    frac = w != np.round(w)
    if frac.any():
        return [f"{int(frac.sum())} of {w.size} weights are not integers, e.g. {_examples(w[frac])}"]
    out = []
    nwb = WEIGHT_MANTISSA_BITS if layer.num_weight_bits is None else int(layer.num_weight_bits)
    if not 1 <= nwb <= WEIGHT_MANTISSA_BITS:
        out.append(f"stored num_weight_bits {nwb} is outside [1, {WEIGHT_MANTISSA_BITS}]")
        nwb = WEIGHT_MANTISSA_BITS
    mode = weight_sign_mode(w)
    bad = ~lava_keeps(w.astype(np.int64), mode, nwb)
    if bad.any():
        out.append(
            f"{int(bad.sum())} of {w.size} weights are off the {mode}-sign {nwb}-bit grid "
            f"({_grid(mode, nwb)}), e.g. {_examples(w[bad])}"
        )
    return out


def _weight_exp(layer: Layer) -> list[str]:
    return [
        f"{what} {e} is outside [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}]"
        for what, e in layer.exponents.items()
        if not WEIGHT_EXP_MIN <= e <= WEIGHT_EXP_MAX
    ]


def _netx_dense(layer: Layer) -> list[str]:
    w = layer.netx_weight
    if w is None or w.size == 0:
        return []
    w = np.asarray(w, dtype=np.float64)
    if np.any(w != np.round(w)):
        return ["weight * 2**weight_exp is not an integer everywhere; netx stores integers (§1.2)"]
    w = w.astype(np.int64)
    if not w.any():
        return ["every weight is zero; netx crashes on it (OverflowError)"]
    stored, exp = netx_dense_weights(w)
    got = np.floor(stored * 2.0**exp) if exp < 0 else stored * 2**exp
    bad = got != w
    if bad.any():
        return [
            f"netx's rescaling and Lava's clip/truncate change {int(bad.sum())} of {w.size} weights, "
            f"e.g. {_examples(w[bad])}; use even weights in [-256, 254] with a positive one"
        ]
    return []


def _integral_in(values, lo: int, hi: int, what: str) -> list[str]:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    frac = v != np.round(v)
    if frac.any():
        return [f"{int(frac.sum())} {what} values are not integers, e.g. {_examples(v[frac])}"]
    bad = (v < lo) | (v > hi)
    if bad.any():
        n = f"{int(bad.sum())} of {v.size} {what} values are" if v.size > 1 else f"{what} is"
        return [f"{n} outside [{lo}, {hi}], e.g. {_examples(v[bad])}"]
    return []


def _bias_mantissa(layer: Layer) -> list[str]:
    if layer.neuron is None or layer.neuron.bias is None:
        return []
    return _integral_in(layer.neuron.bias, BIAS_MIN, BIAS_MAX, "bias mantissa")


def _bias_exp(layer: Layer) -> list[str]:
    if layer.neuron is None or layer.neuron.bias is None or 0 <= BIAS_EXP <= BIAS_EXP_MAX:
        return []
    return [f"bias_exp {BIAS_EXP} is outside [0, {BIAS_EXP_MAX}]"]


def _threshold(layer: Layer) -> list[str]:
    # netx's default integrator (vth = 1 << 17, one above the 17-bit field, so that it never fires)
    # is lava-dl's own choice for a dense layer without a neuron, not the file's: noted, not held
    # to the rule (docs/loihi2.md §8)
    if layer.neuron is None or layer.neuron.netx_default:
        return []
    return _integral_in([layer.neuron.threshold], 0, VTH_MAX, "threshold mantissa (vth)")


def _decays(layer: Layer) -> list[str]:
    if layer.neuron is None:
        return []
    out = []
    for what in ("current_decay", "voltage_decay"):
        out += _integral_in([getattr(layer.neuron, what)], 0, DECAY_UNITY, what)
    return out


# -- graph rules -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphContext:
    """What the graph rules read: the graph, the limits and its core mapping (per population,
    ``map_cores``' ``mapping`` records) with the violations met while mapping."""

    graph: ir.Graph
    limits: CoreLimits
    mapping: dict
    map_failures: tuple[Violation, ...]


def _populations(graph: ir.Graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if is_population(node)]


_MAPPING_KEYS = ("cores", "neurons_per_core", "sram_bytes_per_core", "in_axons_per_core")


def _core_mapping(graph: ir.Graph, limits: CoreLimits) -> tuple[dict, tuple[Violation, ...]]:
    """The mapping ``map_cores`` recorded in ``node.meta`` when every population has one, else a
    fresh one with the core budget lifted (the total is the ``cores-per-chip`` rule's). A layer
    one of whose neurons cannot fit a core stops ``map_cores``: it is reported, the later layers go
    unmapped."""
    pops = _populations(graph)
    recorded = {n: graph.nodes[n].meta.get("mapping") for n in pops}
    if all(isinstance(m, dict) and all(k in m for k in _MAPPING_KEYS) for m in recorded.values()):
        return recorded, ()
    try:
        mapped = map_cores(graph, dataclasses.replace(limits, cores=2**31 - 1))
    except SnncError as e:
        msg = str(e)
        layer = next((n for n in pops if re.search(rf"\blayer {re.escape(n)}\b", msg)), "network")
        rule = "synapse-memory-per-core"
        if layer in graph.nodes and chunk_axons(graph, graph.shapes(), layer, 1) > limits.in_axons_per_core:
            rule = "input-axons-per-core"
        v = Violation(layer, rule, f"{msg} (later layers not mapped)", _RULE_SOURCES[rule])
        return {}, (v,)
    return {n: mapped.nodes[n].meta["mapping"] for n in pops}, ()


def _per_core(ctx: GraphContext, rule: str, key: str, limit: int, what: str) -> list[Violation]:
    out = [v for v in ctx.map_failures if v.rule == rule]
    for name, m in ctx.mapping.items():
        if m[key] > limit:
            where = "one core" if m["cores"] == 1 else f"each of its {m['cores']} cores"
            msg = f"{m[key]} {what} on {where}, over the limit of {limit}"
            out.append(Violation(name, rule, msg, _RULE_SOURCES[rule]))
    return out


def _neurons_per_core(ctx: GraphContext) -> list[Violation]:
    return _per_core(ctx, "neurons-per-core", "neurons_per_core", ctx.limits.neurons_per_core, "neurons")


def _sram_per_core(ctx: GraphContext) -> list[Violation]:
    lim = ctx.limits.sram_bytes_per_core
    return _per_core(ctx, "synapse-memory-per-core", "sram_bytes_per_core", lim, "bytes of synapse memory")


def _axons_per_core(ctx: GraphContext) -> list[Violation]:
    lim = ctx.limits.in_axons_per_core
    return _per_core(ctx, "input-axons-per-core", "in_axons_per_core", lim, "input axons")


def _cores_per_chip(ctx: GraphContext) -> list[Violation]:
    total, first = 0, None
    for name, m in ctx.mapping.items():
        total += int(m["cores"])
        if first is None and total > ctx.limits.cores:
            first = name
    if first is None:
        return []
    msg = f"the network needs {total} neurocores, over the limit of {ctx.limits.cores}; {first} crosses it"
    return [Violation(first, "cores-per-chip", msg, _RULE_SOURCES["cores-per-chip"])]


def _input_drive(graph: ir.Graph, name: str, shapes: dict) -> tuple[int, int] | None:
    """The largest input sum, positive and negative, that one step of input spikes can give one
    neuron of ``name`` when its synapse reads the network input (any spike pattern is possible
    there); ``None`` for other layers (their inputs are other neurons' spikes)."""
    node = graph.nodes[name]
    preds = graph.predecessors(name)
    if isinstance(node, ir.Add) or len(preds) != 1:
        return None
    src = preds[0]
    if isinstance(graph.nodes[src], ir.Flatten):
        src = graph.predecessors(src)[0]
    if not isinstance(graph.nodes[src], ir.Input):
        return None
    if isinstance(node, ir.Pool):
        taps = node.kernel[0] * node.kernel[1]
        return int(max(node.weight, 0) * taps), int(max(-node.weight, 0) * taps)
    w = np.asarray(node.weight, dtype=np.float64) * 2.0 ** int(node.weight_exp)
    pos, neg = np.clip(w, 0, None), np.clip(-w, 0, None)
    if isinstance(node, ir.Dense):
        return int(math.floor(pos.sum(1).max())), int(math.floor(neg.sum(1).max()))
    # conv: each in-bounds tap reads its own input pixel, so the input spiking exactly under the
    # positive (negative) taps gives the sum of those taps at that output position
    _, h_in, w_in = shapes[src]
    _, h_out, w_out = shapes[name]
    kh, kw = w.shape[2:]
    (sy, sx), (py, px), (dy, dx) = node.stride, node.padding, node.dilation
    ys = np.arange(h_out)[None, :] * sy - py + np.arange(kh)[:, None] * dy  # (kh, h_out)
    xs = np.arange(w_out)[None, :] * sx - px + np.arange(kw)[:, None] * dx
    inb = ((ys >= 0) & (ys < h_in))[:, None, :, None] & ((xs >= 0) & (xs < w_in))[None, :, None, :]
    drive = [np.einsum("ckl,klyx->cyx", p.sum(1), inb.astype(np.float64)).max() for p in (pos, neg)]
    return int(math.floor(drive[0])), int(math.floor(drive[1]))


def _state_wrap(ctx: GraphContext) -> list[Violation]:
    """Layers whose 24-bit state surely wraps for some input: only those fed by the network input.

    Lava's ``u = rtz(u * (4096 - d) / 4096) + (a << 6)`` (§2.1) with a constant drive ``c = a << 6``
    climbs to a fixed point ``L`` with ``|L| >= (|c| - 1) * 4096 / d``, so ``u`` wraps once that
    bound reaches 2**23 (and always when ``d == 0``); a conv sum wraps by itself at 2**23 (§2.3).
    Deeper layers' inputs are spikes of other neurons, so their worst case is only a bound.
    """
    out = []
    shapes = ctx.graph.shapes()
    src = _RULE_SOURCES["state-24bit"]
    for name in _populations(ctx.graph):
        drive = _input_drive(ctx.graph, name, shapes)
        node = ctx.graph.nodes[name]
        if drive is None or node.neuron is None or ir.is_graded(node.neuron):  # LIF u only (§2.1)
            continue
        d = int(node.neuron.current_decay)
        for sign, a in zip(("+", "-"), drive, strict=True):
            if isinstance(node, ir.Conv) and a >= STATE_WRAP + (sign == "-"):  # [-2**23, 2**23 - 1]
                msg = f"the conv sum reaches {sign}{a} for some input and wraps at 24 bits"
                out.append(Violation(name, "state-24bit", msg, src))
                break
            c = a << ACTIVATION_SHIFT
            if a <= 0:
                continue
            if d == 0:
                steps = STATE_WRAP // c + 1 if sign == "+" else math.ceil(STATE_WRAP / c)
                msg = (
                    f"u has no decay (current_decay 0) and grows by {sign}{c} per step with every "
                    f"input spiking: it wraps at 24 bits after {steps} steps"
                )
            elif (c - 1) * DECAY_UNITY >= STATE_WRAP * d + (sign == "+"):
                low = (c - 1) * DECAY_UNITY // d
                msg = (
                    f"with every input spiking, u settles beyond {sign}{low} (drive {sign}{a} per step, "
                    f"current_decay {d}) and wraps at 24 bits"
                )
            else:
                continue
            out.append(Violation(name, "state-24bit", msg, src))
            break
    return out


# -- the rules ---------------------------------------------------------------------------------------
RULES: tuple[Rule, ...] = (
    Rule(
        "weight-bits",
        "at most 8 weight bits; mixed sign: even integers in [-256, 254]; excitatory: [0, 255]; "
        "inhibitory: [-255, 0] (Lava's clip_weights/truncate_weights leave them unchanged)",
        "docs/loihi2.md §1.5, §4",
        "layer",
        _weight_bits,
    ),
    Rule(
        "weight-exp",
        f"synaptic weight exponent in [{WEIGHT_EXP_MIN}, {WEIGHT_EXP_MAX}] (Loihi 1's range, a stand-in)",
        "docs/loihi2.md §8",
        "layer",
        _weight_exp,
    ),
    Rule(
        "netx-dense-scaling",
        "netx's optimize_weight_bits and Lava's clip/truncate reproduce every dense weight",
        "docs/loihi2.md §1.5, §6",
        "layer",
        _netx_dense,
    ),
    Rule(
        "bias-mantissa",
        f"13-bit signed: integers in [{BIAS_MIN}, {BIAS_MAX}]",
        "docs/loihi2.md §4",
        "layer",
        _bias_mantissa,
    ),
    Rule(
        "bias-exp",
        f"bias_exp (netx: {BIAS_EXP}) in [0, {BIAS_EXP_MAX}]",
        "docs/loihi2.md §1.4, §4",
        "layer",
        _bias_exp,
    ),
    Rule("threshold-mantissa", f"17-bit unsigned: [0, {VTH_MAX}]", "docs/loihi2.md §4", "layer", _threshold),
    Rule(
        "decay", f"12-bit decays: integers in [0, {DECAY_UNITY}]", "docs/loihi2.md §2.1, §4", "layer", _decays
    ),
    Rule(
        "state-24bit",
        "u and conv sums stay within 24 bits for every input (decided for layers fed by the input)",
        "docs/loihi2.md §2.1, §2.3, §4",
        "graph",
        _state_wrap,
    ),
    Rule(
        "neurons-per-core",
        "neurons on one neurocore <= CoreLimits.neurons_per_core (4095, Intel's compiler)",
        "docs/loihi2.md §4.1",
        "graph",
        _neurons_per_core,
    ),
    Rule(
        "synapse-memory-per-core",
        "synapse memory of one neurocore <= CoreLimits.sram_bytes_per_core (12000 64-bit words)",
        "docs/loihi2.md §4.1",
        "graph",
        _sram_per_core,
    ),
    Rule(
        "input-axons-per-core",
        "input axons of one neurocore <= CoreLimits.in_axons_per_core (16000, Intel's compiler)",
        "docs/loihi2.md §4.1",
        "graph",
        _axons_per_core,
    ),
    Rule(
        "cores-per-chip",
        "neurocores in total <= CoreLimits.cores (128, one chip)",
        "docs/loihi2.md §4",
        "graph",
        _cores_per_chip,
    ),
)
_RULE_SOURCES = {r.name: r.source for r in RULES}


# -- checking a graph --------------------------------------------------------------------------------
def _neuron_fields(neuron: ir.CubaLIF | None, decays: tuple | None = None) -> NeuronFields | None:
    if neuron is None:
        return None
    # a sigma-delta neuron (docs/loihi2.md §2.7) has no decays: 0, 0 satisfies the decay rules
    own = (getattr(neuron, "current_decay", 0), getattr(neuron, "voltage_decay", 0))
    cd, vd = decays if decays is not None else own
    return NeuronFields(neuron.threshold, cd, vd, neuron.bias)


def graph_layers(graph: ir.Graph, raw_decays: dict | None = None) -> list[Layer]:
    """The layer-rule view of a fixed-point graph (``raw_decays``: decays read from the file where
    the IR holds clamped ones)."""
    raw_decays = raw_decays or {}
    layers = []
    for name, node in graph.nodes.items():
        if not isinstance(node, ir.Conv | ir.Dense | ir.Pool | ir.Add):
            continue
        neuron = _neuron_fields(getattr(node, "neuron", None), raw_decays.get(name))
        if isinstance(node, ir.Dense):
            eff = np.asarray(node.weight) * 2.0 ** int(node.weight_exp)
            exps = {"weight_exp": int(node.weight_exp)}
            if np.all(eff == np.round(eff)) and np.any(eff):
                exps["netx weight_exp"] = netx_dense_weights(eff.astype(np.int64))[1]
            layers.append(Layer(name, node.kind, node.weight, None, exps, eff, neuron))
        elif isinstance(node, ir.Conv):  # Lava's conv ignores weight_exp: the effective integers (§2.3)
            eff = np.asarray(node.weight) * 2.0 ** int(node.weight_exp)
            layers.append(Layer(name, node.kind, eff, neuron=neuron))
        elif isinstance(node, ir.Pool):
            layers.append(Layer(name, node.kind, np.array([node.weight]), neuron=neuron))
        else:
            layers.append(Layer(name, node.kind, neuron=neuron))
    return layers


def _layer_violations(layers: list[Layer]) -> list[Violation]:
    out = []
    for rule in RULES:
        if rule.scope == "layer":
            out += [Violation(lay.name, rule.name, m, rule.source) for lay in layers for m in rule.check(lay)]
    return out


def _graph_violations(graph: ir.Graph, limits: CoreLimits) -> list[Violation]:
    mapping, failures = _core_mapping(graph, limits)
    ctx = GraphContext(graph, limits, mapping, failures)
    out = []
    for rule in RULES:
        if rule.scope == "graph":
            out += rule.check(ctx)
    return out


def _in_order(violations: list[Violation], names: list[str]) -> list[Violation]:
    pos = {n: i for i, n in enumerate(names)}
    rank = {r.name: i for i, r in enumerate(RULES)}
    return sorted(violations, key=lambda v: (pos.get(v.layer, len(pos)), rank.get(v.rule, len(rank))))


def check_graph(graph: ir.Graph, limits: CoreLimits | None = None) -> list[Violation]:
    """Every rule on a fixed-point graph, in layer then rule order; ``limits`` default: one chip."""
    if graph.precision != "fixed":
        raise UsageError("snnc check needs a fixed-point graph (a build or a netx file); compile it first")
    limits = limits or LIMITS
    found = _layer_violations(graph_layers(graph)) + _graph_violations(graph, limits)
    return _in_order(found, list(graph.nodes))


def require_rules(graph: ir.Graph) -> None:
    """Raise :class:`SnncError` naming the first violation (and how many more) of ``graph`` under
    the core limits it was mapped with (``graph.meta["core_limits"]``, else one chip)."""
    recorded = graph.meta.get("core_limits")
    limits = CoreLimits(**recorded) if isinstance(recorded, dict) else LIMITS
    found = check_graph(graph, limits)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more; run snnc check on a --target sim build to list them)"
        raise SnncError(
            f"{first.layer} breaks the Loihi 2 rule {first.rule}: {first.message} ({first.source})"
            + (more if len(found) > 1 else "")
        )


# -- checking a file ---------------------------------------------------------------------------------
def _out_of_range_decay(v) -> bool:
    try:
        return not 0 <= float(v) <= DECAY_UNITY
    except (TypeError, ValueError):
        return True


def _clamped(v) -> int:
    return int(min(max(float(v), 0), DECAY_UNITY))


def _scalar(ds) -> float:
    return float(np.asarray(ds[()]).reshape(-1)[0])


_EXP_KEYS = ("weight_exp", "weightExp", "wgtExp", "neuron/weight_exp", "neuron/wgtExp")
_NWB_KEYS = ("num_weight_bits", "numWeightBits")


def _raw_netx_layer(grp, kind: str, i: int) -> Layer:
    """A netx layer's numbers as written (netx's own defaults where it supplies them, §1.4)."""
    name = f"{kind}{i}"  # read_netx's node names
    w = None
    if "weight" in grp and not hasattr(grp["weight"], "keys"):  # complex weights: read_netx refuses
        w = np.asarray(grp["weight"][()], dtype=np.float64)
    exps = {k: int(_scalar(grp[k])) for k in _EXP_KEYS if k in grp}
    nwb = next((int(_scalar(grp[k])) for k in _NWB_KEYS if k in grp), None)
    ng = grp["neuron"] if "neuron" in grp else None
    if ng is None:  # netx's default integrator for a dense layer (§1.4)
        thr, cd, vd = 1 << 17, 0, DECAY_UNITY
    else:
        thr, cd, vd = (_scalar(ng[k]) if k in ng else 0.0 for k in ("vThMant", "iDecay", "vDecay"))
    bias = np.asarray(grp["bias"][()], dtype=np.float64).reshape(-1) if "bias" in grp else None
    neuron = NeuronFields(thr, cd, vd, bias, netx_default=ng is None)
    if kind == "dense" and w is not None:
        if w.ndim == 1:
            w = w.reshape(int(np.asarray(grp["shape"][()]).reshape(-1)[0]), -1)
        netx_w = np.trunc(w)  # netx reads weights with .astype(int) (§1.2)
        if np.any(netx_w):
            exps["netx weight_exp"] = netx_dense_weights(netx_w.astype(np.int64))[1]
        return Layer(name, kind, w, nwb, exps, netx_w, neuron)
    if kind == "pool" and w is not None:
        w = w.reshape(-1)[:1]
    return Layer(name, kind, w, nwb, exps, None, neuron)


def _read_raw_netx(path: Path) -> tuple[list[Layer], bool]:
    """The layer-rule view of a netx file, and whether a decay needs clamping for the IR."""
    import h5py

    from snnc.fileio import check_h5_self_contained

    try:
        f = check_h5_self_contained(h5py.File(path, "r"), path)
    except OSError:
        raise UsageError(f"{path} is not an HDF5 file (corrupt or wrong format); give a netx file") from None
    layers, clamp = [], False
    with f:
        if "layer" not in f or not hasattr(f["layer"], "keys"):
            raise UsageError(f"{path}: missing group 'layer'; not a netx network file")
        for key in sorted(f["layer"].keys(), key=lambda k: int(k) if k.isdigit() else -1):
            grp = f["layer"][key]
            kind = grp["type"][()] if "type" in grp else b""
            kind = kind.reshape(-1)[0] if isinstance(kind, np.ndarray) and kind.size else kind
            kind = kind.decode("ascii", "ignore") if isinstance(kind, bytes) else str(kind)
            kind = kind.strip("\x00").strip()
            if kind not in ("dense", "conv", "pool") or not key.isdigit():
                continue
            lay = _raw_netx_layer(grp, kind, int(key))
            layers.append(lay)
            if lay.neuron is not None and "neuron" in grp:
                decays = (lay.neuron.current_decay, lay.neuron.voltage_decay)
                clamp |= any(_out_of_range_decay(v) for v in decays)
    return layers, clamp


def _netx_graph(path: Path, clamp: bool) -> ir.Graph:
    """``read_netx(path)``; with ``clamp``, of a temporary copy whose decays are clamped into
    [0, 4096] (the IR holds no other), for the graph rules only."""
    if not clamp:
        return read_netx(path)
    import h5py

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / path.name
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            for key in f["layer"]:
                ng = f["layer"][key].get("neuron")
                for k in ("iDecay", "vDecay"):
                    if ng is not None and k in ng and _out_of_range_decay(_scalar(ng[k])):
                        v = _clamped(_scalar(ng[k]))
                        del ng[k]
                        ng.create_dataset(k, data=v)
        return read_netx(tmp)


def _graph_file(path: Path) -> tuple[ir.Graph, dict]:
    """A ``graph.safetensors`` and the decays its header holds (per node); a decay outside
    [0, 4096] is clamped in a temporary copy first, so the IR can hold the graph."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from snnc.ir.serialize import load_graph

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            header = json.loads(meta["snnc"])
            raw = {}
            for d in header["nodes"]:
                n = d.get("neuron")
                if isinstance(n, dict):
                    raw[d["name"]] = (n.get("current_decay"), n.get("voltage_decay"))
            if not any(_out_of_range_decay(v) for pair in raw.values() for v in pair):
                return load_graph(path), raw
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # a damaged file (safetensors has its own error types): load_graph's one line
        return load_graph(path), {}
    for d in header["nodes"]:
        n = d.get("neuron")
        if isinstance(n, dict):
            for k in ("current_decay", "voltage_decay"):
                n[k] = _clamped(n[k])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / path.name
        save_file(tensors, str(tmp), metadata={"snnc": json.dumps(header)})
        return load_graph(tmp), raw


def check_path(path: str | Path, limits: CoreLimits | None = None) -> CheckReport:
    """Check a build directory (``network.net``, else ``graph.safetensors``), a netx file or a
    ``graph.safetensors`` against every rule (``limits`` default: one chip)."""
    from snnc.ir.serialize import GRAPH_FILE

    p = Path(path)
    limits = limits or LIMITS
    if not p.exists():
        raise UsageError(f"{p} does not exist; give a build directory (snnc compile -o) or a netx .net file")
    if p.is_dir():
        if (p / NETX_FILE).is_file():
            target = p / NETX_FILE
        elif (p / GRAPH_FILE).is_file():
            target = p / GRAPH_FILE
        else:
            raise UsageError(f"{p} holds neither {NETX_FILE} nor {GRAPH_FILE}; run snnc compile first")
    else:
        target = p
    from snnc.checkpoint import refuse_lfs_pointer

    refuse_lfs_pointer(target)
    with open(target, "rb") as fh:
        head = fh.read(9)
    netx = head[:8] == _HDF5_MAGIC
    if not netx and head[8:9] != b"{":  # safetensors: an 8-byte header length, then its JSON
        what = "neither a netx HDF5 file nor a graph.safetensors"
        raise UsageError(f"{target} is {what}; give a build directory or a netx .net file")
    notes: tuple[str, ...] = ()
    if netx:
        layers, clamp = _read_raw_netx(target)
        found = _layer_violations(layers)
        notes = tuple(
            f"{lay.name}: no neuron stored; netx's default integrator (vth 2**17, never fires) is "
            "lava-dl's own and is not held to the threshold rule"
            for lay in layers
            if lay.neuron is not None and lay.neuron.netx_default
        )
        try:
            graph = _netx_graph(target, clamp)
        except SnncError as e:  # a network snnc cannot simulate: its layer rules still hold
            graph, notes = None, (*notes, f"state and core rules not checked: {e}")
        if graph is not None:
            found += _graph_violations(graph, limits)
        names = list(graph.nodes) if graph is not None else [lay.name for lay in layers]
    else:
        graph, raw = _graph_file(target)
        if graph.precision != "fixed":
            raise UsageError(f"{target} holds a float graph; check a loihi2 or sim build (snnc compile)")
        layers = graph_layers(graph, raw)
        found = _layer_violations(layers) + _graph_violations(graph, limits)
        names = list(graph.nodes)
    return CheckReport(str(p), str(target), len(layers), len(RULES), _in_order(found, names), notes)
