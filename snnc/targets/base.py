"""What a target is: the :class:`Target` protocol, the :class:`FixedPointSpec` record, and the two
steps every emitter shares.

A target is one object (no base class needed: anything with these attributes is a target) found
through :data:`snnc.targets.registry.TARGETS`, the only list of targets:

- ``name``: what ``snnc compile --target`` calls it;
- ``spec``: the integer formats its graphs hold (:class:`FixedPointSpec`), ``None`` for a float
  target;
- ``limits``: its resource limits, a frozen dataclass of its own (Loihi 2's is
  :class:`snnc.targets.loihi2.spec.CoreLimits`), which ``lower`` enforces and ``snnc compile
  --cores`` / ``--core-limit KEY=N`` override field by field; or ``None``: the target has no budget
  of its own (``sim``, ``onnx``, ``nir`` size a net on Loihi 2 for the report but refuse nothing);
- ``lower(graph, log=None, limits=None)``: its own passes (quantize, map onto cores, ...), run by
  :func:`snnc.compile.passes.run_passes` after the generic ones (``fold_bn``, ``remove_dead``);
  ``limits`` overrides ``self.limits`` for one compilation;
- ``emit(graph, out_dir)``: writes its files and ``graph.safetensors`` into the existing directory
  ``out_dir`` and returns their names;
- optionally ``run(net, graph, x)`` (:class:`RunnableTarget`): runs the deployed network on the
  target's runtime, ``x`` ``(N, *input_shape, T)`` spikes -> ``(N, *output_shape, T)``; ``net`` is
  what the user named (a build directory or a file, or ``None``), from which the target picks its
  own artifact (``network.net``, ``model.onnx``), else it builds one from ``graph``.

Adding a target: a module (or package) that defines such an object as ``TARGET``, named in
:data:`~snnc.targets.registry.TARGETS` (or added with ``TARGETS.register(obj)`` at run time).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from snnc.errors import SnncError
from snnc.ir import Graph


@dataclass(frozen=True)
class FixedPointSpec:
    """The integer formats of a fixed-point target: what its ``lower`` quantizes to.

    ``weight_bits`` is what one synapse stores (Loihi 2: 8; its sign mode decides the range); weights,
    threshold and bias mantissas lie in the closed ranges given; decays have ``decay_bits`` (a decay of
    ``d`` keeps ``(2**decay_bits - d) / 2**decay_bits`` of a state per step); neuron states are signed
    ``state_bits``-bit; inputs, bias and threshold are used ``<< activation_shift``. ``precision`` is
    the graph precision ``lower`` produces (``graph.meta["precision"]``).
    """

    weight_bits: int
    weight_min: int
    weight_max: int
    threshold_max: int
    bias_min: int
    bias_max: int
    decay_bits: int
    state_bits: int
    activation_shift: int
    precision: str = "fixed"

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@runtime_checkable
class Target(Protocol):
    """A compile target (see the module docstring): ``name``, ``spec``, ``limits``, ``lower``,
    ``emit``."""

    name: str
    spec: FixedPointSpec | None
    limits: Any

    def lower(self, graph: Graph, log: Callable[[str], None] | None = None, limits: Any = None) -> Graph:
        """The target's own passes on a graph the generic passes have run on."""
        ...

    def emit(self, graph: Graph, out_dir: Path) -> list[str]:
        """Write the target's files and ``graph.safetensors`` into ``out_dir``; their names."""
        ...


@runtime_checkable
class RunnableTarget(Target, Protocol):
    """A target that can also run what it deployed (``snnc simulate --backend``)."""

    def run(self, net: Path | None, graph: Graph, x: np.ndarray) -> np.ndarray:
        """``x`` ``(N, *input_shape, T)`` through the target's runtime -> output spikes."""
        ...


def emit_dir(graph: Graph, out_dir: str | os.PathLike) -> Path:
    """The first step of every ``emit``: verify ``graph`` and check that ``out_dir`` exists."""
    out = Path(out_dir)
    if not out.is_dir():
        raise SnncError(f"output directory {out} does not exist")
    graph.verify()
    return out


def save_graph_file(graph: Graph, out: Path) -> str:
    """The last step of every ``emit``: write ``graph.safetensors`` (any build directory can be
    simulated); its name."""
    from snnc.ir.serialize import GRAPH_FILE, save_graph

    save_graph(graph, out / GRAPH_FILE)
    return GRAPH_FILE


def require_fixed(graph: Graph, target: str) -> None:
    """Refuse a float graph (one line, naming the target)."""
    if graph.precision != "fixed":
        raise SnncError(f"the {target} target needs a fixed-point graph; run quantize first")
