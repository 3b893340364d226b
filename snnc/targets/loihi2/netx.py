"""netx HDF5 (lava-dl's network file): weights, reader, writer and ``describe`` (all h5py use of
snnc).

File format: lava-dl netx 0.6.0 (docs/loihi2.md §1). ``read_netx`` turns a file that
``netx.hdf5.Network`` can run (ours or lava-dl ``export_hdf5``'s) into a fixed-point
:class:`~snnc.ir.Graph` whose simulation equals what Lava computes: dense weights pass
through netx's ``optimize_weight_bits`` and Lava's clip/truncate (§1.5, reimplemented here with
numpy, so reading a file does not import Lava), conv weights are raw (§2.3). ``write_netx`` writes
exactly lava-dl's schema (§1, §6) and refuses what netx would silently corrupt; ``read_netx``
dispatches on the layer ``type`` (one reader per kind), ``write_netx`` on the node kind (one
:class:`~snnc.ir.NodeVisitor`). Running a file in Lava is :mod:`snnc.targets.loihi2.lava`'s.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from snnc.errors import SnncError, UsageError
from snnc.fileio import atomic_path, check_h5_self_contained
from snnc.ir import (
    Add,
    Conv,
    CubaLIF,
    Dense,
    Flatten,
    Graph,
    GraphError,
    Input,
    NodeVisitor,
    Output,
    Pool,
    SigmaDelta,
    is_graded,
)
from snnc.ir.fixed import DECAY_UNITY
from snnc.ir.limits import check_graph
from snnc.targets.loihi2.spec import (
    W_EXC_MAX,
    W_MAX,
    W_MIN,
    WEIGHT_BITS,
    WEIGHT_MANTISSA_BITS,
    lava_weights,
    weight_field_problem,
)

NETX_FILE = "network.net"  # the netx network in a build directory
# snnc's key of a dense layer: b"sparse" or b"dense", map_cores' choice (node.meta["synapse"]). netx
# never reads it: its sparse_fc_layer makes every dense layer Sparse (docs/loihi2.md §7.2).
SYNAPSE_KEY = "synapse"

# netx's default neuron for a dense layer without a ``neuron`` group: a non-leaky integrator that
# never
# spikes. ``1 << 18 - 1`` is ``1 << 17`` by operator precedence (docs/loihi2.md §1.4).
_NETX_DEFAULT_NEURON = {"iDecay": 0, "vDecay": DECAY_UNITY, "vThMant": 1 << 17}
_UNSUPPORTED = {
    "dense_rec": "recurrent dense layers (dense_rec) are not supported by snnc's feed-forward IR",
    "dense_comp": "complex dense layers (dense_comp) do not load in netx either",
    "convT": "transposed convolution (convT) does not load in netx (NotImplementedError)",
    "unpool": "unpool does not load in netx (NotImplementedError)",
    "average": "average layers do not load in netx (NotImplementedError)",
    "concat": "concat layers do not load in netx (NotImplementedError)",
}


# -- netx weight preparation, reimplemented (docs/loihi2.md §1.5)
# ---------------------------------------
def netx_optimize_weight_bits(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` in numpy: ``(weights, num_weight_bits,
    weight_exp)``.

    Raises :class:`SnncError` for an all-zero matrix (netx crashes on it, docs/loihi2.md §1.5).
    """
    w = np.asarray(weight).astype(np.int64)
    wmax, wmin = int(w.max()), int(w.min())
    if wmax == 0 and wmin == 0:
        raise SnncError("all-zero dense weights: netx crashes on them (OverflowError); remove the layer")
    if wmax > W_MAX and wmin < 0:
        w = np.clip(w, W_MIN, W_MAX)
        wmax = int(w.max())
    if wmin < W_MIN and wmax > 0:
        w = np.clip(w, W_MIN, W_MAX)
        wmin = int(w.min())
    with np.errstate(divide="ignore"):  # max == 0 with min < 0 is "mixed" in netx: 127 / 0 = inf
        if wmax < 0:
            signed, scale = 0, -256 / np.float64(wmin)
        elif wmin >= 0:
            signed, scale = 0, 255 / np.float64(wmax)
        else:
            signed, scale = 1, min(127 / np.float64(wmax), -128 / np.float64(wmin))
    scale_bits = int(np.floor(np.log2(scale))) + signed
    # netx: the largest n <= 8 with every weight a multiple of 2**n, i.e. the trailing zero bits of
    # all weights OR-ed together (two's complement keeps them for negative weights)
    low = int(np.bitwise_or.reduce(w.reshape(-1) & 255))
    n = WEIGHT_MANTISSA_BITS if low == 0 else (low & -low).bit_length() - 1
    n -= signed
    num_weight_bits = WEIGHT_MANTISSA_BITS - scale_bits - n
    # np.left_shift with a negative count yields 0: the "all zero" cases of §1.5.
    stored = (
        np.left_shift(w.astype(np.int32), scale_bits).astype(np.int64)
        if scale_bits >= 0
        else np.zeros_like(w)
    )
    return stored, int(num_weight_bits), -scale_bits


def lava_dense_weights(weights: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """The fixed-point Dense model's first-step weight preparation (§2.2): sign, clip, truncate."""
    return lava_weights(weights, num_weight_bits)


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """What Lava's Dense uses for hdf5 ``weight`` ``(out, in)`` integers: ``(stored int64,
    weight_exp)``.

    netx's ``optimize_weight_bits`` then the Dense model's clip/truncate (docs/loihi2.md §1.5, §2.2).
    The synapse current is ``sum(stored[:, s]) << weight_exp`` (an arithmetic ``>>`` when negative).
    """
    stored, nwb, exp = netx_optimize_weight_bits(weight)
    return lava_dense_weights(stored, nwb), exp


def _ir_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Stored weights and exponent as IR fields: integers with exp 0 when the scaling is exact."""
    stored, exp = netx_dense_weights(weight)
    if exp >= 0:
        return stored * (2**exp), 0
    eff = stored / 2.0 ** (-exp)
    if np.all(eff == np.round(eff)):
        return eff.astype(np.int64), 0
    return stored, exp


# -- reading ---------------------------------------------------------------------------------------
def _decode(value) -> str:
    v = value[()] if hasattr(value, "shape") else value
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else b""
    if isinstance(v, bytes):
        return v.decode("ascii", "ignore").strip("\x00").strip()
    return str(v).strip()


def _pair_of(grp, key: str, where: str, default: int) -> tuple[int, int]:
    if key not in grp:
        return (default, default)
    a = np.asarray(grp[key][()]).reshape(-1)
    if a.size == 1:
        return (int(a[0]), int(a[0]))
    if a.size != 2:
        raise UsageError(f"{where}: key '{key}' must be a scalar or [y, x], got {a.tolist()}")
    return (int(a[0]), int(a[1]))


def _read_neuron(grp, where: str, default: dict | None = None, input: bool = False) -> CubaLIF | SigmaDelta:
    """The layer's neuron: CUBA-LIF, or a sigma-delta neuron for ``type`` ``SDNN`` (``input``: the
    input layer's, a ``Delta``), as netx's ``get_neuron_params`` builds it (docs/loihi2.md §1.4)."""
    if "neuron" not in grp:
        if default is None:
            raise UsageError(f"{where}: missing key 'neuron'")
        params = dict(default)
        bias = None
    else:
        ng = grp["neuron"]
        if not hasattr(ng, "keys"):
            raise UsageError(f"{where}: key 'neuron' must be a group")
        ntype = _check_neuron_type(ng, where)
        if "messageBits" in ng:
            raise UsageError(f"{where}: key 'neuron/messageBits' makes netx fail to build; remove it")
        if ntype == "SDNN":
            return _read_sdnn(grp, ng, where, input)
        params = {}
        for key in ("iDecay", "vDecay", "vThMant"):
            params[key] = _scalar(ng, key, where)
        bias = None
    if "bias" in grp:
        bias = np.asarray(grp["bias"][()]).reshape(-1).astype(int)  # netx: .astype(int) (§1.2)
    try:
        return CubaLIF(
            threshold=params["vThMant"],
            current_decay=params["iDecay"],
            voltage_decay=params["vDecay"],
            bias=bias,
        )
    except GraphError as e:
        raise UsageError(f"{where}: bad neuron parameters ({e}); key 'neuron'") from None


def _scalar(ng, key: str, where: str) -> int:
    if key not in ng:
        raise UsageError(f"{where}: missing key 'neuron/{key}'")
    val = np.asarray(ng[key][()]).reshape(-1)
    if val.size != 1:
        raise UsageError(f"{where}: key 'neuron/{key}' must be a scalar")
    return int(val[0])


def _read_sdnn(grp, ng, where: str, input: bool) -> SigmaDelta:
    """netx's SDNN neuron (``hdf5.py`` ``get_neuron_params``): ``Delta`` for the input layer,
    ``Sigma`` where the neuron group has ``sigma_output``, else ``SigmaDelta`` with ReLU (netx
    ignores ``activation``) and the layer's ``bias``; ``spike_exp = state_exp = 6`` (§1.4, §2.7)."""
    bias = None
    if input:
        mode = "delta"  # netx's create_input passes no bias (§1.7)
    elif "sigma_output" in ng:
        mode = "sigma"
        if "bias" in grp:  # netx hands the bias to Sigma(...), which takes none: TypeError
            raise UsageError(f"{where}: netx cannot build a sigma_output layer with key 'bias'; remove it")
    else:
        mode = "sigma_delta"
        if "bias" in grp:
            bias = np.asarray(grp["bias"][()]).reshape(-1).astype(int)  # netx: .astype(int) (§1.2)
    threshold = _scalar(ng, "vThMant", where) if mode != "sigma" or "vThMant" in ng else 0
    try:
        return SigmaDelta(threshold=threshold, bias=bias, mode=mode)
    except GraphError as e:
        raise UsageError(f"{where}: bad neuron parameters ({e}); key 'neuron'") from None


def _check_neuron_type(ng, where: str) -> str:
    """The neuron group's ``type``: ``CUBA``/``LOIHI`` (CUBA-LIF) or ``SDNN`` (sigma-delta), the kinds
    snnc simulates; anything else is :class:`SnncError` (the file's content, exit 1)."""
    ntype = _decode(ng["type"]) if "type" in ng else ""
    if ntype not in ("CUBA", "LOIHI", "SDNN"):
        raise SnncError(
            f"{where}: neuron type {ntype!r} is not supported (key 'neuron/type'): snnc simulates "
            "CUBA-LIF and sigma-delta (SDNN) networks only; run this network with lava-dl netx itself"
        )
    return "SDNN" if ntype == "SDNN" else "CUBA"


def _broadcast_bias(neuron: CubaLIF | SigmaDelta, channels: int) -> CubaLIF | SigmaDelta:
    """A single bias (slayer's scalar MeanOnlyBatchNorm) applies to every neuron, as in netx."""
    if neuron.bias is not None and neuron.bias.size == 1 and channels != 1:
        return dataclasses.replace(neuron, bias=np.full(channels, neuron.bias.reshape(-1)[0]))
    return neuron


def _open_h5(path: Path):
    import h5py

    if not path.exists():
        raise UsageError(f"{path} does not exist; give a build directory or a netx .net file")
    if path.is_dir():
        raise UsageError(f"{path} is a directory without network.net; give a netx .net file")
    try:
        return check_h5_self_contained(h5py.File(path, "r"), path)  # before any data is read
    except OSError:
        from snnc.checkpoint import refuse_lfs_pointer

        refuse_lfs_pointer(path)
        raise UsageError(
            f"{path} is not an HDF5 file (corrupt or wrong format); give a netx .net "
            "file written by snnc or lava-dl export_hdf5"
        ) from None


def read_netx(path: str | os.PathLike) -> Graph:
    """Read a netx HDF5 file into a fixed-point :class:`Graph` (sequential) that ``simulate`` runs
    as Lava does.

    Raises :class:`UsageError` (one line, naming the layer index and key) for malformed or
    unsupported files.
    """
    path = Path(path)
    with _open_h5(path) as f:
        if "layer" not in f or not hasattr(f["layer"], "keys"):
            raise UsageError(f"{path}: missing group 'layer'; not a netx network file")
        lg = f["layer"]
        try:
            idx = sorted(int(k) for k in lg.keys())
        except ValueError:
            raise UsageError(f"{path}: group 'layer' has non-numeric layer names") from None
        if idx != list(range(len(idx))) or not idx:
            raise UsageError(f"{path}: layers must be numbered 0..n-1, found {idx}")
        nodes: list = []
        shape: tuple[int, ...] | None = None
        for i in idx:
            grp = lg[str(i)]
            where = f"{path.name}: layer {i}"
            if "type" not in grp:
                raise UsageError(f"{where}: missing key 'type'")
            kind = _decode(grp["type"])
            try:
                node, shape = _read_layer(grp, kind, i, where, shape, nodes)
            except (
                KeyError,
                ValueError,
                TypeError,
                IndexError,
                ArithmeticError,  # a damaged file: int(inf), a division by a zero field
                OSError,
                RuntimeError,  # h5py's errors on a damaged dataset
            ) as e:
                raise UsageError(f"{where} ({kind}): malformed ({type(e).__name__}: {e})") from None
            if node is not None:
                nodes.append(node)
        if not nodes or isinstance(nodes[0], Input) and len(nodes) == 1:
            raise UsageError(f"{path}: no synaptic layer found")
    if not isinstance(nodes[0], Input):
        raise UsageError(f"{path}: layer 0: network input shape unknown; add an input layer with 'shape'")
    nodes.append(Output("output"))
    graph = Graph.from_list(nodes, meta={"precision": "fixed", "source": str(path)})
    try:
        check_graph(graph)  # structure, sizes and value ranges (snnc.ir.limits)
    except GraphError as e:
        raise UsageError(f"{path}: inconsistent layers: {e}") from None
    return graph


def _check_shape(grp, where: str, got: tuple[int, ...]) -> None:
    if "shape" in grp:
        want = tuple(int(v) for v in np.asarray(grp["shape"][()]).reshape(-1))
        if int(np.prod(want)) != int(np.prod(got)):
            raise UsageError(f"{where}: key 'shape' {list(want)} does not match the layer output {list(got)}")


def _read_layer(grp, kind: str, i: int, where: str, shape, nodes):
    """One netx layer -> ``(IR node or None, its output shape)``; a dense layer first in the file
    also appends the ``Input`` it implies to ``nodes``."""
    if kind in _UNSUPPORTED:
        raise UsageError(f"{where}: {_UNSUPPORTED[kind]}")
    reader = _LAYER_READERS.get(kind)
    if reader is None:
        raise UsageError(f"{where}: unknown layer type {kind!r} (key 'type')")
    return reader(grp, kind, i, where, shape, nodes)


def _read_input(grp, kind: str, i: int, where: str, shape, nodes):
    if i != 0:
        raise UsageError(f"{where}: an input layer must be layer 0")
    if "shape" not in grp:
        raise UsageError(f"{where}: missing key 'shape'")
    shp = tuple(int(v) for v in np.asarray(grp["shape"][()]).reshape(-1))
    if not shp or min(shp) < 1:
        raise UsageError(f"{where}: key 'shape' {list(shp)} is not a valid (C, H, W) or (F,)")
    if "neuron" not in grp:
        return Input("input", shape=shp), shp
    # netx builds a LIF (a Delta for SDNN) without bias here; the layer's 'weight'/'bias' only become
    # the block's unused `transform`; the input drives the neuron's a_in directly (docs/loihi2.md §1.7)
    neuron = _read_neuron({k: grp[k] for k in grp.keys() if k != "bias"}, where, input=True)
    meta = {}
    for key in ("weight", "bias"):
        if key in grp:
            meta[key] = float(np.asarray(grp[key][()]).reshape(-1)[0])
    return Input("input", shape=shp, neuron=neuron, meta={"netx_transform": meta} if meta else {}), shp


def _read_flatten(grp, kind: str, i: int, where: str, shape, nodes):
    if shape is None:
        raise UsageError(f"{where}: flatten before any layer with a known shape")
    return Flatten(f"flatten{i}"), (int(np.prod(shape)),)


def _dense_weight(grp, where: str) -> np.ndarray:
    """The ``(out, in)`` integer weights of a dense layer (netx truncates toward zero, §1.2)."""
    if "weight" not in grp:
        key = "weight/real" if "weight" in grp and "real" in grp["weight"] else "weight"
        raise UsageError(f"{where}: missing key '{key}'")
    if hasattr(grp["weight"], "keys"):
        raise UsageError(f"{where}: complex weights ('weight/real', 'weight/imag') are not supported")
    w = np.asarray(grp["weight"][()])
    if w.ndim == 1:
        w = w.reshape(int(np.asarray(grp["shape"][()]).reshape(-1)[0]), -1)
    if w.ndim != 2:
        raise UsageError(f"{where}: key 'weight' must be 2-D (out, in), got shape {w.shape}")
    return w.astype(int)


def _read_dense(grp, kind: str, i: int, where: str, shape, nodes):
    w = _dense_weight(grp, where)
    if "delay" in grp and np.any(np.asarray(grp["delay"][()]) != 0):
        raise UsageError(f"{where}: synaptic delays (key 'delay') are not supported by snnc")
    try:
        stored, exp = _ir_dense_weights(w)
    except SnncError as e:
        raise UsageError(f"{where}: key 'weight': {e}") from None
    neuron = _broadcast_bias(_read_neuron(grp, where, default=_NETX_DEFAULT_NEURON), w.shape[0])
    if neuron.bias is not None and neuron.bias.shape != (w.shape[0],):
        raise UsageError(f"{where}: key 'bias' has {neuron.bias.size} values for {w.shape[0]} neurons")
    if shape is None:
        shape = (w.shape[1],)
        nodes.append(Input("input", shape=shape))
    elif len(shape) != 1:
        raise UsageError(f"{where}: dense after a {len(shape)}-D layer needs a flatten layer before it")
    if shape != (w.shape[1],):
        raise UsageError(f"{where}: key 'weight' has {w.shape[1]} inputs, previous layer has {shape[0]}")
    node = Dense(f"dense{i}", weight=stored, weight_exp=exp, neuron=neuron)
    out = (w.shape[0],)
    _check_shape(grp, where, out)
    return node, out


def _read_pool(grp, i: int, where: str, stride, padding, dilation, neuron) -> Pool:
    # netx cannot load 'pool' (§1.3); the tap weight is a scalar sum-pool weight (§1.6).
    if "weight" not in grp:
        raise UsageError(f"{where}: missing key 'weight'")
    tap = np.asarray(grp["weight"][()]).reshape(-1)
    ksz = _pair_of(grp, "kernelSize", where, 0) if "kernelSize" in grp else None
    if ksz is None:
        raise UsageError(f"{where}: missing key 'kernelSize'")
    if padding != (0, 0) or dilation != (1, 1):
        raise UsageError(f"{where}: pool with padding or dilation is not supported")
    return Pool(f"pool{i}", kernel=ksz, stride=stride, weight=float(int(tap[0])), neuron=neuron)


def _read_conv(grp, i: int, where: str, stride, padding, dilation, neuron) -> Conv:
    if "weight" not in grp:
        raise UsageError(f"{where}: missing key 'weight'")
    w = np.asarray(grp["weight"][()])
    if w.ndim == 5 and w.shape[-1] == 1:  # old slayer: trailing ,1 (§1.4)
        w = w[..., 0]
    if w.ndim != 4:
        raise UsageError(f"{where}: key 'weight' must be (C_out, C_in/groups, kH, kW), got shape {w.shape}")
    groups = int(np.asarray(grp["groups"][()]).reshape(-1)[0]) if "groups" in grp else 1
    return Conv(
        f"conv{i}",
        weight=w.astype(int),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        neuron=neuron,
    )


def _read_spatial(grp, kind: str, i: int, where: str, shape, nodes):
    """A ``conv`` or ``pool`` layer on a ``(C, H, W)`` input."""
    if shape is None:
        raise UsageError(
            f"{where}: input shape could not be inferred; add an input layer with 'shape' "
            "before the first conv"
        )
    if len(shape) != 3:
        raise UsageError(f"{where}: {kind} needs a (C, H, W) input, previous layer gives {shape}")
    stride = _pair_of(grp, "stride", where, 1)
    padding = _pair_of(grp, "padding", where, 0)
    dilation = _pair_of(grp, "dilation", where, 1)
    neuron = _read_neuron(grp, where)
    read = _read_pool if kind == "pool" else _read_conv
    node = read(grp, i, where, stride, padding, dilation, neuron)
    try:
        out = node.out_shape(shape, "previous layer")
    except GraphError as e:
        raise UsageError(f"{where}: {e}") from None
    if neuron.bias is not None and neuron.bias.size != out[0]:
        raise UsageError(f"{where}: key 'bias' has {neuron.bias.size} values for {out[0]} channels")
    _check_shape(grp, where, out)
    return node, out


_LAYER_READERS = {
    "input": _read_input,
    "flatten": _read_flatten,
    "dense": _read_dense,
    "conv": _read_spatial,
    "pool": _read_spatial,
}


# -- writing ---------------------------------------------------------------------------------------
def effective_int(node, what: str) -> np.ndarray:
    w = np.asarray(node.weight, dtype=np.float64) * 2.0 ** int(getattr(node, "weight_exp", 0))
    if not np.all(w == np.round(w)):
        raise SnncError(f"{node.name}: {what} weights are not integers after weight_exp; quantize first")
    return w.astype(np.int64)


def _write_neuron(g, neuron: CubaLIF | SigmaDelta, name: str, input: bool = False) -> None:
    if isinstance(neuron, SigmaDelta):
        _write_sdnn(g, neuron, name, input)
        return
    thr = neuron.threshold
    if thr != int(thr) or thr < 0:
        raise SnncError(f"{name}: threshold {thr} is not a non-negative integer mantissa; quantize first")
    # netx passes du = iDecay - 1 (§1.4): iDecay 0 (no current decay) gives du = -1, which Lava's
    # CPU model computes as intended but a 12-bit hardware register cannot hold.
    g.create_dataset("neuron/type", data="CUBA")
    g.create_dataset("neuron/iDecay", data=int(neuron.current_decay))
    g.create_dataset("neuron/vDecay", data=int(neuron.voltage_decay))
    g.create_dataset("neuron/vThMant", data=int(thr))
    g.create_dataset("neuron/refDelay", data=1)


def _write_sdnn(g, neuron: SigmaDelta, name: str, input: bool) -> None:
    """slayer's SDNN neuron group (``type``, ``activation``, ``vThMant``; ``sigma_output`` for a
    ``Sigma``), refusing what netx would build differently (docs/loihi2.md §1.4, §2.7)."""
    want = ("delta",) if input else ("sigma_delta", "sigma")
    if neuron.mode not in want:
        where = "the input layer" if input else "a synaptic layer"
        raise SnncError(
            f"{name}: netx builds {' or '.join(want)} neurons in {where}, not {neuron.mode!r}; "
            "run this graph with snnc simulate or Lava processes instead"
        )
    if neuron.cum_error or neuron.activation != "relu" or (neuron.spike_exp, neuron.state_exp) != (6, 6):
        raise SnncError(
            f"{name}: netx builds sigma-delta neurons with ReLU, cum_error off and spike_exp = state_exp "
            "= 6 only; this neuron cannot be written to netx"
        )
    g.create_dataset("neuron/type", data="SDNN")
    g.create_dataset("neuron/activation", data="relu")
    g.create_dataset("neuron/vThMant", data=int(neuron.threshold))
    if neuron.mode == "sigma":
        g.create_dataset("neuron/sigma_output", data=True)


def _write_bias(g, neuron: CubaLIF | SigmaDelta, name: str) -> None:
    if neuron.bias is None:
        return
    b = np.asarray(neuron.bias)
    if not np.all(b == np.round(b)):
        raise SnncError(f"{name}: bias is not an integer mantissa; quantize first")
    g.create_dataset("bias", data=b.astype(np.float32))


def _type(g, kind: str) -> None:
    g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])  # as slayer writes it (§1.2)


def check_netx_expressible(graph: Graph) -> None:
    """Raise :class:`SnncError` unless ``graph`` can be a netx file (fixed and sequential)."""
    if graph.precision != "fixed":
        raise SnncError("the loihi2 target needs a fixed-point graph; run quantize (snnc compile) first")
    if any(isinstance(n, Add) for n in graph.nodes.values()) or not graph.is_sequential():
        raise SnncError(
            "netx files are sequential: this graph has residual Add nodes; use graph.safetensors "
            "and run_lava's process builder instead"
        )


def write_netx(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` (fixed, sequential) as a netx HDF5 file that ``netx.hdf5.Network`` loads
    unchanged.

    Schema (docs/loihi2.md §1, §6): ``type`` S10 shape (1,), ``shape`` in PyTorch order, integer-valued
    float32 ``weight``/``bias``, no ``messageBits``, a neuron-less ``input`` layer with ``shape``,
    an explicit ``flatten`` before a dense that follows a conv, pool as a grouped conv. Refuses
    (one-line :class:`SnncError`) dense matrices netx would crash on or corrupt. Written atomically.
    """
    import h5py

    graph.verify()
    check_netx_expressible(graph)
    layers = _NetxLayers(graph).layers()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for i, (kind, d) in enumerate(layers):
            _write_layer(f.create_group(f"layer/{i}"), kind, d)


class _NetxLayers(NodeVisitor):
    """The netx layers of a sequential graph, one ``(kind, fields)`` per node but the output.

    ``visit_<kind>(node, prev_shape)``: ``prev_shape`` is the output shape of the layer before.
    """

    backend = "netx"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.shapes = graph.shapes()

    def layers(self) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        prev_shape = self.graph.input.shape
        for name, node in self.graph.nodes.items():
            layer = self.visit(node, prev_shape)
            if layer is None:  # the output node: not a netx layer
                continue
            out.append(layer)
            prev_shape = self.shapes[name]
        return out

    def generic_visit(self, node, prev_shape):
        raise SnncError(f"{node.name}: {node.kind} nodes cannot be written to netx")

    def visit_input(self, node: Input, prev_shape):
        return "input", {"shape": node.shape, "node": node}

    def visit_output(self, node: Output, prev_shape):
        return None

    def visit_flatten(self, node: Flatten, prev_shape):
        return "flatten", {"shape": (int(np.prod(prev_shape)), 1, 1)}

    def visit_dense(self, node: Dense, prev_shape):
        name = node.name
        _require_neuron(node)
        if len(prev_shape) != 1:
            raise SnncError(f"{name}: dense after a {prev_shape} layer needs a Flatten node")
        w = effective_int(node, "dense")
        if not w.any():
            raise SnncError(
                f"{name}: all dense weights are zero; netx crashes on it (docs/loihi2.md §1.5); "
                "remove the layer"
            )
        if w.max() > (W_EXC_MAX if w.min() >= 0 else W_MAX) or w.min() < W_MIN:
            raise SnncError(
                f"{name}: dense weights must lie in [{W_MIN}, {W_MAX}] (all >= 0: [0, {W_EXC_MAX}]) "
                f"for netx, got [{w.min()}, {w.max()}]; quantize with 8-bit weights"
            )
        stored, exp = netx_dense_weights(w)
        got = np.floor(stored * 2.0**exp) if exp < 0 else stored * 2**exp
        if not np.array_equal(got, w):
            bad = int(np.sum(got != w))
            raise SnncError(
                f"{name}: netx would alter {bad} dense weights (its 8-bit scaling, "
                f"docs/loihi2.md §1.5); use even weights in [{W_MIN}, {W_MAX}]"
            )
        problem = weight_field_problem(w)
        nwb = netx_optimize_weight_bits(w)[1]
        if problem is not None or nwb > WEIGHT_BITS:
            raise SnncError(
                f"{name}: dense weights do not fit Loihi 2's 8-bit synapse "
                f"({problem or f'netx needs num_weight_bits = {nwb}'}, docs/loihi2.md §1.5); "
                "quantize them (snnc compile --target loihi2)"
            )
        return "dense", {"node": node, "weight": w, "shape": self.shapes[name]}

    def visit_conv(self, node: Conv, prev_shape):
        _require_neuron(node)
        w = effective_int(node, "conv")
        problem = weight_field_problem(w)  # netx hands them on raw, num_weight_bits = 8 (§1.4)
        if problem is not None:
            raise SnncError(
                f"{node.name}: conv weights do not fit Loihi 2's 8-bit synapse ({problem}, "
                "docs/loihi2.md §1.5); quantize them (snnc compile --target loihi2)"
            )
        conv = {
            "stride": node.stride,
            "padding": node.padding,
            "dilation": node.dilation,
            "groups": node.groups,
        }
        return "conv", {"node": node, "weight": w, "shape": self.shapes[node.name], **conv}

    def visit_pool(self, node: Pool, prev_shape):
        _require_neuron(node)
        c = prev_shape[0]
        w = node.conv_weight(c)  # netx has no pool: a grouped conv (§1.3)
        if w.flat[0] != round(w.flat[0]):
            raise SnncError(f"{node.name}: pool weight {node.weight} is not an integer; quantize first")
        conv = {"stride": node.stride, "padding": (0, 0), "dilation": (1, 1), "groups": c}
        return "conv", {"node": node, "weight": w, "shape": self.shapes[node.name], **conv}


def _require_neuron(node) -> None:
    if node.neuron is None:
        raise SnncError(f"{node.name}: a synapse without neuron cannot be written to netx")


def _write_layer(g, kind: str, d: dict) -> None:
    """One layer group in lava-dl's schema (§1, §6)."""
    _type(g, kind)
    g.create_dataset("shape", data=np.asarray(d["shape"], dtype=np.int64))
    if kind == "input" and d["node"].neuron is not None:  # §1.7: netx ignores weight/bias here
        node = d["node"]
        if node.neuron.bias is not None:
            raise SnncError(f"{node.name}: netx gives an input neuron no bias; it cannot be written")
        for key, val in node.meta.get("netx_transform", {}).items():
            g.create_dataset(key, data=np.float32(val))
        _write_neuron(g, node.neuron, node.name, input=True)
        return
    if kind in ("input", "flatten"):
        return
    node = d["node"]
    w = d["weight"]
    g.create_dataset("weight", data=np.asarray(w, dtype=np.float32))
    if kind == "dense":
        g.create_dataset("inFeatures", data=int(w.shape[1]))
        g.create_dataset("outFeatures", data=int(w.shape[0]))
        if node.meta.get("synapse") in ("sparse", "dense"):
            g.create_dataset(SYNAPSE_KEY, (1,), "S10", [node.meta["synapse"].encode("ascii")])
    else:
        g.create_dataset("inChannels", data=int(w.shape[1] * d["groups"]))
        g.create_dataset("outChannels", data=int(w.shape[0]))
        g.create_dataset("kernelSize", data=np.asarray(w.shape[2:], dtype=np.int64))
        for key in ("stride", "padding", "dilation"):
            g.create_dataset(key, data=np.asarray(d[key], dtype=np.int64))
        g.create_dataset("groups", data=int(d["groups"]))
    _write_bias(g, node.neuron, node.name)
    _write_neuron(g, node.neuron, node.name)


def netx_synapses(path: str | os.PathLike) -> list[str]:
    """Per dense layer of a netx file, in file order: ``"sparse"`` where its ``synapse`` key says
    so, else ``"dense"`` (what netx builds without ``sparse_fc_layer``, docs/loihi2.md §7.2)."""
    with _open_h5(Path(path)) as f:
        out = []
        for i in sorted(int(k) for k in f["layer"].keys()):
            g = f["layer"][str(i)]
            if "type" in g and _decode(g["type"]) == "dense":
                marked = SYNAPSE_KEY in g and _decode(g[SYNAPSE_KEY]) == "sparse"
                out.append("sparse" if marked else "dense")
    return out


def describe_netx(path: str | os.PathLike) -> dict:
    """``snnc inspect`` for a netx file: layers, shapes, neuron parameters, weight bits."""
    path = Path(path)
    graph = read_netx(path)
    shapes = graph.shapes()
    rows, layers = [], []
    total = 0
    for name, node in graph.nodes.items():
        if isinstance(node, Input | Output):
            continue
        w = getattr(node, "weight", None)
        params = int(np.size(w)) if isinstance(w, np.ndarray) else 0
        total += params
        neuron = getattr(node, "neuron", None)
        nz = int(np.count_nonzero(w)) if isinstance(w, np.ndarray) else 0
        bits = None
        if isinstance(w, np.ndarray) and nz:
            m = int(np.abs(w).max())
            bits = int(np.ceil(np.log2(m + 1))) + int(w.min() < 0)
        npar = None
        if isinstance(neuron, SigmaDelta):
            npar = {
                "type": "sdnn",
                "mode": neuron.mode,
                "threshold": neuron.threshold,
                "bias": neuron.bias is not None,
            }
        elif neuron is not None:
            npar = {
                "threshold": neuron.threshold,
                "current_decay": neuron.current_decay,
                "voltage_decay": neuron.voltage_decay,
                "bias": neuron.bias is not None,
            }
        layers.append(
            {
                "name": name,
                "kind": node.kind,
                "shape": list(shapes[name]),
                "params": params,
                "nonzero_weights": nz,
                "weight_bits": bits,
                "weight_exp": int(getattr(node, "weight_exp", 0)),
                "neuron": npar,
            }
        )
        rows.append(
            [
                name,
                node.kind,
                "x".join(map(str, shapes[name])),
                params,
                nz,
                "-" if bits is None else bits,
                _neuron_cell(npar),
            ]
        )
    in_shape = list(graph.input.shape)
    out_shape = list(shapes[graph.output.name])
    return {
        "file": str(path),
        "type": "netx-hdf5",
        "input_shape": in_shape,
        "output_shape": out_shape,
        "parameters": total,
        "layers": layers,
        "summary": f"netx network, input {in_shape} -> output {out_shape}, {len(layers)} layers, "
        f"{total} parameters",
        "columns": [
            "layer",
            "kind",
            "shape",
            "params",
            "nonzero",
            "weight bits",
            "vth/iDecay/vDecay",
        ],
        "graded": any(is_graded(getattr(n, "neuron", None)) for n in graph.nodes.values()),
        "rows": rows,
    }


def _neuron_cell(npar: dict | None) -> str:
    """``snnc inspect``'s neuron column: ``vth/iDecay/vDecay`` for CUBA-LIF, ``sdnn <mode> vth`` for
    a sigma-delta neuron."""
    if npar is None:
        return "-"
    if npar.get("type") == "sdnn":
        return f"sdnn {npar['mode']} vth {npar['threshold']}"
    return f"{npar['threshold']:g}/{npar['current_decay']}/{npar['voltage_decay']}"
