"""The ``sim`` target: ``graph.safetensors`` for ``snnc simulate`` (snnc's own interpreter,
:mod:`snnc.sim`, bit-exact with Lava's fixed-point model).

Its graphs hold Loihi 2's numbers, so it lowers as Loihi 2 does (:class:`Loihi2Lowering`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnc.ir import Graph
from snnc.targets.base import emit_dir, save_graph_file
from snnc.targets.loihi2.target import Loihi2Lowering


class SimTarget(Loihi2Lowering):
    """``sim``: the graph file only; ``run`` is the simulator."""

    name = "sim"

    def emit(self, graph: Graph, out_dir: Path) -> list[str]:
        return [save_graph_file(graph, emit_dir(graph, out_dir))]

    def run(self, net: Path | None, graph: Graph, x: np.ndarray) -> np.ndarray:
        from snnc.sim import simulate

        return simulate(graph, x).output


TARGET = SimTarget()
