"""Drive snnc's simulator the way lava-dl's netx tests drive Lava, for their stored ground truth.

lava-dl's PilotNet LIF and tiny.net tests (``tests/lava/lib/dl/netx/test_hdf5.py``, ``test_hdf5_nx.py``)
differ from a plain run in two ways, both reproduced here with snnc's own pieces:

- **Input by bias.** The image goes into the input neuron's ``bias_mant`` (``u`` stays 0,
  ``v += bias << 6`` each step). The input neurons of these nets have ``iDecay = 4096``, so
  ``u = a_in << 6`` forgets every step and feeding the image as the input neuron's ``a_in`` every
  step (snnc's input-neuron drive, docs/loihi2.md §1.7) gives the same ``v`` and spikes; only ``u``
  differs (the image ``<< 6`` instead of 0). The input layer is run by :func:`snnc.sim.lif_fixed`
  on that graded current (``snnc simulate`` takes 0/1 spikes only).
- **Staggered resets.** ``Network(..., reset_interval=16)`` builds ``LIFReset`` neurons: block ``k``
  (the input block is 0) zeroes ``u`` and ``v`` before the dynamics of time step ``t`` when
  ``t % 16 == (reset_offset + 1 + k) % 16`` (``hdf5.py:_create``, ``lif/models.py``
  ``PyLifResetModelBitAcc.run_spk``); ``test_tinynet`` does the same with ``io.reset.Reset``
  processes on ``u`` and ``v`` (``offset = k - 1``, after the step). snnc's IR has no reset. Each
  layer is therefore simulated on its own (a one-layer graph fed the previous layer's spikes, run by
  :func:`snnc.sim.trace_layers`), and from each reset step on its neurons are run again from zero by
  :func:`snnc.sim.lif_fixed` on the same ``a_in`` (with ``iDecay = 4096`` the current is ``u >> 6``
  of the plain run, which a reset does not change).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snnc.ir import Dense, Flatten, Graph, Input, Output
from snnc.ir.fixed import DECAY_UNITY
from snnc.sim import lif_fixed, trace_layers


@dataclasses.dataclass(frozen=True)
class Layer:
    """One neuron layer as the harness ran it, PyTorch order, time last: ``(*shape, T)``."""

    spikes: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _check_memoryless(name: str, neuron) -> None:
    if neuron.current_decay != DECAY_UNITY:
        raise AssertionError(f"{name}: the harness needs iDecay = 4096 (u without memory)")


def _with_resets(name, neuron, bias, a_in: np.ndarray, plain: Layer, resets: list[int]) -> Layer:
    """``plain`` with the neurons started again from zero at every step index in ``resets``.
    ``a_in`` ``(T, *shape)`` the layer's integer input current."""
    s, u, v = (np.array(a) for a in (plain.spikes, plain.u, plain.v))
    for r in sorted(resets):
        if r >= a_in.shape[0]:
            continue
        trace: dict = {}
        spk = lif_fixed(a_in[None, r:], neuron, bias=bias, trace=trace)[0]  # (T', *shape)
        sr = np.moveaxis(spk, 0, -1).astype(s.dtype)
        s[..., r:] = sr
        u[..., r:] = np.moveaxis(trace["u"][0], 0, -1)
        v[..., r:] = np.where(sr != 0, 0, np.moveaxis(trace["v"][0], 0, -1))  # reset v only (§2.1)
    return Layer(s, u, v)


def run_input_layer(neuron, image: np.ndarray, steps: int, resets: list[int]) -> Layer:
    """The input block driven through its bias by ``image`` ``(*shape)`` (integer mantissas)."""
    _check_memoryless("input", neuron)
    a_in = np.broadcast_to(image.astype(np.int64), (steps, *image.shape))
    trace: dict = {}
    spk = lif_fixed(a_in[None], neuron, bias=np.zeros(image.shape[0]), trace=trace)[0]
    s = np.moveaxis(spk, 0, -1).astype(np.int8)
    v = np.where(s != 0, 0, np.moveaxis(trace["v"][0], 0, -1))
    plain = Layer(s, np.zeros_like(v), v)  # bias drive: u stays 0
    out = _with_resets("input", neuron, np.zeros(image.shape[0]), a_in, plain, resets)
    return Layer(out.spikes, np.zeros_like(out.u), out.v)


def run_layer(graph: Graph, name: str, spikes_in: np.ndarray, resets: list[int]) -> Layer:
    """Layer ``name`` of ``graph`` fed ``spikes_in`` ``(*in_shape, T)`` (its predecessor's spikes,
    as recorded at that layer's output port), with its resets."""
    node = graph.nodes[name]
    _check_memoryless(name, node.neuron)
    pred = graph.predecessors(name)[0]
    chain = [Input("input", shape=spikes_in.shape[:-1])]
    if isinstance(graph.nodes[pred], Flatten):
        chain.append(Flatten("flatten"))
    chain += [node, Output("output")]
    one = Graph.from_list(chain, meta=dict(graph.meta))
    tr = trace_layers(one, spikes_in[None].astype(np.int8))[name]
    plain = Layer(tr.spikes[0], tr.u[0], tr.v[0])
    a_in = np.moveaxis(plain.u, -1, 0) >> 6  # u = a_in << 6 (iDecay 4096, no wrap at these sizes)
    return _with_resets(name, node.neuron, node.neuron.bias, a_in, plain, resets)


def run_network(graph: Graph, image: np.ndarray, steps: int, reset_interval: int, reset_offset: int = 0):
    """Every neuron layer of a sequential netx graph with an input neuron, driven and reset as
    ``Network(path, reset_interval=..., reset_offset=...)`` with ``net.in_layer.neuron.bias_mant =
    image`` is in Lava. ``image`` in PyTorch order. Returns ``{node name: Layer}``."""
    out = {}
    k = 0  # netx block index: the input block is 0

    def resets(block: int) -> list[int]:
        first = (reset_offset + 1 + block) % reset_interval  # time step (from 1) of the first reset
        first = first or reset_interval
        return list(range(first - 1, steps, reset_interval))  # as step indices

    out["input"] = run_input_layer(graph.input.neuron, image, steps, resets(k))
    prev = out["input"].spikes
    for name, node in graph.nodes.items():
        if getattr(node, "neuron", None) is None or name == "input":
            continue
        k += 1
        if not isinstance(node, Dense) and prev.ndim == 2:
            raise AssertionError(f"{name}: a spatial layer after a flat one")
        out[name] = run_layer(graph, name, prev, resets(k))
        prev = out[name].spikes
    return out
