"""The pass manager: order, verification after each pass, failures named by pass."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from snnc import ir
from snnc.compile.passes import note, run_passes
from snnc.compile.passes.remove_dead import remove_dead
from snnc.errors import SnncError


def _graph():
    w = np.ones((3, 2))
    nodes = [
        ir.Input("in", shape=(2,)),
        ir.Dense("d", weight=w, neuron=ir.CubaLIF(1.0, 2048, 1024)),
        ir.Output("o"),
    ]
    return ir.Graph.from_list(nodes, {"precision": "float"})


def test_runs_in_order_and_logs_notes():
    seen = []

    def first(g):
        seen.append("first")
        return note(g, "hello from first")

    def second(g):
        seen.append("second")
        return g

    lines = []
    run_passes(_graph(), [first, second], lines.append)
    assert seen == ["first", "second"]
    assert lines[0].startswith("first:") and "hello from first" in lines[1]
    assert lines[2].startswith("second:")


def test_failure_names_the_pass():
    def broken(g):
        d = g.nodes["d"]  # a wrong-shaped weight: verify() after the pass must catch it
        return g.replace(d=ir.replace(d, weight=np.ones((3, 5))))

    with pytest.raises(SnncError, match=r"pass broken: .*d\.input"):
        run_passes(_graph(), [broken])

    def crashes(g):
        raise ZeroDivisionError("boom")

    with pytest.raises(SnncError, match="pass crashes failed: ZeroDivisionError: boom"):
        run_passes(_graph(), [crashes])


def test_partial_pass_is_named_by_its_function():
    calib = np.zeros((1, 2, 4), np.uint8)
    lines = []
    run_passes(_graph(), [functools.partial(remove_dead, calibration=calib)], lines.append)
    assert lines[0].startswith("remove_dead:")
