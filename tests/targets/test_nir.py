"""NIR export/import (snnc.targets.nir): round trips that simulate identically, and the tau
mapping."""

from __future__ import annotations

import numpy as np
import pytest
from compile_helpers import ARCHS, graphs_equal, masked_model, spikes

from snnc import ir
from snnc.compile.pipeline import compile_graph
from snnc.compile.trace import trace
from snnc.errors import SnncError
from snnc.sim import simulate
from snnc.targets.loihi2 import TARGET
from snnc.targets.nir import DT, read_nir, to_nir, write_nir


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_float_and_fixed(arch, tmp_path):
    c = compile_graph(trace(masked_model(arch, seed=51)), TARGET)
    x = spikes(4, 12, seed=52)
    for graph in (c.pruned, c.final):
        path = tmp_path / f"{graph.precision}.nir"
        write_nir(graph, path)
        back = read_nir(path)
        assert back.precision == graph.precision
        assert graphs_equal(back, graph)
        ref = simulate(graph, x).output
        assert ref.sum() > 0
        np.testing.assert_array_equal(simulate(back, x).output, ref)


@pytest.mark.parametrize("current_decay, bias", [(1024, None), (4096, 0.1), (2048, -0.05)])
def test_tau_mapping_matches_nir_definition(current_decay, bias):
    """Forward Euler (dt = DT) of NIR's Affine + CubaLIF equations with the exported parameters
    reproduces snnc's float neuron: a hand integration of one neuron. Exact without bias or with
    ``du = 4096``; otherwise the bias-as-current transient of the first steps is within a bound."""
    neuron = ir.CubaLIF(
        threshold=1.5,
        current_decay=current_decay,
        voltage_decay=512,
        bias=None if bias is None else np.array([bias]),
    )
    nodes = [
        ir.Input("in", shape=(1,)),
        ir.Dense("d", weight=np.array([[0.7]]), neuron=neuron),
        ir.Output("out"),
    ]
    g = ir.Graph.from_list(nodes, {"precision": "float"})
    nir_graph = to_nir(g)
    assert nir_graph.metadata["dt"] == DT
    aff, lif = nir_graph.nodes["d"], nir_graph.nodes["d.lif"]
    x = (np.random.default_rng(0).random(40) < 0.5).astype(float)
    a = np.concatenate([[0.0], 0.7 * x[:-1]]) + aff.bias[0]  # one step of synaptic latency (snnc)
    i_syn = v = 0.0
    out, vs = [], []
    for t in range(40):
        i_syn = i_syn + DT * (-i_syn + lif.w_in[0] * a[t]) / lif.tau_syn[0]
        v = v + DT * (lif.v_leak[0] - v + lif.r[0] * i_syn) / lif.tau_mem[0]
        s = v > lif.v_threshold[0]
        vs.append(v)
        v = lif.v_reset[0] if s else v
        out.append(s)
    ref = simulate(g, x.reshape(1, 1, 40).astype(np.uint8)).output[0, 0]
    assert ref.sum() > 0
    if bias is None or current_decay == 4096:
        np.testing.assert_array_equal(np.array(out, dtype=np.int8), ref)
    else:  # the bias reaches v as bias * (1 - alpha^(t+1)): spikes agree once the transient is gone
        np.testing.assert_array_equal(np.array(out, dtype=np.int8)[10:], ref[10:])


def test_unfolded_bn_refused():
    with pytest.raises(SnncError, match="fold_bn"):
        to_nir(trace(masked_model("convnet", seed=1)))


@pytest.mark.slow
def test_emit_via_cli_target_writes_nir(tmp_path):
    from snnc.targets.nir import emit_nir

    g = compile_graph(trace(masked_model("lenet", seed=3)), TARGET).final
    assert emit_nir(g, tmp_path) == ["network.nir"]
    assert graphs_equal(read_nir(tmp_path / "network.nir"), g)
