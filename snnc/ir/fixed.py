"""Loihi's fixed-point CUBA-LIF number formats, defined once (docs/loihi2.md §2.1, §2.3, §4).

These are properties of the neuron model the IR's ``"fixed"`` precision means, so every layer that
computes or emits fixed-point values (the simulator, the targets, the quantizer) reads them here.
"""

from __future__ import annotations

DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096: a decay of d keeps (4096 - d) / 4096 of the state per step
STATE_BITS = 24  # u, v and conv currents are signed 24-bit
STATE_WRAP = 1 << (STATE_BITS - 1)  # 2**23: u wraps, conv sums wrap, v saturates at +-(2**23 - 1)
V_MAX = STATE_WRAP - 1
ACTIVATION_SHIFT = 6  # a_in, bias and vth are used << 6 in the neuron update
