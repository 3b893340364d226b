"""Loihi 2's numbers, each defined once: weight, threshold and bias ranges, and one chip's limits.

The neuron's number formats shared with the simulator (12-bit decays, 24-bit states, the ``<< 6``
of inputs, bias and threshold) are :mod:`snnc.ir.fixed`'s; this module adds what only the Loihi 2
target needs. The sources are cited as ``docs/loihi2.md §x``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_BITS, STATE_BITS, STATE_WRAP
from snnc.targets.base import FixedPointSpec

# -- weights (docs/loihi2.md §1.5, §2.2) -------------------------------------------------------------
WEIGHT_MANTISSA_BITS = 8  # Lava's weight register: an 8-bit magnitude (num_weight_bits <= 8)
WEIGHT_BITS = WEIGHT_MANTISSA_BITS + 1  # with the sign: what the report and map_cores count
W_MIN = -(1 << WEIGHT_MANTISSA_BITS)  # -256
W_MAX = (1 << WEIGHT_MANTISSA_BITS) - 2  # 254: [-256, 254] passes netx and Lava's clip exactly

# -- neuron (docs/loihi2.md §4) ----------------------------------------------------------------------
VTH_MAX = 2**17 - 1  # 17-bit threshold mantissa
BIAS_MIN, BIAS_MAX = -(2**12), 2**12 - 1  # 13-bit signed bias mantissa
BIAS_EXP = ACTIVATION_SHIFT  # netx/Lava bias_exp: the bias mantissa is used << 6
U_LIMIT = STATE_WRAP >> ACTIVATION_SHIFT  # 2**17: |u_float| * S * 64 < 2**23 <=> |u_float| * S < 2**17

# -- neurocores (ours: u and v, 24-bit each, kept in a 32-bit word; see map_cores) ------------------
NEURON_STATE_BYTES = 8


@dataclass(frozen=True)
class CoreLimits:
    """Resource limits of the target (defaults: one Loihi 2 chip, docs/loihi2.md §4).

    128 neurocores (Lava ``NUM_VIRTUAL_CORES_L2``); 8192 neurons per core (WikiChip, secondary);
    128 KiB SRAM per core shared by synapses and neuron state (Intel's launch material,
    secondary); 4096 input axons per core (Loihi 1's ``MAX_IN_AXONS`` as a conservative stand-in:
    Loihi 2's figure is not public).
    """

    cores: int = 128
    neurons_per_core: int = 8192
    sram_bytes_per_core: int = 128 * 1024
    in_axons_per_core: int = 4096

    def to_dict(self) -> dict:
        return asdict(self)


#: One Loihi 2 chip.
LIMITS = CoreLimits()

#: Loihi 2's fixed point, as :func:`snnc.targets.loihi2.quantize.quantize` produces it.
SPEC = FixedPointSpec(
    weight_bits=WEIGHT_BITS,
    weight_min=W_MIN,
    weight_max=W_MAX,
    threshold_max=VTH_MAX,
    bias_min=BIAS_MIN,
    bias_max=BIAS_MAX,
    decay_bits=DECAY_BITS,
    state_bits=STATE_BITS,
    activation_shift=ACTIVATION_SHIFT,
)
