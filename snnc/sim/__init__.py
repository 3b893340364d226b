"""The IR's interpreter: a cycle-level, bit-exact model of Lava's fixed-point CUBA-LIF networks.

:mod:`.interpreter` is the numpy reference (and the path for float graphs); :mod:`.kernels` the
compiled numba path it hands fixed-point graphs to. ``compile`` calls it (calibration in
``remove_dead``) without touching any target.
"""

from snnc.sim.interpreter import SimResult, check_input, lif_fixed, node_cores, simulate

__all__ = ["SimResult", "check_input", "lif_fixed", "node_cores", "simulate"]
