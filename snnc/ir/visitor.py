"""Dispatch by node kind: one visitor class per backend instead of ``isinstance`` ladders.

A backend (the simulator, a target's emitter, a pass with per-kind handlers) subclasses
:class:`NodeVisitor` and defines ``visit_<kind>`` for each node kind it handles (``visit_conv``,
``visit_dense``, ``visit_pool``, ``visit_flatten``, ``visit_add``, ``visit_input``, ``visit_output``:
the node classes' ``kind``). A kind without a method reaches :meth:`NodeVisitor.generic_visit`, which
raises naming the backend and the node, so a new node kind fails loudly in every backend that has not
learnt it. The pattern is ``ast.NodeVisitor``'s and ``torch.fx.Interpreter``'s.
"""

from __future__ import annotations

from typing import Any

from snnc.ir.graph import GraphError, Node


class NodeVisitor:
    """``visit(node, *args, **kwargs)`` calls ``self.visit_<node.kind>(node, *args, **kwargs)``."""

    #: What this visitor is called in error messages (defaults to the class name).
    backend: str = ""

    def visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self, f"visit_{node.kind}", None)
        if method is None:
            return self.generic_visit(node, *args, **kwargs)
        return method(node, *args, **kwargs)

    def generic_visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        who = self.backend or type(self).__name__
        raise GraphError(f"{node.name}: {who} does not support node kind {node.kind!r}")
