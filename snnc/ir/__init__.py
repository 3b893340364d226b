"""The intermediate representation: node dataclasses, :class:`Graph`, and its file format.

``snnc.ir`` is the bottom of the package: it imports nothing of snnc but ``errors`` and ``fileio``.
"""

from snnc.ir.graph import (
    NODE_KINDS,
    Add,
    BatchNorm,
    Conv,
    CubaLIF,
    Dense,
    Flatten,
    Graph,
    GraphError,
    Input,
    Node,
    Output,
    Pool,
    SigmaDelta,
    is_graded,
    replace,
)
from snnc.ir.visitor import NodeVisitor

__all__ = [
    "NODE_KINDS",
    "Add",
    "BatchNorm",
    "Conv",
    "CubaLIF",
    "Dense",
    "Flatten",
    "Graph",
    "GraphError",
    "Input",
    "Node",
    "NodeVisitor",
    "Output",
    "Pool",
    "SigmaDelta",
    "is_graded",
    "replace",
]
