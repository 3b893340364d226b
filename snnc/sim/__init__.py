"""The IR's interpreter: a cycle-level, bit-exact model of Lava's fixed-point CUBA-LIF and
sigma-delta networks.

:mod:`.interpreter` is the numpy reference (and the path for float graphs), one ``visit_<kind>``
per node kind; :mod:`.kernels` the compiled numba path (:mod:`._numba_kernels`) it hands
fixed-point graphs to; :mod:`.sdnn` the sigma-delta neurons and graded synapses (graded graphs run
in the interpreter, their neurons in a compiled loop); :mod:`.common` what they share (operand
checks and caches, the records that cross between them). ``compile`` calls it (calibration in
``remove_dead``) without touching any target.
"""

from snnc.sim.common import graded_output, has_graded, node_cores
from snnc.sim.interpreter import LayerTrace, SimResult, check_input, lif_fixed, simulate, trace_layers

__all__ = [
    "LayerTrace",
    "SimResult",
    "check_input",
    "graded_output",
    "has_graded",
    "lif_fixed",
    "node_cores",
    "simulate",
    "trace_layers",
]
