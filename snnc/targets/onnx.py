"""The onnx target: one time step of the network as an ONNX graph with its state in and out.

``model.onnx`` maps ``(x, state...)`` to ``(y, state'...)``: ``x`` ``(N, *input_shape)`` are the
input spikes of one step, ``y`` ``(N, *output_shape)`` the last layer's spikes of that step. The
state is one synapse buffer per synaptic node (``<node>.abuf``: the current accumulated at the
previous step, docs/loihi2.md §2.2) and ``u``, ``v`` per neuron population. :func:`run_onnx` is the
driver: zero state, loop over ``T``.

Every tensor is float64 (conv runs in float32, exact below 2**24, as onnxruntime has no float64
Conv) and every value an integer below 2**53, so the integer arithmetic of ``snnc.sim``
(§2.6) is exact: the decay's round toward zero is ``sign(x) * floor(|x|)`` of an exact division by
4096, the 24-bit wrap and saturation are ``Where``/``Max``/``Min``, conv wrap uses ``Floor``. Float
graphs export the same step without the fixed-point rounding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnc.errors import SnncError, UsageError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, NodeVisitor, Output, Pool
from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_UNITY, STATE_WRAP
from snnc.targets.base import emit_dir, require_fixed, save_graph_file
from snnc.targets.loihi2.target import Loihi2Lowering

ONNX_FILE = "model.onnx"
OPSET = 17
_WRAP = float(STATE_WRAP)  # as a float64 ONNX constant
_UNITY = float(DECAY_UNITY)


class _Builder:
    def __init__(self) -> None:
        from onnx import helper

        self.h = helper
        self.nodes: list = []
        self.inits: list = []
        self.k = 0

    def const(self, value, name: str | None = None) -> str:
        from onnx import numpy_helper

        self.k += 1
        name = name or f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), name))
        return name

    def const32(self, value) -> str:
        from onnx import numpy_helper

        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self.k += 1
        out = f"t{self.k}_{op_type.lower()}"
        self.nodes.append(self.h.make_node(op_type, inputs, [out], **attrs))
        return out

    def trunc_div4096(self, x: str) -> str:
        """``sign(x) * floor(|x| / 4096)``: Lava's round-toward-zero ``>> 12`` (§2.1), exact."""
        q = self.op("Div", [self.op("Abs", [x]), self.const(_UNITY)])
        return self.op("Mul", [self.op("Sign", [x]), self.op("Floor", [q])])

    def wrap24(self, x: str) -> str:
        """``(x + 2**23) mod 2**24 - 2**23``, floor semantics (Lava conv ``signed_clamp``, §2.3)."""
        shifted = self.op("Add", [x, self.const(_WRAP)])
        k = self.op("Floor", [self.op("Div", [shifted, self.const(2 * _WRAP)])])
        return self.op("Sub", [x, self.op("Mul", [k, self.const(2 * _WRAP)])])


def build_step_model(graph: Graph):
    """The ONNX ``ModelProto`` of one step of ``graph`` (either precision)."""
    from onnx import TensorProto, checker, helper

    graph.verify()
    step = _StepModel(graph)
    for node in graph.nodes.values():
        step.visit(node)
    b, shapes = step.b, step.shapes
    y = b.op("Identity", [step.vals[graph.output.name]])
    out_infos = [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", *shapes[graph.output.name]])]
    b.nodes.append(helper.make_node("Identity", [y], ["y"]))
    for state, val in step.outputs:
        b.nodes.append(helper.make_node("Identity", [val], [f"{state}.next"]))
        shape = next(i for i in step.inputs if i.name == state).type.tensor_type.shape
        info = helper.make_tensor_value_info(f"{state}.next", TensorProto.DOUBLE, None)
        info.type.tensor_type.shape.CopyFrom(shape)
        out_infos.append(info)
    g = helper.make_graph(b.nodes, "snnc_step", step.inputs, out_infos, initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnc")
    model.ir_version = 8
    checker.check_model(model)
    return model


class _StepModel(NodeVisitor):
    """One visit per node, in graph order: the ONNX ops of its step.

    ``vals``: node -> the ONNX value of its output spikes; ``currents``: synapse-only node -> its
    buffered current (summed by the ``Add`` it feeds); ``inputs``/``outputs``: the state tensors
    (``<node>.abuf``, ``.u``, ``.v``) in and their next values out.
    """

    backend = "onnx"

    def __init__(self, graph: Graph) -> None:
        from onnx import TensorProto, helper

        self.graph = graph
        self.fixed = graph.precision == "fixed"
        self.shapes = graph.shapes()
        self.b = _Builder()
        self.vals: dict[str, str] = {}
        self.currents: dict[str, str] = {}
        self.outputs: list[tuple[str, str]] = []
        self._info = lambda name, shape: helper.make_tensor_value_info(
            name, TensorProto.DOUBLE, ["N", *shape]
        )
        self.inputs = [self._info("x", graph.input.shape)]

    def _pred(self, node) -> str:
        return self.graph.predecessors(node.name)[0]

    def visit_input(self, node: Input) -> None:
        if node.neuron is not None:  # docs/loihi2.md §1.7
            raise SnncError(f"{node.name}: an input layer with a neuron cannot be exported to ONNX")
        self.vals[node.name] = "x"

    def visit_output(self, node: Output) -> None:
        self.vals[node.name] = self.vals[self._pred(node)]

    def visit_flatten(self, node: Flatten) -> None:
        self.vals[node.name] = self.b.op("Flatten", [self.vals[self._pred(node)]], axis=1)

    def visit_add(self, node: Add) -> None:
        preds = self.graph.predecessors(node.name)
        a_in = self.currents[preds[0]]
        for p in preds[1:]:
            a_in = self.b.op("Add", [a_in, self.currents[p]])
        self._neuron(node, a_in)

    def visit_dense(self, node: Dense) -> None:
        b = self.b
        w = np.asarray(node.weight, dtype=np.float64)
        cur = b.op("MatMul", [self.vals[self._pred(node)], b.const(w.T.copy())])
        e = int(node.weight_exp)
        if e:
            cur = b.op("Mul", [cur, b.const(2.0**e)])
            if self.fixed and e < 0:
                cur = b.op("Floor", [cur])  # Lava's arithmetic >> (§2.2)
        self._synapse(node, cur)

    # onnxruntime has no float64 Conv: conv and pool run in float32, exact for integer spikes x
    # integer weights while every partial sum stays below 2**24 (checked by _check_f32).
    def visit_pool(self, node: Pool) -> None:
        b = self.b
        c = self.shapes[self._pred(node)][0]
        w = node.conv_weight(c)
        _check_f32(node.name, w, self.fixed)
        cur = b.op("Conv", [self._src32(node), b.const32(w)], strides=list(node.stride), group=c)
        self._synapse(node, self._conv_current(cur))

    def visit_conv(self, node: Conv) -> None:
        b = self.b
        w = np.asarray(node.weight, dtype=np.float64)
        _check_f32(node.name, w, self.fixed)
        py, px = node.padding
        cur = b.op(
            "Conv",
            [self._src32(node), b.const32(w)],
            strides=list(node.stride),
            pads=[py, px, py, px],
            dilations=list(node.dilation),
            group=node.groups,
        )
        if not self.fixed and node.weight_exp:
            cur = b.op("Mul", [cur, b.const(2.0**node.weight_exp)])
        self._synapse(node, self._conv_current(cur))

    def _src32(self, node) -> str:
        return self.b.op("Cast", [self.vals[self._pred(node)]], to=1)

    def _conv_current(self, cur: str) -> str:
        cur = self.b.op("Cast", [cur], to=11)
        return self.b.wrap24(cur) if self.fixed else cur

    def _synapse(self, node, syn: str) -> None:
        """Buffer the synapse current one step (§2.2), then the neuron (or the Add) reads it."""
        abuf = f"{node.name}.abuf"
        self.inputs.append(self._info(abuf, self.shapes[node.name]))
        self.outputs.append((abuf, syn))
        if node.neuron is None:
            self.currents[node.name] = abuf
        else:
            self._neuron(node, abuf)

    def _neuron(self, node, a_in: str) -> None:
        shape = self.shapes[node.name]
        self.vals[node.name] = _neuron(
            self.b, node, a_in, shape, self.fixed, self.inputs, self.outputs, self._info
        )


def _check_f32(name: str, w: np.ndarray, fixed: bool) -> None:
    if fixed and np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max() >= 2**24:
        raise SnncError(
            f"{name}: conv sums may exceed 2**24, which float32 ONNX Conv cannot hold "
            "exactly; use the sim or loihi2 target"
        )


def _neuron(b: _Builder, node, a_in: str, shape, fixed: bool, inputs, outputs, vi) -> str:
    n = node.neuron
    name = node.name
    u_in, v_in = f"{name}.u", f"{name}.v"
    inputs += [vi(u_in, shape), vi(v_in, shape)]
    bshape = (shape[0],) + (1,) * (len(shape) - 1)
    bias = None if n.bias is None else np.asarray(n.bias, dtype=np.float64).reshape(bshape)
    bn = getattr(node, "bn", None)
    if bn is not None:
        if fixed:
            raise SnncError(f"{name}: a fixed-point graph cannot hold batch-norm; run fold_bn first")
        scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
        a_in = b.op("Mul", [a_in, b.const(scale.reshape(bshape))])
        shift = (bn.bias - scale * bn.running_mean).reshape(bshape)
        bias = shift if bias is None else bias + shift
    if fixed:
        keep_u, keep_v = DECAY_UNITY - n.current_decay, DECAY_UNITY - n.voltage_decay
        u = b.op(
            "Add",
            [
                b.trunc_div4096(b.op("Mul", [u_in, b.const(float(keep_u))])),
                b.op("Mul", [a_in, b.const(float(1 << ACTIVATION_SHIFT))]),
            ],
        )
        u = b.op("Where", [b.op("Greater", [u, b.const(_WRAP)]), b.op("Sub", [u, b.const(2 * _WRAP)]), u])
        u = b.op(
            "Where",
            [b.op("LessOrEqual", [u, b.const(-_WRAP)]), b.op("Add", [u, b.const(2 * _WRAP)]), u],
        )
        v = b.op("Add", [b.trunc_div4096(b.op("Mul", [v_in, b.const(float(keep_v))])), u])
        if bias is not None:
            v = b.op("Add", [v, b.const(bias * float(1 << ACTIVATION_SHIFT))])
        v = b.op("Min", [b.op("Max", [v, b.const(-_WRAP + 1)]), b.const(_WRAP - 1)])
        thr = float(int(n.threshold) << ACTIVATION_SHIFT)
    else:
        u = b.op("Add", [b.op("Mul", [u_in, b.const((DECAY_UNITY - n.current_decay) / DECAY_UNITY)]), a_in])
        v = b.op("Add", [b.op("Mul", [v_in, b.const((DECAY_UNITY - n.voltage_decay) / DECAY_UNITY)]), u])
        if bias is not None:
            v = b.op("Add", [v, b.const(bias)])
        thr = float(n.threshold)
    s = b.op("Greater", [v, b.const(thr)])
    v = b.op("Where", [s, b.const(0.0), v])  # reset v only (§2.1)
    outputs += [(u_in, u), (v_in, v)]
    return b.op("Cast", [s], to=11)  # bool -> double


def export_onnx(graph: Graph, path: str | os.PathLike) -> None:
    """Write the one-step model of ``graph`` to ``path`` atomically."""
    import onnx

    from snnc.fileio import atomic_path

    model = build_step_model(graph)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def check_external_data(path: str | os.PathLike) -> None:
    """One-line :class:`UsageError` when a tensor of the ONNX model at ``path`` keeps its data in a
    file outside the model's directory (an absolute path, a ``..`` path or a symlink leaving it):
    onnxruntime would read that file. Checked on the graph alone, before any data is loaded."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UsageError(
            f"cannot load the ONNX model {path} ({type(e).__name__}); re-create it with "
            "snnc compile --target onnx"
        ) from None
    base = Path(os.path.realpath(path.parent))
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in tensor.external_data}.get("location", "")
        outside = not Path(os.path.realpath(base / where)).is_relative_to(base)
        if not where or Path(where).is_absolute() or ".." in Path(where).parts or outside:
            raise UsageError(
                f"{path}: tensor {tensor.name!r} keeps its data outside the build directory "
                f"({where!r}); re-create the model with snnc compile --target onnx"
            )


def _tensors(graph):
    """Every tensor of an ONNX graph: initializers, attribute tensors, and those of subgraphs."""
    yield from graph.initializer
    yield from (t.values for t in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def run_onnx(path_or_model, x: np.ndarray) -> np.ndarray:
    """Drive the step model over time: ``x`` ``(N, *in_shape, T)`` -> ``(N, *out_shape, T)``.
    A model file is checked first (:func:`check_external_data`)."""
    import onnxruntime as ort

    if not hasattr(path_or_model, "SerializeToString"):
        check_external_data(path_or_model)

    data = (
        path_or_model.SerializeToString()
        if hasattr(path_or_model, "SerializeToString")
        else str(path_or_model)
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UsageError(
            f"cannot load the ONNX model ({type(e).__name__}); re-create it with "
            "snnc compile --target onnx"
        ) from None
    x = np.asarray(x)
    ins = sess.get_inputs()
    xin = next(i for i in ins if i.name == "x")
    in_shape = tuple(xin.shape[1:])
    if x.ndim != len(in_shape) + 2 or tuple(x.shape[1:-1]) != in_shape:
        raise UsageError(
            f"input shape {tuple(x.shape)} does not match the model input "
            f"(N, {', '.join(map(str, in_shape))}, T)"
        )
    n, t = x.shape[0], x.shape[-1]
    state = {i.name: np.zeros((n, *i.shape[1:])) for i in ins if i.name != "x"}
    names = ["y"] + [f"{k}.next" for k in state]
    ys = []
    xf = x.astype(np.float64)
    for k in range(t):
        res = sess.run(names, {"x": np.ascontiguousarray(xf[..., k]), **state})
        ys.append(res[0])
        state = dict(zip(state, res[1:], strict=True))
    return np.stack(ys, axis=-1).astype(np.int8)


class OnnxTarget(Loihi2Lowering):
    """``onnx``: ``model.onnx`` (one step, state in and out) and ``graph.safetensors``; ``run`` drives
    it in onnxruntime. Its numbers are Loihi 2's, so it lowers as Loihi 2 does."""

    name = "onnx"

    def emit(self, graph: Graph, out_dir: Path) -> list[str]:
        out = emit_dir(graph, out_dir)
        require_fixed(graph, self.name)
        export_onnx(graph, out / ONNX_FILE)
        return [ONNX_FILE, save_graph_file(graph, out)]

    def run(self, net: Path | None, graph: Graph, x: np.ndarray) -> np.ndarray:
        """onnxruntime on ``net``'s ``model.onnx`` when it is a build directory that has one, else on
        the step model of ``graph``."""
        model = Path(net) / ONNX_FILE if net is not None and Path(net).is_dir() else None
        if model is None or not model.is_file():
            model = build_step_model(graph)
        return run_onnx(model, x)


TARGET = OnnxTarget()
