"""``remove_dead``: physically delete output channels (dense neurons) that cannot affect the output.

Invariant (exact mode, the default): the pruned graph's output spikes equal the input graph's for
every input (float: up to float rounding), and it has no more parameters. A channel is removed when
it is

- **masked**: ``node.meta["channel_mask"] == 0`` (the model multiplies its spikes by 0);
- **dead for every input**: all its incoming weights are zero and its bias cannot lift ``v`` over
  the threshold. With zero input ``u`` stays 0 and ``v[t] = v[t-1] * (4096 - dv) / 4096 + b`` rises
  monotonically to ``b * 4096 / dv`` (float) without ever reaching it, so the channel is dead iff
  ``b <= 0`` or ``dv > 0 and b * 4096 / dv <= threshold``; in fixed point the same recursion with
  Lava's round-toward-zero decay (docs/loihi2.md §2.1) is iterated to its fixed point and compared with
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
consumers' channels dead), so the pass is idempotent.

A population that loses every channel takes its whole *branch* with it, as Torch-Pruning's
dependency graph removes a pruned branch: its space's nodes go, and so does every node left with
zero input that cannot spike (a synapse-only node: its current is 0; a population whose bias cannot
fire it, by the rule above; a ``Flatten`` of such a node). The branch must end in ``Add`` nodes that
keep at least one other input (a residual block whose main branch is pruned keeps its shortcut):
they sum the inputs they still have, which is exactly what they summed before. Where the output
cannot be computed (the branch reaches ``Output`` or a population its bias can fire, or an ``Add``
would lose every input) it raises :class:`SnncError` naming the layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snnc import ir
from snnc.compile.passes import note
from snnc.errors import SnncError
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_BITS, DECAY_UNITY, V_MAX


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
        return (b > 0) & (b * float(DECAY_UNITY) / dv > neuron.threshold * (1 - 1e-9))
    vth = int(neuron.threshold) << ACTIVATION_SHIFT
    bb = b.astype(np.int64) << ACTIVATION_SHIFT
    if dv == 0:
        return bb > 0
    v = np.zeros_like(bb)
    keep = DECAY_UNITY - dv
    fires = np.zeros(bb.shape, bool)
    for _ in range(1 << 20):  # monotone integer sequence: it stops changing or crosses vth quickly
        d = v * keep
        nv = np.sign(d) * (np.abs(d) >> DECAY_BITS) + bb
        nv = np.clip(nv, -V_MAX, V_MAX)
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


def _depthwise(node: ir.Conv) -> bool:
    """A per-channel conv (``groups == C_in == C_out``), e.g. a Pool stored as conv by netx."""
    return node.groups > 1 and node.weight.shape[1] == 1 and node.weight.shape[0] == node.groups


def _channel_spaces(graph: ir.Graph):
    sp = _Spaces(graph.nodes)
    pinned: set[str] = set()
    for name, node in graph.nodes.items():
        if _kind(node).passes_channels(node):
            sp.union(graph.predecessors(name)[0], name)
        elif _synapse_only(node):
            for s in graph.successors(name):
                sp.union(s, name)
    for name, node in graph.nodes.items():
        kind = _kind(node)
        if kind.pins(node):
            pinned.add(sp.find(name))
        if kind.pins_input(node):
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


# -- one channel handler per node kind -----------------------------------------------------------
class _Kind:
    """How one node kind takes part in channel removal (Torch-Pruning's per-layer pruner): its role
    in the channel spaces and the handlers that drop its output channels or its input slices.

    This base is a node without channels of its own: the ``Input`` (pinned: the data's channels).
    """

    #: a population with per-channel state: its original channel indices are recorded
    has_channels = False

    def passes_channels(self, node) -> bool:
        """Its output channels are its input's (it joins its input's channel space)."""
        return False

    def pins(self, node) -> bool:
        """Its channel space must never change."""
        return True

    def pins_input(self, node) -> bool:
        """Its input's channel space must never change."""
        return False

    def is_producer(self, node) -> bool:
        """It is the population whose channels a space's removal decides."""
        return False

    def lift(self, node, channels: int, fixed: bool) -> np.ndarray | None:
        """For a population passing its input's channels on: can its own bias fire a channel of the
        space? ``(C,)`` bool, or None when it has no such bias."""
        return None

    def drop_out(self, node, keep: np.ndarray) -> tuple[dict, dict]:
        """``(changes, meta)`` that drop output channels ``~keep``."""
        return {}, {}

    def reads_nothing(self, node, channels: int, block: int) -> np.ndarray:
        """Per input channel: are all the weights that read it zero? ``(C,)`` bool. ``block``: input
        elements per channel (``H*W`` for a Dense after a Flatten, else 1)."""
        raise SnncError(f"{node.name}: remove_dead cannot drop input channels of a {node.kind} node")

    def drop_in(self, node, weight: np.ndarray, keep: np.ndarray, block: int) -> np.ndarray:
        """``weight`` (the node's, maybe already row-sliced) without the input slices of ``~keep``."""
        raise SnncError(f"{node.name}: remove_dead cannot drop input channels of a {node.kind} node")


class _View(_Kind):
    """``Flatten``: its input's channels, in another shape; nothing of its own to drop."""

    def passes_channels(self, node) -> bool:
        return True

    def pins(self, node) -> bool:
        return False


class _Output(_View):
    """``Output``: the class neurons are the graph's contract, never changed."""

    def pins(self, node) -> bool:
        return True


class _Population(_Kind):
    """A node with per-channel neurons: drops its channels' masks, original indices and biases."""

    has_channels = True

    def pins(self, node) -> bool:
        return False

    def drop_out(self, node, keep: np.ndarray) -> tuple[dict, dict]:
        changes: dict = {}
        meta = {}
        if "channel_mask" in node.meta:
            meta["channel_mask"] = np.asarray(node.meta["channel_mask"])[keep]
        orig = node.meta.get("orig_channels")
        if orig is not None:
            meta["orig_channels"] = np.asarray(orig)[keep]
        neuron = node.neuron
        if neuron is not None and neuron.bias is not None and np.shape(neuron.bias) == keep.shape:
            changes["neuron"] = dataclasses.replace(neuron, bias=neuron.bias[keep])
        return changes, meta

    def zero_input(self, graph: ir.Graph, node) -> np.ndarray:
        """Per channel: are all its incoming weights zero? ``(C,)`` bool (producers only)."""
        raise NotImplementedError

    def bias(self, node, channels: int) -> np.ndarray:
        """The per-channel voltage bias the channel gets with no input (producers only)."""
        raise NotImplementedError


class _Pool(_Population):
    """``Pool``: per channel, so it passes its input's channels on (and may lift them by its bias)."""

    def passes_channels(self, node) -> bool:
        return True

    def lift(self, node, channels: int, fixed: bool) -> np.ndarray | None:
        if node.neuron is None or node.neuron.bias is None:
            return None
        return bias_can_fire(node.neuron, np.broadcast_to(node.neuron.bias, (channels,)), fixed)


class _Add(_Population):
    """``Add``: the population of its synapse-only inputs' space."""

    def is_producer(self, node) -> bool:
        return True

    def zero_input(self, graph: ir.Graph, node) -> np.ndarray:
        feeders = [graph.nodes[p] for p in graph.predecessors(node.name)]
        return np.logical_and.reduce([_rows_zero(f.weight) for f in feeders])

    def bias(self, node, channels: int) -> np.ndarray:
        return np.zeros(channels) if node.neuron.bias is None else node.neuron.bias


class _Synapse(_Population):
    """``Dense`` / ``Conv``: weight rows and batch-norm parameters per output channel."""

    def is_producer(self, node) -> bool:
        return bool(node.neuron)

    def zero_input(self, graph: ir.Graph, node) -> np.ndarray:
        return _rows_zero(node.weight)

    def bias(self, node, channels: int) -> np.ndarray:
        return _effective_bias(node)

    def drop_out(self, node, keep: np.ndarray) -> tuple[dict, dict]:
        changes, meta = super().drop_out(node, keep)
        changes["weight"] = node.weight[keep]
        if node.bn is not None:
            bn = node.bn
            changes["bn"] = dataclasses.replace(
                bn,
                weight=bn.weight[keep],
                bias=bn.bias[keep],
                running_mean=bn.running_mean[keep],
                running_var=bn.running_var[keep],
            )
        return changes, meta


class _Dense(_Synapse):
    """``Dense``: an input channel is a block of ``block`` columns (``H*W`` after a Flatten)."""

    def reads_nothing(self, node, channels: int, block: int) -> np.ndarray:
        w = node.weight.reshape(node.weight.shape[0], channels, block)
        return ~np.any(w != 0, axis=(0, 2))

    def drop_in(self, node, weight: np.ndarray, keep: np.ndarray, block: int) -> np.ndarray:
        return weight[:, np.repeat(keep, block)]


class _Conv(_Synapse):
    """``Conv``: input channel ``c`` is ``weight[:, c]``. A depthwise conv (``groups == C_in ==
    C_out``, e.g. a Pool that netx stored as a conv) passes its input's channels on as a Pool does;
    any other grouped conv pins its input's and its own channels."""

    def passes_channels(self, node) -> bool:
        return _depthwise(node)

    def pins(self, node) -> bool:
        return node.groups != 1 and not _depthwise(node)

    def pins_input(self, node) -> bool:
        return self.pins(node)

    def is_producer(self, node) -> bool:
        return bool(node.neuron) and not _depthwise(node)

    def lift(self, node, channels: int, fixed: bool) -> np.ndarray | None:
        if not _depthwise(node) or node.neuron is None:
            return None
        return bias_can_fire(node.neuron, _effective_bias(node), fixed)

    def reads_nothing(self, node, channels: int, block: int) -> np.ndarray:
        return ~np.any(node.weight != 0, axis=(0, 2, 3))

    def drop_in(self, node, weight: np.ndarray, keep: np.ndarray, block: int) -> np.ndarray:
        return weight[:, keep]

    def drop_out(self, node, keep: np.ndarray) -> tuple[dict, dict]:
        changes, meta = super().drop_out(node, keep)
        if _depthwise(node):
            changes["groups"] = int(keep.sum())
        return changes, meta


_KINDS: dict[str, _Kind] = {
    "input": _Kind(),
    "output": _Output(),
    "flatten": _View(),
    "pool": _Pool(),
    "add": _Add(),
    "dense": _Dense(),
    "conv": _Conv(),
}


def _kind(node) -> _Kind:
    """The node kind's channel handler; a kind without one stops the pass (no silent fall-back)."""
    handler = _KINDS.get(node.kind)
    if handler is None:
        raise SnncError(f"{node.name}: remove_dead has no channel handler for node kind {node.kind!r}")
    return handler


def _calibration_silent(graph: ir.Graph, calibration: np.ndarray) -> dict[str, np.ndarray]:
    """Per population (original channel index): never spiked on ``calibration``. ``{name: (C,)
    bool}``."""
    from snnc.sim import simulate

    res = simulate(graph, calibration, record=True)
    out = {}
    for name, spikes in (res.layers or {}).items():
        if _kind(graph.nodes[name]).is_producer(graph.nodes[name]):
            axes = (0,) + tuple(range(2, spikes.ndim))
            out[name] = spikes.sum(axis=axes, dtype=np.int64) == 0
    return out


def _fires_alone(node, channels: int, fixed: bool) -> bool:
    """Can any of the node's neurons spike with zero input (by its bias alone)?"""
    if isinstance(node, ir.Pool):
        lift = _kind(node).lift(node, channels, fixed)
        return lift is not None and bool(lift.any())
    return bool(bias_can_fire(node.neuron, _effective_bias(node), fixed).any())


def _branch(graph: ir.Graph, members: list[str], shapes, fixed: bool, gone: set[str]) -> set[str] | None:
    """The nodes that go with an emptied channel space ``members``: the space and every node left
    with zero input that cannot spike. ``None`` when the output would need one of them (the branch
    reaches ``Output`` or a population its bias can fire). ``Add`` nodes stop the branch (they keep
    their other inputs; :func:`_remove_branches` checks that they have some). ``gone``: nodes
    already removed with other branches."""
    gone = gone | set(members)
    for name, node in graph.nodes.items():  # topological order: a node's inputs are decided first
        if name in gone or isinstance(node, ir.Add):
            continue
        if not any(p in gone for p in graph.predecessors(name)):
            continue
        if _synapse_only(node) or isinstance(node, ir.Flatten):
            gone.add(name)
        elif getattr(node, "neuron", None) is not None and not _fires_alone(node, shapes[name][0], fixed):
            gone.add(name)
        else:
            return None
    return gone


def _remove_branches(graph: ir.Graph, empty, groups, sp: _Spaces, shapes, fixed: bool, counts):
    """Delete the branch of each emptied space (:func:`_branch`), edges included; or raise naming
    the layer (the one empty by itself first) or the ``Add`` whose output cannot be computed.
    ``counts``: this round's reasons (a branch's are kept, with the nodes removed and the ``Add``
    nodes that lost them as inputs); nothing else changes in this round."""
    gone: set[str] = set()
    branches: dict[str, list[str]] = {}
    cause: dict[str, str] = {}  # removed node -> the emptied layer it goes with
    for _, prod, c in sorted(empty, key=lambda e: e[0]):
        if prod in gone:  # removed with another branch
            continue
        nodes = _branch(graph, groups[sp.find(prod)], shapes, fixed, gone)
        if nodes is None:
            raise SnncError(
                f"layer {prod} would lose every one of its {c} channels (masked, dead or "
                "unused); the network cannot compute its output; retrain or prune less"
            )
        branches[prod] = [n for n in graph.nodes if n in nodes and n not in gone]
        cause.update({n: prod for n in branches[prod]})
        gone = nodes
    for name, node in graph.nodes.items():
        preds = graph.predecessors(name)
        if name not in gone and isinstance(node, ir.Add) and all(p in gone for p in preds):
            layers = ", ".join(sorted({cause[p] for p in preds}))
            raise SnncError(
                f"add {name} would lose every one of its inputs ({', '.join(preds)}) as layer "
                f"{layers} loses every channel (masked, dead or unused); the network cannot compute "
                "its output; retrain or prune less"
            )
    reasons = {}
    for prod, nodes in branches.items():
        adds = sorted({s for n in nodes for s in graph.successors(n) if s not in gone})
        reasons[prod] = {**counts[prod], "nodes": nodes, "adds": adds}
    kept = {n: node for n, node in graph.nodes.items() if n not in gone}
    edges = tuple((a, b) for a, b in graph.edges if a not in gone and b not in gone)
    return ir.Graph(kept, edges, dict(graph.meta)), reasons


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
        producers = [m for m in members if _kind(graph.nodes[m]).is_producer(graph.nodes[m])]
        if len(producers) != 1:
            continue
        prod = producers[0]
        pnode = graph.nodes[prod]
        pkind = _kind(pnode)
        c = shapes[prod][0]
        mask = pnode.meta.get("channel_mask")
        masked = np.zeros(c, bool) if mask is None else np.asarray(mask) == 0
        zero_in = pkind.zero_input(graph, pnode)
        dead = zero_in & ~bias_can_fire(pnode.neuron, pkind.bias(pnode, c), fixed)
        # a Pool (or depthwise conv) passing this space on may itself be lifted by its own bias
        for m in members:
            lift = _kind(graph.nodes[m]).lift(graph.nodes[m], c, fixed)
            if lift is not None:
                dead &= ~lift
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
            cnode = graph.nodes[cons]
            unneeded &= _kind(cnode).reads_nothing(cnode, c, _in_block(graph, shapes, cons))
        remove = masked | dead | unneeded | calib
        if not remove.any():
            continue
        if remove.all():
            # name the layer that is empty by itself, not one emptied because nothing reads it
            reasons[prod] = {
                "removed": "branch",
                "masked": int(masked.sum()),
                "dead": int((dead & ~masked).sum()),
                "unneeded": int((unneeded & ~dead & ~masked).sum()),
                "calibration": int((calib & ~dead & ~masked & ~unneeded).sum()),
                "before": c,
                "after": 0,
            }
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
        return _remove_branches(graph, empty, groups, sp, shapes, fixed, reasons)
    if not out_keep:
        return graph, reasons
    new: dict[str, ir.Node] = {}
    for name in set(out_keep) | set(in_keep):
        node = graph.nodes[name]
        kind = _kind(node)
        changes, meta = {}, {}
        if name in out_keep:
            changes, meta = kind.drop_out(node, out_keep[name])
        if name in in_keep:
            w = changes.get("weight", node.weight)
            changes["weight"] = kind.drop_in(node, w, in_keep[name], _in_block(graph, shapes, name))
        if changes or meta:
            new[name] = ir.replace(node, meta=meta, **changes)
    return graph.replace(**new), reasons


def _with_orig(graph: ir.Graph) -> ir.Graph:
    """Record each population's original channel indices once (for reports and calibration
    lookup)."""
    shapes = graph.shapes()
    new = {}
    for name, node in graph.nodes.items():
        if _kind(node).has_channels and "orig_channels" not in node.meta:
            new[name] = ir.replace(node, meta={"orig_channels": np.arange(shapes[name][0])})
    return graph.replace(**new) if new else graph


def remove_dead(graph: ir.Graph, calibration: np.ndarray | None = None) -> ir.Graph:
    """Remove masked, dead, unneeded (and, with ``calibration``, silent) channels; see the module
    doc.

    ``calibration``: optional spikes ``(N, *input_shape, T)``; channels that never spike on them are
    removed too (lossy, noted, ``graph.meta["lossy"] = True``).
    """
    graph = _with_orig(graph)
    if any(ir.is_graded(getattr(n, "neuron", None)) for n in graph.nodes.values()):
        # a sigma-delta channel without input still sends relu(bias) (docs/loihi2.md §2.7)
        return note(graph, "sigma-delta (graded) layers: no channel removed")
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
            if r.get("removed") == "branch":
                t.update(removed="branch", nodes=r["nodes"], adds=r["adds"])
    notes = []
    new: dict[str, ir.Node] = {}
    branch_of: dict[str, list[str]] = {}
    for name, t in totals.items():
        why = ", ".join(f"{k} {t[k]}" for k in ("masked", "dead", "unneeded", "calibration") if t[k])
        if t.get("removed") == "branch":
            adds = " and ".join(t["adds"])
            its = "s its" if len(t["adds"]) == 1 else " their"
            rest = f"; {adds} keep{its} other inputs" if adds else ""
            notes.append(
                f"{name}: removed with its branch ({', '.join(t['nodes'])}): all {t['before']} "
                f"channels ({why}){rest}"
            )
            for a in t["adds"]:
                branch_of.setdefault(a, []).extend(t["nodes"])
            continue
        notes.append(f"{name}: removed {t['before'] - t['after']} of {t['before']} channels ({why})")
        node = new.get(name, graph.nodes[name])
        prev = dict(node.meta.get("removed", {}))
        for k in ("masked", "dead", "unneeded", "calibration"):
            prev[k] = prev.get(k, 0) + t[k]
        new[name] = ir.replace(node, meta={"removed": prev})
    for name, nodes in branch_of.items():  # an Add that lost inputs records the nodes they were
        node = new.get(name, graph.nodes[name])
        prev = dict(node.meta.get("removed", {}))
        prev["branch"] = list(prev.get("branch", [])) + nodes
        new[name] = ir.replace(node, meta={"removed": prev})
    graph = graph.replace(**new) if new else graph
    if silent is not None and any(t["calibration"] for t in totals.values()):
        graph = graph.with_meta(lossy=True)
        notes.append(
            "channels silent on the calibration data were removed: lossy, other inputs may " "differ"
        )
    return note(graph, *notes)
