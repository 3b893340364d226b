"""The onnx target: one time step of the network as an ONNX graph with its state in and out.

``model.onnx`` maps ``(x, state...)`` to ``(y, state'...)``: ``x`` ``(N, *input_shape)`` are the
input spikes of one step, ``y`` ``(N, *output_shape)`` the last layer's spikes of that step. The
state is one synapse buffer per synaptic node (``<node>.abuf``: the current accumulated at the
previous step, LAVA_FACTS §2.2) and ``u``, ``v`` per neuron population. :func:`run_onnx` is the
driver: zero state, loop over ``T``.

Every tensor is float64 (conv runs in float32, exact below 2**24, as onnxruntime has no float64
Conv) and every value an integer below 2**53, so the integer arithmetic of ``snnc.sim``
(§2.6) is exact: the decay's round toward zero is ``sign(x) * floor(|x|)`` of an exact division by
4096, the 24-bit wrap and saturation are ``Where``/``Max``/``Min``, conv wrap uses ``Floor``. Float
graphs export the same step without the fixed-point rounding.
"""

from __future__ import annotations

import os

import numpy as np

from snnc.errors import SnncError, UsageError
from snnc.ir import Add, Conv, Dense, Flatten, Graph, Input, Output, Pool

ONNX_FILE = "model.onnx"
OPSET = 17
_WRAP = float(2**23)


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
        q = self.op("Div", [self.op("Abs", [x]), self.const(4096.0)])
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
    fixed = graph.precision == "fixed"
    shapes = graph.shapes()
    b = _Builder()
    inputs, outputs = [], []

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.DOUBLE, ["N", *shape])

    vals: dict[str, str] = {}
    inputs.append(vi("x", graph.input.shape))
    currents: dict[str, str] = {}
    for name, node in graph.nodes.items():
        preds = graph.predecessors(name)
        if isinstance(node, Input):
            vals[name] = "x"
            continue
        if isinstance(node, Output):
            vals[name] = vals[preds[0]]
            continue
        if isinstance(node, Flatten):
            vals[name] = b.op("Flatten", [vals[preds[0]]], axis=1)
            continue
        if isinstance(node, Add):
            a_in = currents[preds[0]]
            for p in preds[1:]:
                a_in = b.op("Add", [a_in, currents[p]])
        else:
            src = vals[preds[0]]
            syn = _synapse(b, node, src, shapes[preds[0]], fixed)
            abuf = f"{name}.abuf"
            inputs.append(vi(abuf, shapes[name]))
            outputs.append((abuf, syn))
            a_in = abuf  # the buffered current of the previous step (§2.2)
            if node.neuron is None:
                currents[name] = a_in
                continue
        vals[name] = _neuron(b, node, a_in, shapes[name], fixed, inputs, outputs, vi)
    y = b.op("Identity", [vals[graph.output.name]])
    out_infos = [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", *shapes[graph.output.name]])]
    b.nodes.append(helper.make_node("Identity", [y], ["y"]))
    for state, val in outputs:
        b.nodes.append(helper.make_node("Identity", [val], [f"{state}.next"]))
        shape = next(i for i in inputs if i.name == state).type.tensor_type.shape
        info = helper.make_tensor_value_info(f"{state}.next", TensorProto.DOUBLE, None)
        info.type.tensor_type.shape.CopyFrom(shape)
        out_infos.append(info)
    g = helper.make_graph(b.nodes, "snnc_step", inputs, out_infos, initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnc")
    model.ir_version = 8
    checker.check_model(model)
    return model


def _synapse(b: _Builder, node, src: str, in_shape, fixed: bool) -> str:
    if isinstance(node, Dense):
        w = np.asarray(node.weight, dtype=np.float64)
        cur = b.op("MatMul", [src, b.const(w.T.copy())])
        e = int(node.weight_exp)
        if e:
            cur = b.op("Mul", [cur, b.const(2.0**e)])
            if fixed and e < 0:
                cur = b.op("Floor", [cur])  # Lava's arithmetic >> (§2.2)
        return cur
    # onnxruntime has no float64 Conv: run it in float32, exact for integer spikes x integer weights
    # while every partial sum stays below 2**24 (checked here).
    src32 = b.op("Cast", [src], to=1)
    if isinstance(node, Pool):
        c = in_shape[0]
        w = np.full((c, 1, *node.kernel), float(node.weight))
        _check_f32(node.name, w, fixed)
        cur = b.op("Conv", [src32, b.const32(w)], strides=list(node.stride), group=c)
    elif isinstance(node, Conv):
        w = np.asarray(node.weight, dtype=np.float64)
        _check_f32(node.name, w, fixed)
        py, px = node.padding
        cur = b.op(
            "Conv",
            [src32, b.const32(w)],
            strides=list(node.stride),
            pads=[py, px, py, px],
            dilations=list(node.dilation),
            group=node.groups,
        )
        if not fixed and node.weight_exp:
            cur = b.op("Mul", [cur, b.const(2.0**node.weight_exp)])
    else:
        raise SnncError(f"{node.name}: not a synaptic node")
    cur = b.op("Cast", [cur], to=11)
    return b.wrap24(cur) if fixed else cur


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
        keep_u, keep_v = 4096 - n.current_decay, 4096 - n.voltage_decay
        u = b.op(
            "Add",
            [
                b.trunc_div4096(b.op("Mul", [u_in, b.const(float(keep_u))])),
                b.op("Mul", [a_in, b.const(64.0)]),
            ],
        )
        u = b.op("Where", [b.op("Greater", [u, b.const(_WRAP)]), b.op("Sub", [u, b.const(2 * _WRAP)]), u])
        u = b.op(
            "Where",
            [b.op("LessOrEqual", [u, b.const(-_WRAP)]), b.op("Add", [u, b.const(2 * _WRAP)]), u],
        )
        v = b.op("Add", [b.trunc_div4096(b.op("Mul", [v_in, b.const(float(keep_v))])), u])
        if bias is not None:
            v = b.op("Add", [v, b.const(bias * 64.0)])
        v = b.op("Min", [b.op("Max", [v, b.const(-_WRAP + 1)]), b.const(_WRAP - 1)])
        thr = float(int(n.threshold) << 6)
    else:
        u = b.op("Add", [b.op("Mul", [u_in, b.const((4096 - n.current_decay) / 4096)]), a_in])
        v = b.op("Add", [b.op("Mul", [v_in, b.const((4096 - n.voltage_decay) / 4096)]), u])
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


def run_onnx(path_or_model, x: np.ndarray) -> np.ndarray:
    """Drive the step model over time: ``x`` ``(N, *in_shape, T)`` -> ``(N, *out_shape, T)``."""
    import onnxruntime as ort

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
