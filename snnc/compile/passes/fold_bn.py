"""``fold_bn``: fold each node's batch-norm into its weights and neuron bias.

Invariant: the folded float graph's output spikes equal the input graph's (up to float rounding),
and every folded node has ``bn is None``. ``VoltageBiasBatchNorm`` (``snnc.nn.blocks``) multiplies
the synaptic current by ``scale = gamma / sqrt(running_var + eps)`` and adds ``shift = beta - scale
* running_mean`` to the voltage every step; since the current is linear in the weights, ``weight *
scale`` (per output channel) and ``bias + shift`` give the same ``u`` and ``v`` exactly, whatever
the decays.

Declines (leaves the BN on the node and says why in ``graph.meta["notes"]``) where folding is not
exact: non-finite or negative running statistics (no usable statistics), a BN on a synapse-only
node (its shift has no neuron bias to go to), or a fixed-point graph (integer weights cannot absorb
a real scale). The torch.fx rule "do not fold a conv that feeds several nodes" cannot apply here:
the BN sits inside its node, so nothing else ever reads the pre-BN current.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snnc import ir
from snnc.compile.passes import note


def _decline_reason(graph: ir.Graph, node) -> str | None:
    bn = node.bn
    if graph.precision == "fixed":
        return "the graph is fixed-point; fold before quantize"
    if node.neuron is None:
        return "batch-norm on a synapse-only node has no neuron bias to take its shift"
    for name in ("weight", "bias", "running_mean", "running_var"):
        if not np.all(np.isfinite(getattr(bn, name))):
            return f"batch-norm {name} has non-finite values (no usable running statistics)"
    if np.any(bn.running_var < 0) or bn.running_var.shape != (node.out_channels,):
        return "batch-norm running_var is negative or has the wrong shape"
    return None


def fold_bn(graph: ir.Graph) -> ir.Graph:
    """Fold every foldable batch-norm (see the module docstring for the invariant and the
    declines)."""
    changed: dict[str, ir.Node] = {}
    notes = []
    for name, node in graph.nodes.items():
        if not isinstance(node, ir.Conv | ir.Dense) or node.bn is None:
            continue
        why = _decline_reason(graph, node)
        if why is not None:
            notes.append(f"{name}: batch-norm not folded: {why}")
            continue
        bn = node.bn
        scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - scale * bn.running_mean
        weight = node.weight * scale.reshape((-1,) + (1,) * (node.weight.ndim - 1))
        bias = shift if node.neuron.bias is None else node.neuron.bias + shift
        neuron = dataclasses.replace(node.neuron, bias=bias)
        changed[name] = ir.replace(node, weight=weight, bn=None, neuron=neuron, meta={"bn_folded": True})
    out = graph.replace(**changed) if changed else graph
    return note(out, *notes)
