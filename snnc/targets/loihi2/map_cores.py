"""``map_cores``: partition every neuron population onto Loihi 2 neurocores.

Invariant: the graph's computation is unchanged; every population node (Conv/Dense with neuron,
Pool, Add) gets ``node.meta["cores"]`` (int, number of neurocores) and ``node.meta["mapping"]``
(per-layer neurons, synapses, SRAM bytes, utilization); the total fits :class:`CoreLimits`, else
:class:`SnncError` names the first layer that does not fit and the limit it breaks.

Limits: :class:`~snnc.targets.loihi2.spec.CoreLimits` (defaults: one Loihi 2 chip, docs/loihi2.md §4:
128 neurocores, 8192 neurons and 128 KiB SRAM per core, 4096 input axons per core; the sources are
in its docstring).

Memory model (ours; Intel does not publish Loihi 2's synapse encodings): a core holding ``n``
neurons of a layer stores

- neuron state: 8 bytes per neuron (``u`` and ``v`` are 24-bit, each kept in a 32-bit word);
- Dense synapses: a dense matrix of ``n x fan_in`` weights packed at the layer's weight bits (9 for
  an 8-bit magnitude plus sign), i.e. no sparse compression is assumed;
- Conv synapses: weight sharing, the kernels of the output channels whose neurons are on the core
  (``C_in/groups * kH * kW`` weights per channel) at the weight bits; Pool: one shared tap weight
  per channel;
- Add: the kernels of every synapse-only input (main branch and shortcut) for its channels on the
  core.

Neurons are split into equal contiguous chunks (channel-major); a layer takes the fewest cores for
which one chunk fits the neuron, SRAM and input-axon limits. A core's input axons are the layer's
fan-in (dense) or, for a conv/pool/Add, the input rows its output rows read over the input channels
they use (so a large feature map is split by rows). Layers do not share cores.
"""

from __future__ import annotations

import math

import numpy as np

from snnc import ir
from snnc.errors import SnncError
from snnc.targets.loihi2.spec import LIMITS, NEURON_STATE_BYTES, WEIGHT_BITS, CoreLimits


def _weight_bytes(node, members) -> float:
    q = node.meta.get("quant", {})
    bits = q.get("weight_bits")
    if bits is None:  # float graph: assume the 8-bit mantissa (+ sign) it will get
        bits = WEIGHT_BITS
    return int(bits) / 8.0  # packed bits per synapse


def _layer_cost(graph: ir.Graph, shapes, name: str):
    """(neurons, synapses, fan-in axons, bytes per channel of weights, neurons per channel,
    channels)."""
    node = graph.nodes[name]
    shape = shapes[name]
    channels = shape[0]
    per_channel_neurons = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    neurons = channels * per_channel_neurons
    src = shapes[graph.predecessors(name)[0]] if not isinstance(node, ir.Add) else None
    if isinstance(node, ir.Dense):
        fan_in = node.weight.shape[1]
        synapses = int(node.weight.size)
        kernel = fan_in  # dense: each neuron stores its own row
        axons = fan_in
    elif isinstance(node, ir.Conv):
        kernel = int(np.prod(node.weight.shape[1:]))
        synapses = neurons * kernel
        axons = int(np.prod(src))
    elif isinstance(node, ir.Pool):
        kernel = 1
        synapses = neurons * node.kernel[0] * node.kernel[1]
        axons = int(np.prod(src))
    elif isinstance(node, ir.Add):
        kernel, synapses, axons = 0, 0, 0
        for p in graph.predecessors(name):
            pn = graph.nodes[p]
            k = int(np.prod(pn.weight.shape[1:]))
            kernel += k
            synapses += neurons * k
            axons += int(np.prod(shapes[graph.predecessors(p)[0]]))
    else:  # pragma: no cover - guarded by the caller
        raise SnncError(f"{name}: not a neuron population")
    return neurons, synapses, axons, kernel, per_channel_neurons, channels


def _chunk_bytes(node, chunk: int, kernel: int, per_ch: int, channels: int, wbytes: float) -> int:
    if isinstance(node, ir.Dense):
        syn = chunk * kernel * wbytes
    else:
        spanned = min(channels, math.ceil(chunk / per_ch) + (1 if chunk % per_ch else 0))
        syn = spanned * kernel * wbytes
    return int(math.ceil(syn + chunk * NEURON_STATE_BYTES))


def chunk_axons(graph: ir.Graph, shapes, name: str, chunk: int) -> int:
    """Input axons a core needs for ``chunk`` neurons of layer ``name`` (channel-major chunks).

    Dense: the whole fan-in. Conv/Pool (and each synapse feeding an Add): the input rows that the
    output rows held by the core read, over the input channels those outputs use.
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


def map_cores(graph: ir.Graph, limits: CoreLimits | None = None) -> ir.Graph:
    """Assign neurocores to every population; raise :class:`SnncError` when the net cannot fit."""
    limits = limits or LIMITS
    shapes = graph.shapes()
    new: dict[str, ir.Node] = {}
    used = 0
    for name, node in graph.nodes.items():
        is_pop = isinstance(node, ir.Add | ir.Pool) or (
            isinstance(node, ir.Conv | ir.Dense) and node.neuron is not None
        )
        if not is_pop:
            continue
        neurons, synapses, axons, kernel, per_ch, channels = _layer_cost(graph, shapes, name)
        if isinstance(node, ir.Add):
            wbytes = max(_weight_bytes(graph.nodes[p], None) for p in graph.predecessors(name))
        elif isinstance(node, ir.Pool):
            wbytes = 1.0
        else:
            wbytes = _weight_bytes(node, None)
        min_axons = chunk_axons(graph, shapes, name, 1)
        if min_axons > limits.in_axons_per_core:
            raise SnncError(
                f"layer {name} needs {min_axons} input axons per core, over the limit of "
                f"{limits.in_axons_per_core}; use a smaller input or layer"
            )
        one = _chunk_bytes(node, 1, kernel, per_ch, channels, wbytes)
        if one > limits.sram_bytes_per_core:
            raise SnncError(
                f"layer {name}: one neuron needs {one} bytes of synapse memory, over the "
                f"{limits.sram_bytes_per_core}-byte SRAM of a neurocore; reduce its fan-in"
            )
        cores = max(1, math.ceil(neurons / limits.neurons_per_core))
        while True:
            chunk = math.ceil(neurons / cores)
            need = _chunk_bytes(node, chunk, kernel, per_ch, channels, wbytes)
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
            "neurons": neurons,
            "synapses": synapses,
            "sram_bytes": need * cores,
            "neurons_per_core": chunk,
            "sram_bytes_per_core": need,
            "in_axons_per_core": axons,
            "utilization_neurons": chunk / limits.neurons_per_core,
            "utilization_sram": need / limits.sram_bytes_per_core,
        }
        new[name] = ir.replace(node, meta={"cores": cores, "mapping": mapping})
    out = graph.replace(**new) if new else graph
    return out.with_meta(cores_used=used, core_limits=limits.to_dict())
