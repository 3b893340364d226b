"""``remove_dead``: physically delete output channels (dense neurons) that cannot affect the output.

Invariant (exact mode, the default): the pruned graph's output spikes equal the input graph's for
every input (float: up to float rounding), and it has no more parameters. A channel is removed when
it is

- **masked**: ``node.meta["channel_mask"] == 0`` (the model multiplies its spikes by 0);
- **dead for every input**: all its incoming weights are zero and its bias cannot lift ``v`` over
  the threshold. With zero input ``u`` stays 0 and ``v[t] = v[t-1] * (4096 - dv) / 4096 + b`` rises
  monotonically to ``b * 4096 / dv`` (float) without ever reaching it, so the channel is dead iff
  ``b <= 0`` or ``dv > 0 and b * 4096 / dv <= threshold``; in fixed point the same recursion with
  Lava's round-toward-zero decay (LAVA_FACTS §2.1) is iterated to its fixed point and compared with
  ``vth << 6``;
- **unneeded**: every weight that reads it downstream is zero (its spikes reach nothing);
- **silent on calibration data** (opt-in, ``calibration=`` spikes ``(N, *input_shape, T)``): it
  never spiked. This is *lossy* (another input might make it spike); it is noted and
  ``graph.meta["lossy"]`` is set.

Coupled channels are found once from the graph's edges, as in Torch-Pruning's dependency graph
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023, arXiv:2301.12900): nodes that
must keep the same channel set form one *channel space* (a population and the Pool/Flatten/Output
and per-channel (depthwise) convs that pass its channels through, such as the grouped conv a netx
file stores a pool as; an ``Add`` and every synapse-only node feeding it). Each node kind
has one handler that drops its output channels (Conv/Dense rows, biases, BN parameters; Add/Pool
biases) and one that drops its input slices (Conv ``weight[:, c]``; Dense columns, in ``C*H*W``
index blocks after a Flatten). A channel of an ``Add`` space goes only when the Add's channel is
dead or unneeded, so a channel pruned in one branch only stays as long as the other branch feeds
it. Spaces reaching ``Output`` (the class neurons), the ``Input`` and other grouped convolutions are
never changed. Removal repeats until nothing more is removable (removing a channel can make its
consumers' channels dead), so the pass is idempotent. A population that would lose every channel
raises :class:`SnncError` naming it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snnc import ir
from snnc.compile.passes import note
from snnc.errors import SnncError

_VMAX = 2**23 - 1  # v saturates at 24 bits (LAVA_FACTS §2.1)


# -- dead-by-bias --------------------------------------------------------------------------------
def bias_can_fire(neuron: ir.CubaLIF, bias: np.ndarray, fixed: bool) -> np.ndarray:
    """Per channel: can the bias alone (zero input) ever make ``v`` exceed the threshold? ``(C,)``
    bool."""
    b = np.asarray(bias, dtype=np.float64)
    dv = neuron.voltage_decay
    if not fixed:
        if dv == 0:
            return b > 0
        # v approaches b*4096/dv from below; keep a channel on the boundary (conservative)
        return (b > 0) & (b * 4096.0 / dv > neuron.threshold * (1 - 1e-9))
    vth = int(neuron.threshold) << 6
    bb = b.astype(np.int64) << 6
    if dv == 0:
        return bb > 0
    v = np.zeros_like(bb)
    keep = 4096 - dv
    fires = np.zeros(bb.shape, bool)
    for _ in range(1 << 20):  # monotone integer sequence: it stops changing or crosses vth quickly
        d = v * keep
        nv = np.sign(d) * (np.abs(d) >> 12) + bb
        nv = np.clip(nv, -_VMAX, _VMAX)
        fires |= nv > vth
        nv[fires] = 0
        if np.array_equal(nv, v):
            break
        v = nv
    return fires


# -- channel spaces ------------------------------------------------------------------------------
class _Spaces:
    """Union-find over node names: nodes in one set share their output channel set."""

    def __init__(self, names) -> None:
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _synapse_only(node) -> bool:
    return node.is_synapse and getattr(node, "neuron", 0) is None


def _depthwise(node) -> bool:
    """A per-channel conv (``groups == C_in == C_out``), e.g. a Pool stored as conv by netx."""
    return (
        isinstance(node, ir.Conv)
        and node.groups > 1
        and node.weight.shape[1] == 1
        and node.weight.shape[0] == node.groups
    )


def _channel_spaces(graph: ir.Graph):
    sp = _Spaces(graph.nodes)
    pinned: set[str] = set()
    for name, node in graph.nodes.items():
        preds = graph.predecessors(name)
        if isinstance(node, ir.Pool | ir.Flatten | ir.Output) or _depthwise(node):
            sp.union(preds[0], name)
        elif _synapse_only(node):
            for s in graph.successors(name):
                sp.union(s, name)
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Input | ir.Output):
            pinned.add(sp.find(name))
        if isinstance(node, ir.Conv) and node.groups != 1 and not _depthwise(node):
            pinned.add(sp.find(name))
            pinned.add(sp.find(graph.predecessors(name)[0]))
    groups: dict[str, list[str]] = {}
    for name in graph.nodes:
        groups.setdefault(sp.find(name), []).append(name)
    return sp, groups, pinned


def _effective_bias(node) -> np.ndarray:
    c = node.out_channels if hasattr(node, "out_channels") else None
    neuron = node.neuron
    b = np.zeros(c) if neuron.bias is None else np.array(neuron.bias, dtype=np.float64)
    bn = getattr(node, "bn", None)
    if bn is not None:
        scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
        b = b + bn.bias - scale * bn.running_mean
    return b


def _rows_zero(weight: np.ndarray) -> np.ndarray:
    return ~np.any(weight.reshape(weight.shape[0], -1) != 0, axis=1)


def _in_block(graph: ir.Graph, shapes, consumer: str) -> int:
    """Input elements per channel for a Dense consumer (``H*W`` after a Flatten of (C, H, W), else
    1)."""
    pred = graph.predecessors(consumer)[0]
    if isinstance(graph.nodes[pred], ir.Flatten):
        src = shapes[graph.predecessors(pred)[0]]
        return int(np.prod(src[1:])) if len(src) > 1 else 1
    return 1


def _in_zero(graph: ir.Graph, shapes, consumer: str, channels: int) -> np.ndarray:
    """Per input channel of ``consumer``: are all weights that read it zero? ``(C,)`` bool."""
    node = graph.nodes[consumer]
    if isinstance(node, ir.Conv):
        return ~np.any(node.weight != 0, axis=(0, 2, 3))
    blk = _in_block(graph, shapes, consumer)
    w = node.weight.reshape(node.weight.shape[0], channels, blk)
    return ~np.any(w != 0, axis=(0, 2))


def _slice_out(node, keep: np.ndarray):
    """Drop output channels ``~keep`` of one node (its own handler per kind)."""
    changes: dict = {}
    meta = {}
    if "channel_mask" in node.meta:
        meta["channel_mask"] = np.asarray(node.meta["channel_mask"])[keep]
    orig = node.meta.get("orig_channels")
    if orig is not None:
        meta["orig_channels"] = np.asarray(orig)[keep]
    if isinstance(node, ir.Conv | ir.Dense):
        changes["weight"] = node.weight[keep]
        if _depthwise(node):
            changes["groups"] = int(keep.sum())
        if node.bn is not None:
            bn = node.bn
            changes["bn"] = dataclasses.replace(
                bn,
                weight=bn.weight[keep],
                bias=bn.bias[keep],
                running_mean=bn.running_mean[keep],
                running_var=bn.running_var[keep],
            )
    neuron = getattr(node, "neuron", None)
    if neuron is not None and neuron.bias is not None and np.shape(neuron.bias) == keep.shape:
        changes["neuron"] = dataclasses.replace(neuron, bias=neuron.bias[keep])
    return changes, meta


def _slice_in(graph: ir.Graph, shapes, name: str, keep: np.ndarray, weight: np.ndarray) -> np.ndarray:
    node = graph.nodes[name]
    if isinstance(node, ir.Conv):
        return weight[:, keep]
    blk = _in_block(graph, shapes, name)
    return weight[:, np.repeat(keep, blk)]


def _calibration_silent(graph: ir.Graph, calibration: np.ndarray) -> dict[str, np.ndarray]:
    """Per population (original channel index): never spiked on ``calibration``. ``{name: (C,)
    bool}``."""
    from snnc.sim import simulate

    res = simulate(graph, calibration, record=True)
    out = {}
    for name, spikes in (res.layers or {}).items():
        node = graph.nodes[name]
        if isinstance(node, ir.Conv | ir.Dense | ir.Add):
            axes = (0,) + tuple(range(2, spikes.ndim))
            out[name] = spikes.sum(axis=axes, dtype=np.int64) == 0
    return out


def _one_round(graph: ir.Graph, silent: dict[str, np.ndarray] | None):
    fixed = graph.precision == "fixed"
    shapes = graph.shapes()
    sp, groups, pinned = _channel_spaces(graph)
    out_keep: dict[str, np.ndarray] = {}
    in_keep: dict[str, np.ndarray] = {}
    reasons: dict[str, dict[str, int]] = {}
    empty: list[tuple[bool, str, int]] = []
    for root, members in groups.items():
        if root in pinned:
            continue
        producers = [
            m
            for m in members
            if isinstance(graph.nodes[m], ir.Add)
            or (
                isinstance(graph.nodes[m], ir.Conv | ir.Dense)
                and graph.nodes[m].neuron
                and not _depthwise(graph.nodes[m])
            )
        ]
        if len(producers) != 1:
            continue
        prod = producers[0]
        pnode = graph.nodes[prod]
        c = shapes[prod][0]
        mask = pnode.meta.get("channel_mask")
        masked = np.zeros(c, bool) if mask is None else np.asarray(mask) == 0
        if isinstance(pnode, ir.Add):
            feeders = [graph.nodes[p] for p in graph.predecessors(prod)]
            zero_in = np.logical_and.reduce([_rows_zero(f.weight) for f in feeders])
            bias = np.zeros(c) if pnode.neuron.bias is None else pnode.neuron.bias
        else:
            zero_in = _rows_zero(pnode.weight)
            bias = _effective_bias(pnode)
        dead = zero_in & ~bias_can_fire(pnode.neuron, bias, fixed)
        # a Pool passing this space on may itself be lifted by its own bias
        for m in members:
            mn = graph.nodes[m]
            if isinstance(mn, ir.Pool) and mn.neuron is not None and mn.neuron.bias is not None:
                dead &= ~bias_can_fire(mn.neuron, np.broadcast_to(mn.neuron.bias, (c,)), fixed)
            if _depthwise(mn) and mn.neuron is not None:
                dead &= ~bias_can_fire(mn.neuron, _effective_bias(mn), fixed)
        calib = np.zeros(c, bool)
        if silent is not None and prod in silent:
            orig = pnode.meta.get("orig_channels", np.arange(c))
            calib = silent[prod][np.asarray(orig)]
        member_set = set(members)
        consumers = sorted(
            {
                n
                for n in graph.nodes
                if n not in member_set and any(p in member_set for p in graph.predecessors(n))
            }
        )
        unneeded = np.ones(c, bool)
        for cons in consumers:
            unneeded &= _in_zero(graph, shapes, cons, c)
        remove = masked | dead | unneeded | calib
        if not remove.any():
            continue
        if remove.all():
            # name the layer that is empty by itself, not one emptied because nothing reads it
            empty.append((not (masked | dead | calib).all(), prod, c))
            continue
        keep = ~remove
        reasons[prod] = {
            "masked": int(masked.sum()),
            "dead": int((dead & ~masked).sum()),
            "unneeded": int((unneeded & ~dead & ~masked).sum()),
            "calibration": int((calib & ~dead & ~masked & ~unneeded).sum()),
            "before": c,
            "after": int(keep.sum()),
        }
        for m in members:
            out_keep[m] = keep
        for cons in consumers:
            in_keep[cons] = keep
    if empty:
        _, prod, c = sorted(empty, key=lambda e: e[0])[0]
        raise SnncError(
            f"layer {prod} would lose every one of its {c} channels (masked, dead or "
            "unused); the network cannot compute its output; retrain or prune less"
        )
    if not out_keep:
        return graph, reasons
    new: dict[str, ir.Node] = {}
    for name in set(out_keep) | set(in_keep):
        node = graph.nodes[name]
        changes, meta = {}, {}
        if name in out_keep and not isinstance(node, ir.Flatten | ir.Output):
            changes, meta = _slice_out(node, out_keep[name])
        if name in in_keep:
            w = changes.get("weight", node.weight)
            changes["weight"] = _slice_in(graph, shapes, name, in_keep[name], w)
        if changes or meta:
            new[name] = ir.replace(node, meta=meta, **changes)
    return graph.replace(**new), reasons


def _with_orig(graph: ir.Graph) -> ir.Graph:
    """Record each population's original channel indices once (for reports and calibration
    lookup)."""
    shapes = graph.shapes()
    new = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Conv | ir.Dense | ir.Add | ir.Pool) and "orig_channels" not in node.meta:
            new[name] = ir.replace(node, meta={"orig_channels": np.arange(shapes[name][0])})
    return graph.replace(**new) if new else graph


def remove_dead(graph: ir.Graph, calibration: np.ndarray | None = None) -> ir.Graph:
    """Remove masked, dead, unneeded (and, with ``calibration``, silent) channels; see the module
    doc.

    ``calibration``: optional spikes ``(N, *input_shape, T)``; channels that never spike on them are
    removed too (lossy, noted, ``graph.meta["lossy"] = True``).
    """
    graph = _with_orig(graph)
    silent = None
    if calibration is not None:
        silent = _calibration_silent(graph, calibration)
    totals: dict[str, dict[str, int]] = {}
    while True:
        graph, reasons = _one_round(graph, silent)
        if not reasons:
            break
        for name, r in reasons.items():
            t = totals.setdefault(
                name,
                {"masked": 0, "dead": 0, "unneeded": 0, "calibration": 0, "before": r["before"]},
            )
            for k in ("masked", "dead", "unneeded", "calibration"):
                t[k] += r[k]
            t["after"] = r["after"]
    notes = []
    new = {}
    for name, t in totals.items():
        why = ", ".join(f"{k} {t[k]}" for k in ("masked", "dead", "unneeded", "calibration") if t[k])
        notes.append(f"{name}: removed {t['before'] - t['after']} of {t['before']} channels ({why})")
        node = graph.nodes[name]
        prev = dict(node.meta.get("removed", {}))
        for k in ("masked", "dead", "unneeded", "calibration"):
            prev[k] = prev.get(k, 0) + t[k]
        new[name] = ir.replace(node, meta={"removed": prev})
    graph = graph.replace(**new) if new else graph
    if silent is not None and any(t["calibration"] for t in totals.values()):
        graph = graph.with_meta(lossy=True)
        notes.append(
            "channels silent on the calibration data were removed: lossy, other inputs may " "differ"
        )
    return note(graph, *notes)
