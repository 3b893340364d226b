"""Energy counts what is deployed: a dense-encoded layer's stored zeros are read, a sparse one's are not."""

from __future__ import annotations

import numpy as np
import pytest
from graph_helpers import fixed_graph

from snnc.ir import CubaLIF, Dense, Graph, Input
from snnc.sim import simulate
from snnc.sim.interpreter import LOIHI1_SYNOP_ENERGY_J, stored_per_synop


def _graph(synapse: str | None) -> Graph:
    w = np.zeros((4, 6))
    w[0, :] = 2  # 6 non-zeros of 24 stored
    meta = {} if synapse is None else {"synapse": synapse}
    fc = Dense("fc", weight=w, neuron=CubaLIF(threshold=1, current_decay=4096, voltage_decay=4096), meta=meta)
    return fixed_graph([Input("in", shape=(6,)), fc])


def test_stored_per_synop_by_encoding():
    assert stored_per_synop(_graph(None)) == {"fc": 4.0}  # 24 stored / 6 non-zero
    assert stored_per_synop(_graph("dense")) == {"fc": 4.0}
    assert stored_per_synop(_graph("sparse")) == {"fc": 1.0}


def test_energy_charges_dense_zeros_not_sparse_ones():
    x = np.zeros((1, 6, 3), np.uint8)
    x[0, :, 0] = 1  # 6 input spikes, each reaching one non-zero weight: 6 SynOps
    dense, sparse = (simulate(_graph(s), x) for s in ("dense", "sparse"))
    assert dense.synops == sparse.synops == {"fc": 6}
    assert dense.deployed_synops("fc") == 24 and sparse.deployed_synops("fc") == 6
    e_dense = dense.energy_latency()["energy_per_inference_j_loihi1_figures"]
    e_sparse = sparse.energy_latency()["energy_per_inference_j_loihi1_figures"]
    assert e_dense - e_sparse == pytest.approx(18 * LOIHI1_SYNOP_ENERGY_J)
    layer = dense.summary()["layers"][0]
    assert layer["synops_per_sample"] == 6 and layer["deployed_synops_per_sample"] == 24
