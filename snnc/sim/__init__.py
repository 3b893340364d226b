"""The IR's interpreter: a cycle-level, bit-exact model of Lava's fixed-point CUBA-LIF networks.

:mod:`.interpreter` is the numpy reference (and the path for float graphs), one ``visit_<kind>``
per node kind; :mod:`.kernels` the compiled numba path (:mod:`._numba_kernels`) it hands
fixed-point graphs to; :mod:`.common` what both use (operand checks and caches, the records that
cross between them). ``compile`` calls it (calibration in ``remove_dead``) without touching any
target.
"""

from snnc.sim.common import node_cores
from snnc.sim.interpreter import LayerTrace, SimResult, check_input, lif_fixed, simulate, trace_layers

__all__ = ["LayerTrace", "SimResult", "check_input", "lif_fixed", "node_cores", "simulate", "trace_layers"]
