"""``map_cores``: choose each dense layer's synapse encoding and partition every neuron population
onto Loihi 2 neurocores.

Invariant: the graph's computation is unchanged; every population node (Conv/Dense with a neuron,
Pool, Add, and an Input with a neuron) gets ``node.meta["cores"]`` (int, number of neurocores) and
``node.meta["mapping"]`` (per-layer neurons, synapses as deployed, synapse memory, input axons,
utilization); every Dense with a neuron gets ``node.meta["synapse"]``, ``"sparse"`` or ``"dense"``
(the emitters build a Lava ``Sparse`` or ``Dense`` process from it, docs/loihi2.md §7). With
``enforce=True`` (the ``loihi2`` target) the total fits :class:`CoreLimits`, else
:class:`SnncError` names the first layer that does not fit and the limit it breaks; with
``enforce=False`` (targets that only size the net on Loihi 2) nothing is refused: a layer that does
not fit is recorded with ``"fits": False`` and a note.

The resource model (docs/loihi2.md §4.1; Intel's per-core registers as its compiler prints them for
lava-dl's PilotNet, MNIST and Oxford nets; the synapse encodings are **estimates** that bound every
figure it printed). A core holds one contiguous chunk of one layer's neurons (channel-major) and

- at most ``neurons_per_core`` neurons (4095): neuron state has its own memory;
- at most ``sram_bytes_per_core`` bytes (96000: 12000 64-bit words) of synapses, counted in whole
  64-bit words:

  - dense encoding: per input axon, a row holding the core's ``n`` neurons at ``b + 13`` bits each,
    ``ceil(n (b + 13) / 64)`` words (``b``: the bits netx hands Lava's Dense, its
    ``num_weight_bits``; 13 bits of per-synapse overhead, fitted to Intel's printouts);
  - sparse encoding (Lava ``Sparse``): per input axon, its nonzero synapses into the core, each with
    ``b + 13`` bits and a ``ceil(log2 n)``-bit neuron index, ``ceil(k (b + 13 + idx) / 64)`` words;
  - conv (shared kernels): per input channel the core reads and kernel tap, a row holding the
    weights of the core's output channels (of that group) at 8 bits (netx hands Lava's Conv
    ``num_weight_bits = 8``), ``ceil(c 8 / 64)`` words; zero taps included (§7.1). A Pool is the
    grouped conv netx writes for it (one channel per group); an Add stores every feeding synapse;
- at most ``in_axons_per_core`` input axons (16000): a dense or sparse layer's fan-in (one axon per
  input neuron); a conv or pool layer receives spikes through convolutional (population) axons,
  ``stride_y * stride_x`` per feeding synapse (Intel's compiler prints 1 or 2 per conv core); an
  input population's drive is one.

A Dense layer with a neuron takes the sparse encoding when its whole-layer synapse words are fewer
that way. Each layer takes the fewest cores (balanced contiguous chunks) for which every chunk fits;
layers do not share cores.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from snnc import ir
from snnc.compile.passes import note
from snnc.errors import SnncError
from snnc.targets.loihi2.netx import netx_optimize_weight_bits
from snnc.targets.loihi2.spec import (
    LIMITS,
    SYNAPSE_OVERHEAD_BITS,
    SYNAPSE_WORD_BITS,
    SYNAPSE_WORD_BYTES,
    WEIGHT_BITS,
    CoreLimits,
)

DENSE, SPARSE = "dense", "sparse"  # node.meta["synapse"] of a Dense layer


# -- the synapse encodings (module docstring) --------------------------------------------------------
def words(bits):
    """Whole 64-bit synapse-memory words holding ``bits`` (an int or an integer array)."""
    return -(-bits // SYNAPSE_WORD_BITS)


def neuron_index_bits(n: int) -> int:
    """Bits of a sparse synapse's neuron index on a core of ``n`` neurons (at least 1)."""
    return max(1, math.ceil(math.log2(max(n, 2))))


def dense_words(n: int, fan_in: int, bits: int) -> int:
    """Dense encoding of ``n`` neurons with ``fan_in`` inputs on one core: one row per input axon."""
    return fan_in * words(n * (bits + SYNAPSE_OVERHEAD_BITS))


def sparse_words(per_axon: np.ndarray, n: int, bits: int) -> int:
    """Sparse encoding on one core of ``n`` neurons: ``per_axon[i]`` nonzero synapses of axon ``i``."""
    per = bits + SYNAPSE_OVERHEAD_BITS + neuron_index_bits(n)
    return int(words(np.asarray(per_axon, np.int64) * per).sum())


def conv_words(rows, out_per_row, bits: int = WEIGHT_BITS):
    """Shared conv kernels on one core: ``rows`` (input channel, tap) rows of ``out_per_row``
    weights."""
    return rows * words(out_per_row * bits)


def dense_bits(node: ir.Dense, fixed: bool) -> int:
    """Bits a dense synapse is deployed with: netx's ``num_weight_bits`` for the effective integer
    weights of a fixed-point graph (docs/loihi2.md §1.5), else the 8-bit field."""
    if not fixed:
        return WEIGHT_BITS
    eff = np.asarray(node.weight, np.float64) * 2.0 ** int(node.weight_exp)
    if not np.any(eff) or not np.array_equal(eff, np.round(eff)):
        return WEIGHT_BITS
    nwb = netx_optimize_weight_bits(eff.astype(np.int64))[1]
    return int(min(max(nwb, 1), WEIGHT_BITS + 1))


def choose_encoding(weight: np.ndarray, bits: int) -> str:
    """``"sparse"`` when the sparse encoding of the ``(out, in)`` matrix on one core takes fewer
    words than the dense one."""
    n_out, fan_in = weight.shape
    per_axon = np.count_nonzero(weight, axis=0)
    smaller = sparse_words(per_axon, n_out, bits) < dense_words(n_out, fan_in, bits)
    return SPARSE if smaller else DENSE


# -- one population ----------------------------------------------------------------------------------
class Feeder(NamedTuple):
    """One synapse feeding a population: a Dense (``fan_in``) or a conv-like one (Conv or the
    grouped conv of a Pool)."""

    kind: str  # "dense" | "sparse" | "conv"
    fan_in: int
    bits: int
    weight: np.ndarray | None = None  # dense/sparse: (out, in); its nonzero mask is read per chunk
    in_per_group: int = 0  # conv: input channels per group
    out_per_group: int = 0  # conv: output channels per group
    taps: int = 0  # conv: kH * kW
    axons: int = 0  # conv: population axons per core (stride_y * stride_x)


class Population(NamedTuple):
    """What a layer's neurons need, before it is split over cores."""

    kind: str  # the report's synapse_encoding: dense, sparse, conv, pool, add, "" (input)
    neurons: int
    plane: int  # neurons per channel (H * W; 1 for a dense layer)
    feeders: tuple[Feeder, ...]
    synapses: int  # as deployed
    nonzero_synapses: int
    inputs: int  # input neurons feeding the layer
    stored_weights: int  # weights held in memory (shared conv kernels counted once)
    zero_weights: int  # of which zero (0 for a sparse encoding)


def _conv_feeder(node, in_channels: int, out_channels: int) -> Feeder:
    if isinstance(node, ir.Pool):
        (kh, kw), (sy, sx) = node.kernel, node.stride
        return Feeder("conv", in_channels * kh * kw, WEIGHT_BITS, None, 1, 1, kh * kw, sy * sx)
    _, per_group, kh, kw = node.weight.shape
    return Feeder(
        "conv", per_group * kh * kw, WEIGHT_BITS, None, per_group, out_channels // node.groups, kh * kw,
        node.stride[0] * node.stride[1],
    )  # fmt: skip


def population(graph: ir.Graph, shapes, name: str, sparse: bool = True) -> Population:
    """The resource needs of population ``name`` (module docstring)."""
    node = graph.nodes[name]
    fixed = graph.precision == "fixed"
    shape = shapes[name]
    neurons = int(np.prod(shape))
    plane = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if isinstance(node, ir.Input):
        return Population("", neurons, plane, (), 0, 0, 0, 0, 0)
    members = graph.predecessors(name) if isinstance(node, ir.Add) else [name]
    feeders, synapses, nonzero, inputs, stored, zeros = [], 0, 0, 0, 0, 0
    for m in members:
        mn = graph.nodes[m]
        src = shapes[graph.predecessors(m)[0]]
        inputs += int(np.prod(src))
        if isinstance(mn, ir.Dense):
            bits = dense_bits(mn, fixed)
            nz = int(np.count_nonzero(mn.weight))
            enc = DENSE
            if sparse and mn.neuron is not None and isinstance(node, ir.Dense):
                enc = choose_encoding(mn.weight, bits)
            feeders.append(Feeder(enc, int(mn.weight.shape[1]), bits, mn.weight))
            synapses += nz if enc == SPARSE else int(mn.weight.size)
            nonzero += nz
            stored += nz if enc == SPARSE else int(mn.weight.size)
            zeros += 0 if enc == SPARSE else int(mn.weight.size) - nz
            continue
        c_out = shapes[m][0]
        f = _conv_feeder(mn, src[0], c_out)
        feeders.append(f)
        synapses += neurons * f.in_per_group * f.taps
        if isinstance(mn, ir.Pool):
            nonzero += neurons * f.taps if mn.weight != 0 else 0
            stored += c_out * f.taps
            zeros += 0 if mn.weight != 0 else c_out * f.taps
        else:
            nz = int(np.count_nonzero(mn.weight))
            nonzero += plane * nz
            stored += int(mn.weight.size)
            zeros += int(mn.weight.size) - nz
    if isinstance(node, ir.Add):
        kind = "add"
    elif isinstance(node, ir.Pool):
        kind = "pool"
    else:
        kind = feeders[0].kind
    return Population(kind, neurons, plane, tuple(feeders), synapses, nonzero, inputs, stored, zeros)


def _bounds(neurons: int, cores: int) -> np.ndarray:
    """Start of each of ``cores`` balanced contiguous chunks, then ``neurons``."""
    q, r = divmod(neurons, cores)
    i = np.arange(cores + 1)
    return i * q + np.minimum(i, r)


class ChunkNeeds(NamedTuple):
    """The fullest core's needs (and the layer's synapse words in all) for one split."""

    neurons: int
    words: int
    axons: int
    total_words: int


def axons_per_core(pop: Population) -> int:
    """Input axons every core of the layer needs (module docstring)."""
    if not pop.feeders:
        return 1  # an input population: its drive
    return sum(f.fan_in if f.kind in (DENSE, SPARSE) else f.axons for f in pop.feeders)


def split_needs(pop: Population, cores: int) -> ChunkNeeds:
    """The needs of the fullest core when ``pop`` is split over ``cores`` balanced chunks."""
    b = _bounds(pop.neurons, cores)
    sizes = np.diff(b)
    per_core = np.zeros(cores, np.int64)
    for f in pop.feeders:
        if f.kind == DENSE:  # balanced chunks have at most two sizes
            per_size = {int(n): dense_words(int(n), f.fan_in, f.bits) for n in np.unique(sizes)}
            per_core += np.array([per_size[int(n)] for n in sizes], np.int64)
        elif f.kind == SPARSE:
            mask = (f.weight != 0).astype(np.int64)
            counts = np.add.reduceat(mask, b[:-1], axis=0)  # (cores, fan_in) nonzeros per axon
            per_core += np.array(
                [sparse_words(counts[i], int(sizes[i]), f.bits) for i in range(cores)], np.int64
            )
        else:
            first, last = b[:-1] // pop.plane, (b[1:] - 1) // pop.plane  # channels each chunk spans
            g_first, g_last = first // f.out_per_group, last // f.out_per_group
            rows = (g_last - g_first + 1) * f.in_per_group * f.taps
            out_per_row = np.minimum(last - first + 1, f.out_per_group)
            per_core += conv_words(rows, out_per_row, f.bits)
    return ChunkNeeds(int(sizes.max()), int(per_core.max()), axons_per_core(pop), int(per_core.sum()))


def _fits(need: ChunkNeeds, limits) -> bool:
    return (
        need.neurons <= limits.neurons_per_core
        and need.words * SYNAPSE_WORD_BYTES <= limits.sram_bytes_per_core
        and need.axons <= limits.in_axons_per_core
    )


def _single_neuron_problem(name: str, pop: Population, limits) -> str | None:
    """Why even one neuron per core cannot fit, or ``None``."""
    axons = axons_per_core(pop)
    if axons > limits.in_axons_per_core:
        return (
            f"layer {name} needs {axons} input axons per core, over the limit of "
            f"{limits.in_axons_per_core}; use a smaller input or layer"
        )
    one = split_needs(pop, pop.neurons)  # one neuron per core
    if one.words * SYNAPSE_WORD_BYTES > limits.sram_bytes_per_core:
        return (
            f"layer {name}: one neuron needs {one.words * SYNAPSE_WORD_BYTES} bytes of synapse memory, "
            f"over the {limits.sram_bytes_per_core}-byte synapse memory of a neurocore; reduce its fan-in"
        )
    return None


def fewest_cores(pop: Population, limits) -> tuple[int, ChunkNeeds]:
    """The fewest balanced chunks that all fit ``limits`` and their needs (a single neuron per core
    must fit: check :func:`_single_neuron_problem` first). Doubling then bisection; every answer is
    checked, so it always fits (it may miss a smaller split where the needs are not monotone)."""
    lo = max(1, math.ceil(pop.neurons / max(limits.neurons_per_core, 1)))
    need = split_needs(pop, lo)
    if _fits(need, limits):
        return lo, need
    bad, step = lo, 1
    while True:
        k = min(pop.neurons, bad + step)
        need = split_needs(pop, k)
        if _fits(need, limits):
            break
        bad, step = k, step * 2
    good = k
    while good - bad > 1:
        mid = (good + bad) // 2
        mid_need = split_needs(pop, mid)
        if _fits(mid_need, limits):
            good, need = mid, mid_need
        else:
            bad = mid
    return good, need


def is_population(node) -> bool:
    """A node whose neurons occupy neurocores: Pool, Add, a Conv or Dense with a neuron, an Input
    with a neuron (docs/loihi2.md §1.7)."""
    return isinstance(node, ir.Add | ir.Pool) or (
        isinstance(node, ir.Conv | ir.Dense | ir.Input) and node.neuron is not None
    )


def chunk_axons(graph: ir.Graph, shapes, name: str, chunk: int = 1) -> int:
    """Input axons one core of layer ``name`` needs (the same for every chunk size, module
    docstring)."""
    return axons_per_core(population(graph, shapes, name))


def _mapping(pop: Population, cores: int, need: ChunkNeeds, limits, fits: bool) -> dict[str, Any]:
    total_bytes = need.total_words * SYNAPSE_WORD_BYTES
    zero_bytes = 0
    if pop.stored_weights and pop.kind != SPARSE:
        zero_bytes = math.floor(total_bytes * pop.zero_weights / pop.stored_weights)
    return {
        "cores": cores,
        "fits": fits,
        "neurons": pop.neurons,
        "synapses": pop.synapses,
        "nonzero_synapses": pop.nonzero_synapses,
        "synapse_encoding": pop.kind,
        "synapse_bits": [int(f.bits) for f in pop.feeders],
        "synapse_bytes": total_bytes,
        "zero_weight_bytes": zero_bytes,
        "synops_per_input_spike": pop.synapses / max(pop.inputs, 1),
        "sram_bytes": total_bytes,
        "neurons_per_core": need.neurons,
        "synapse_words_per_core": need.words,
        "sram_bytes_per_core": need.words * SYNAPSE_WORD_BYTES,
        "in_axons_per_core": need.axons,
        "utilization_neurons": need.neurons / limits.neurons_per_core,
        "utilization_sram": need.words * SYNAPSE_WORD_BYTES / limits.sram_bytes_per_core,
        "utilization_axons": need.axons / limits.in_axons_per_core,
    }


def map_cores(
    graph: ir.Graph, limits: CoreLimits | Any | None = None, sparse: bool = True, enforce: bool = True
) -> ir.Graph:
    """Choose dense/sparse synapses and assign neurocores to every population under ``limits``
    (default: one Loihi 2 chip; any object with ``cores``, ``neurons_per_core``,
    ``sram_bytes_per_core``, ``in_axons_per_core``). ``enforce``: raise :class:`SnncError` when the
    net cannot fit, else record it (``mapping["fits"]``, notes). ``sparse=False`` keeps every dense
    layer dense (the baseline a sparse build is compared with)."""
    limits = limits or LIMITS
    shapes = graph.shapes()
    new: dict[str, ir.Node] = {}
    notes: list[str] = []
    used = 0

    def fail(msg: str) -> None:
        if enforce:
            raise SnncError(msg)
        notes.append(f"{msg.split(';')[0]} (Loihi 2 would refuse this net)")

    for name, node in graph.nodes.items():
        if not is_population(node):
            continue
        pop = population(graph, shapes, name, sparse)
        problem = _single_neuron_problem(name, pop, limits)
        if problem is None:
            cores, need = fewest_cores(pop, limits)
        else:
            fail(problem)
            cores = max(1, math.ceil(pop.neurons / max(limits.neurons_per_core, 1)))
            need = split_needs(pop, cores)
        used += cores
        if used > limits.cores and problem is None:
            fail(
                f"layer {name} needs {cores} neurocores, bringing the total to {used}, over "
                f"the limit of {limits.cores} cores; prune more or use a smaller network"
            )
        mapping = _mapping(pop, cores, need, limits, problem is None and used <= limits.cores)
        meta = {"cores": cores, "mapping": mapping}
        if isinstance(node, ir.Dense):
            meta["synapse"] = pop.kind
        new[name] = ir.replace(node, meta=meta)
    out = graph.replace(**new) if new else graph
    out = out.with_meta(cores_used=used, core_limits=limits.to_dict())
    return note(out, *notes)
