"""``map_cores``: choose each dense layer's synapse encoding and partition every neuron population
onto Loihi 2 neurocores.

Invariant: the graph's computation is unchanged; every population node (Conv/Dense with neuron,
Pool, Add) gets ``node.meta["cores"]`` (int, number of neurocores) and ``node.meta["mapping"]``
(per-layer neurons, synapses as deployed, SRAM bytes, utilization); every Dense with a neuron gets
``node.meta["synapse"]``, ``"sparse"`` or ``"dense"`` (the emitters build a Lava ``Sparse`` or
``Dense`` process from it, docs/loihi2.md §7); the total fits :class:`CoreLimits`, else
:class:`SnncError` names the first layer that does not fit and the limit it breaks.

Limits: :class:`~snnc.targets.loihi2.spec.CoreLimits` (defaults: one Loihi 2 chip, docs/loihi2.md §4:
128 neurocores, 8192 neurons and 128 KiB SRAM per core, 4096 input axons per core; the sources are
in its docstring).

Memory model (ours, an **estimate**: Intel does not publish Loihi 2's synapse encodings, §4, §7.3).
A core holding ``n`` neurons of a layer stores

- neuron state: 8 bytes per neuron (``u`` and ``v`` are 24-bit, each kept in a 32-bit word);
- Dense synapses, dense encoding: a matrix of ``n x fan_in`` weights packed at the weight bits the
  layer deploys (``node.meta["quant"]["weight_bits"]``, else the spec's), zeros included;
- Dense synapses, sparse encoding (Lava ``Sparse``, a CSR matrix): per nonzero weight its weight
  bits plus a ``ceil(log2(fan_in))``-bit index of the input it reads, and per neuron a
  ``ceil(log2(fan_in + 1))``-bit count of its synapses;
- Conv synapses: weight sharing, the kernels of the output channels whose neurons are on the core
  (``C_in/groups * kH * kW`` weights per channel) at the weight bits, zero taps included (Lava's
  Conv takes a dense kernel and netx has no sparse conv, §7.1); Pool: one shared tap weight per
  channel;
- Add: the kernels of every synapse-only input (main branch and shortcut) for its channels on the
  core.

A Dense layer with a neuron takes the sparse encoding when its whole-layer synapse bytes are
smaller that way. Neurons are split into equal contiguous chunks (channel-major); a layer takes the
fewest cores for which every chunk fits the neuron, SRAM and input-axon limits. A core's input
axons are the layer's fan-in (dense or sparse) or, for a conv/pool/Add, the input rows its output
rows read over the input channels they use (so a large feature map is split by rows). Layers do not
share cores.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from snnc import ir
from snnc.errors import SnncError
from snnc.targets.loihi2.spec import LIMITS, NEURON_STATE_BYTES, WEIGHT_BITS, CoreLimits

DENSE, SPARSE = "dense", "sparse"  # node.meta["synapse"] of a Dense layer


class LayerCost(NamedTuple):
    """What one population stores, before it is split over cores.

    ``synapses``: as deployed (dense: ``out x in`` with zeros; sparse: nonzeros; conv: neurons x
    kernel). ``nonzero_synapses``: connections with a nonzero weight. ``inputs``: input neurons
    feeding the layer. ``kernel``: weights stored per channel (dense: per neuron row) when the
    encoding is dense or shared. ``weight_bits``: deployed bits per weight. ``row_nonzeros``: per
    neuron, its nonzero weights (sparse encoding only, else ``None``).
    """

    neurons: int
    synapses: int
    nonzero_synapses: int
    inputs: int
    kernel: int
    per_channel: int
    channels: int
    weight_bits: int
    encoding: str
    row_nonzeros: np.ndarray | None = None


def weight_bits(node) -> int:
    """Bits a synapse of ``node`` deploys: ``meta["quant"]["weight_bits"]`` after ``quantize``, else
    the spec's (a float graph gets them when quantized)."""
    bits = node.meta.get("quant", {}).get("weight_bits")
    return int(WEIGHT_BITS if bits is None else bits)


def sparse_index_bits(fan_in: int) -> int:
    """Bits of a sparse synapse's input index: ``ceil(log2(fan_in))`` (at least 1; an estimate)."""
    return max(1, math.ceil(math.log2(max(fan_in, 2))))


def sparse_row_bits(fan_in: int) -> int:
    """Bits of a neuron's synapse count in the sparse encoding: ``ceil(log2(fan_in + 1))``."""
    return max(1, math.ceil(math.log2(fan_in + 1)))


def dense_synapse_bytes(n_out: int, fan_in: int, bits: int) -> float:
    """Dense encoding of ``n_out`` neurons' rows: every weight, zeros included (module docstring)."""
    return n_out * fan_in * bits / 8.0


def sparse_synapse_bytes(nonzeros: int, n_out: int, fan_in: int, bits: int) -> float:
    """Sparse (CSR) encoding of ``n_out`` neurons with ``nonzeros`` weights (an estimate, module
    docstring): weight + input index per nonzero, a synapse count per neuron."""
    return (nonzeros * (bits + sparse_index_bits(fan_in)) + n_out * sparse_row_bits(fan_in)) / 8.0


def choose_encoding(weight: np.ndarray, bits: int) -> str:
    """``"sparse"`` when the sparse encoding of the ``(out, in)`` matrix takes fewer bytes."""
    n_out, fan_in = weight.shape
    nz = int(np.count_nonzero(weight))
    smaller = sparse_synapse_bytes(nz, n_out, fan_in, bits) < dense_synapse_bytes(n_out, fan_in, bits)
    return SPARSE if smaller else DENSE


def _layer_cost(graph: ir.Graph, shapes, name: str, sparse: bool = True) -> LayerCost:
    node = graph.nodes[name]
    shape = shapes[name]
    channels = shape[0]
    per_channel = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    neurons = channels * per_channel
    src = shapes[graph.predecessors(name)[0]] if not isinstance(node, ir.Add) else None
    if isinstance(node, ir.Dense):
        fan_in = node.weight.shape[1]
        bits = weight_bits(node)
        rows = np.count_nonzero(node.weight, axis=1)
        nonzero = int(rows.sum())
        encoding = choose_encoding(node.weight, bits) if sparse and node.neuron is not None else DENSE
        sparse = encoding == SPARSE
        synapses = nonzero if sparse else int(node.weight.size)
        return LayerCost(
            neurons, synapses, nonzero, fan_in, fan_in, 1, channels, bits, encoding, rows if sparse else None
        )
    if isinstance(node, ir.Conv):
        kernel = int(np.prod(node.weight.shape[1:]))
        nonzero = per_channel * int(np.count_nonzero(node.weight))
        return LayerCost(
            neurons, neurons * kernel, nonzero, int(np.prod(src)), kernel, per_channel, channels,
            weight_bits(node), "conv",
        )  # fmt: skip
    if isinstance(node, ir.Pool):
        synapses = neurons * node.kernel[0] * node.kernel[1]
        nonzero = synapses if node.weight != 0 else 0
        # one shared tap per channel, counted as one byte
        return LayerCost(neurons, synapses, nonzero, int(np.prod(src)), 1, per_channel, channels, 8, "pool")
    if isinstance(node, ir.Add):
        kernel, synapses, nonzero, inputs, bits = 0, 0, 0, 0, 0
        for p in graph.predecessors(name):
            pn = graph.nodes[p]
            k = int(np.prod(pn.weight.shape[1:]))
            kernel += k
            synapses += neurons * k
            nonzero += per_channel * int(np.count_nonzero(pn.weight))
            inputs += int(np.prod(shapes[graph.predecessors(p)[0]]))
            bits = max(bits, weight_bits(pn))
        return LayerCost(neurons, synapses, nonzero, inputs, kernel, per_channel, channels, bits, "add")
    raise SnncError(f"{name}: not a neuron population")  # pragma: no cover - guarded by the caller


def _chunk_bytes(cost: LayerCost, chunk: int) -> int:
    """SRAM of the fullest core when the layer is split in chunks of ``chunk`` neurons."""
    bits = cost.weight_bits
    if cost.encoding == SPARSE:
        rows = cost.row_nonzeros
        starts = np.arange(0, len(rows), chunk)
        nz = int(np.add.reduceat(rows, starts).max()) if len(rows) else 0
        syn = sparse_synapse_bytes(nz, chunk, cost.kernel, bits)
    elif cost.encoding == DENSE:
        syn = dense_synapse_bytes(chunk, cost.kernel, bits)
    else:
        per_ch = cost.per_channel
        spanned = min(cost.channels, math.ceil(chunk / per_ch) + (1 if chunk % per_ch else 0))
        syn = spanned * cost.kernel * bits / 8.0
    return int(math.ceil(syn + chunk * NEURON_STATE_BYTES))


def chunk_axons(graph: ir.Graph, shapes, name: str, chunk: int) -> int:
    """Input axons a core needs for ``chunk`` neurons of layer ``name`` (channel-major chunks).

    Dense (either encoding): the whole fan-in. Conv/Pool (and each synapse feeding an Add): the input
    rows that the output rows held by the core read, over the input channels those outputs use.
    """
    node = graph.nodes[name]
    if isinstance(node, ir.Dense):
        return int(node.weight.shape[1])
    feeders = graph.predecessors(name) if isinstance(node, ir.Add) else [name]
    total = 0
    for f in feeders:
        fn = graph.nodes[f]
        c_in, h_in, w_in = shapes[graph.predecessors(f)[0]]
        c_out, h_out, w_out = shapes[f]
        if isinstance(fn, ir.Pool):
            (ky, _), (sy, _), dy, per_group = fn.kernel, fn.stride, 1, 1
            groups = c_out
        else:
            ky, sy, dy = fn.weight.shape[2], fn.stride[0], fn.dilation[0]
            groups, per_group = fn.groups, fn.weight.shape[1]
        plane = h_out * w_out
        spanned = min(c_out, math.ceil(chunk / plane) + (1 if chunk % plane else 0))
        rows = h_out if chunk >= plane else min(h_out, math.ceil(chunk / w_out) + 1)
        in_rows = min(h_in, (rows - 1) * sy + dy * (ky - 1) + 1)
        in_ch = c_in if groups == 1 else min(c_in, spanned * per_group)
        total += in_ch * in_rows * w_in
    return int(total)


def _is_population(node) -> bool:
    return isinstance(node, ir.Add | ir.Pool) or (
        isinstance(node, ir.Conv | ir.Dense) and node.neuron is not None
    )


def map_cores(graph: ir.Graph, limits: CoreLimits | None = None, sparse: bool = True) -> ir.Graph:
    """Choose dense/sparse synapses and assign neurocores to every population; raise
    :class:`SnncError` when the net cannot fit. ``sparse=False`` keeps every dense layer dense (the
    baseline a sparse build is compared with)."""
    limits = limits or LIMITS
    shapes = graph.shapes()
    new: dict[str, ir.Node] = {}
    used = 0
    for name, node in graph.nodes.items():
        if not _is_population(node):
            continue
        cost = _layer_cost(graph, shapes, name, sparse)
        min_axons = chunk_axons(graph, shapes, name, 1)
        if min_axons > limits.in_axons_per_core:
            raise SnncError(
                f"layer {name} needs {min_axons} input axons per core, over the limit of "
                f"{limits.in_axons_per_core}; use a smaller input or layer"
            )
        one = _chunk_bytes(cost, 1)
        if one > limits.sram_bytes_per_core:
            raise SnncError(
                f"layer {name}: one neuron needs {one} bytes of synapse memory, over the "
                f"{limits.sram_bytes_per_core}-byte SRAM of a neurocore; reduce its fan-in"
            )
        cores = max(1, math.ceil(cost.neurons / limits.neurons_per_core))
        while True:
            chunk = math.ceil(cost.neurons / cores)
            need = _chunk_bytes(cost, chunk)
            axons = chunk_axons(graph, shapes, name, chunk)
            if (
                need <= limits.sram_bytes_per_core
                and chunk <= limits.neurons_per_core
                and axons <= limits.in_axons_per_core
            ):
                break
            cores += 1
        used += cores
        if used > limits.cores:
            raise SnncError(
                f"layer {name} needs {cores} neurocores, bringing the total to {used}, over "
                f"the limit of {limits.cores} cores; prune more or use a smaller network"
            )
        mapping = {
            "cores": cores,
            "neurons": cost.neurons,
            "synapses": cost.synapses,
            "nonzero_synapses": cost.nonzero_synapses,
            "synapse_encoding": cost.encoding,
            "synapse_bytes": _synapse_bytes(cost),
            "zero_weight_bytes": _zero_weight_bytes(cost),
            "synops_per_input_spike": cost.synapses / max(cost.inputs, 1),
            "sram_bytes": need * cores,
            "neurons_per_core": chunk,
            "sram_bytes_per_core": need,
            "in_axons_per_core": axons,
            "utilization_neurons": chunk / limits.neurons_per_core,
            "utilization_sram": need / limits.sram_bytes_per_core,
        }
        meta = {"cores": cores, "mapping": mapping}
        if isinstance(node, ir.Dense):
            meta["synapse"] = cost.encoding
        new[name] = ir.replace(node, meta=meta)
    out = graph.replace(**new) if new else graph
    return out.with_meta(cores_used=used, core_limits=limits.to_dict())


def _synapse_bytes(cost: LayerCost) -> int:
    """The whole layer's synapse memory in its encoding (no per-core rounding)."""
    if cost.encoding == SPARSE:
        return math.ceil(sparse_synapse_bytes(cost.synapses, cost.neurons, cost.kernel, cost.weight_bits))
    if cost.encoding == DENSE:
        return math.ceil(dense_synapse_bytes(cost.neurons, cost.kernel, cost.weight_bits))
    return math.ceil(cost.channels * cost.kernel * cost.weight_bits / 8.0)


def _zero_weight_bytes(cost: LayerCost) -> int:
    """Synapse memory that holds zero weights: a dense matrix's zeros, a conv kernel's zero taps
    (stored whole, §7.1); 0 for the sparse encoding."""
    if cost.encoding == SPARSE:
        return 0
    if cost.encoding == DENSE:
        return math.floor((cost.synapses - cost.nonzero_synapses) * cost.weight_bits / 8.0)
    if cost.encoding == "pool":
        return 0
    zero_taps = (cost.neurons * cost.kernel - cost.nonzero_synapses) // max(cost.per_channel, 1)
    return math.floor(zero_taps * cost.weight_bits / 8.0)
