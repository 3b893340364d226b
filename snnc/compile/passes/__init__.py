"""Compiler passes and the pass manager.

A pass is a pure function ``Graph -> Graph`` (nodes are frozen, so no pass can alter its input)
whose docstring states the invariant it keeps. Passes leave human-readable remarks (a declined
fold, a clipped bias, a lossy removal) in ``graph.meta["notes"]`` through :func:`note`; the manager
logs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from snnc.errors import SnncError
from snnc.ir import Graph

Pass = Callable[[Graph], Graph]


def note(graph: Graph, *lines: str) -> Graph:
    """``graph`` with ``lines`` appended to ``graph.meta["notes"]`` (a tuple; the input is not
    changed)."""
    if not lines:
        return graph
    return graph.with_meta(notes=tuple(graph.meta.get("notes", ())) + tuple(lines))


def pass_name(p: Pass) -> str:
    """The name a pass is reported under (``functools.partial`` objects show their function's
    name)."""
    fn = getattr(p, "func", p)
    return getattr(fn, "__name__", repr(fn))


def run_passes(graph: Graph, passes: Sequence[Pass], log: Callable[[str], None] | None = None) -> Graph:
    """Run ``passes`` in order, verifying the graph after each one.

    ``log(line)`` receives one line per pass and every new note the pass left. A pass that raises,
    or whose result fails :meth:`Graph.verify`, is re-raised as :class:`SnncError` naming the pass
    (an :class:`SnncError` of the pass keeps its own message, prefixed with the pass name).
    """
    graph.verify()
    for p in passes:
        name = pass_name(p)
        before = len(graph.meta.get("notes", ()))
        try:
            out = p(graph)
            if not isinstance(out, Graph):
                raise SnncError(f"returned {type(out).__name__}, not a Graph")
            out.verify()
        except SnncError as e:
            raise SnncError(f"pass {name}: {e}", exit_code=e.exit_code) from e
        except Exception as e:  # a bug in a pass: still name the pass
            raise SnncError(f"pass {name} failed: {type(e).__name__}: {e}") from e
        if log is not None:
            params = sum(r["params"] for r in out.summary())
            log(f"{name}: {len(out.nodes)} nodes, {params} weights, precision {out.precision}")
            for line in out.meta.get("notes", ())[before:]:
                log(f"  {name}: {line}")
        graph = out
    return graph
