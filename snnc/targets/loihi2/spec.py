"""Loihi 2's numbers, each defined once: weight, threshold and bias ranges, and one chip's limits.

The neuron's number formats shared with the simulator (12-bit decays, 24-bit states, the ``<< 6``
of inputs, bias and threshold) are :mod:`snnc.ir.fixed`'s; this module adds what only the Loihi 2
target needs. The sources are cited as ``docs/loihi2.md §x``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from snnc.ir.fixed import ACTIVATION_SHIFT, DECAY_BITS, STATE_BITS, STATE_WRAP
from snnc.targets.base import FixedPointSpec

# -- weights (docs/loihi2.md §1.5, §2.2) -------------------------------------------------------------
# A synapse's weight field: Lava's max_num_weight_bits, the sign included in mixed mode. What a
# synapse holds is what ``truncate_weights(clip_weights(w, mode, 8), mode, 8)`` leaves unchanged
# (lava/utils/weightutils.py): per sign mode (``determine_sign_mode``: all >= 0 excitatory, else
# all <= 0 inhibitory, else mixed) the ranges below.
WEIGHT_BITS = 8  # bits per synapse, as the report and map_cores count them
WEIGHT_MANTISSA_BITS = WEIGHT_BITS  # Lava's max_num_weight_bits (netx's and the Dense model's 8)
W_MIN = -(1 << WEIGHT_BITS)  # -256: mixed mode, even values only (one bit truncated)
W_MAX = (1 << WEIGHT_BITS) - 2  # 254
W_EXC_MAX = (1 << WEIGHT_BITS) - 1  # 255: excitatory mode, any integer in [0, 255]
W_INH_MIN = -W_EXC_MAX  # -255: inhibitory mode, any integer in [-255, 0]


def weight_sign_mode(w: np.ndarray) -> str:
    """Lava's ``determine_sign_mode`` of weights: ``"excitatory"`` (all >= 0), ``"inhibitory"``
    (all <= 0) or ``"mixed"``."""
    w = np.asarray(w)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    return "inhibitory" if w.max() <= 0 else "mixed"


def lava_weights(
    w: np.ndarray, num_weight_bits: int = WEIGHT_MANTISSA_BITS, mode: str | None = None
) -> np.ndarray:
    """What Lava's synapse keeps of integer weights ``w``: ``truncate_weights(clip_weights(w, mode,
    8), mode, num_weight_bits)`` (``lava/utils/weightutils.py``; the Dense and Sparse models' first
    step, docs/loihi2.md §1.5, §2.2), ``mode`` Lava's ``determine_sign_mode`` of ``w`` unless given."""
    w = np.asarray(w).astype(np.int64)
    mode = mode or weight_sign_mode(w)
    mixed, inh = int(mode == "mixed"), mode == "inhibitory"
    ws = -w if inh else w.copy()
    ws = np.clip(ws, -(2**WEIGHT_MANTISSA_BITS) * mixed, 2**WEIGHT_MANTISSA_BITS - 1)
    k = WEIGHT_MANTISSA_BITS - num_weight_bits + mixed
    ws = (ws >> k) << k if k >= 0 else np.zeros_like(ws)
    return -ws if inh else ws


def weight_field_problem(w: np.ndarray) -> str | None:
    """Why integer weights ``w`` do not fit a synapse's 8-bit weight field, or ``None`` if they fit.

    The rule of Lava's clip to 8 bits then truncation at ``num_weight_bits = 8``: excitatory
    [0, 255], inhibitory [-255, 0], mixed even values in [-256, 254] (docs/loihi2.md §1.5).
    """
    w = np.asarray(w)
    mode = weight_sign_mode(w)
    bad = lava_weights(w, mode=mode) != w
    if not bad.any():
        return None
    grid = {
        "excitatory": f"integers in [0, {W_EXC_MAX}]",
        "inhibitory": f"integers in [{W_INH_MIN}, 0]",
        "mixed": f"even integers in [{W_MIN}, {W_MAX}]",
    }[mode]
    return f"{mode} weights must be {grid}; {int(bad.sum())} of {w.size} are not, e.g. {w[bad].flat[0]}"


# -- neuron (docs/loihi2.md §4) ----------------------------------------------------------------------
VTH_MAX = 2**17 - 1  # 17-bit threshold mantissa
BIAS_MIN, BIAS_MAX = -(2**12), 2**12 - 1  # 13-bit signed bias mantissa
BIAS_EXP = ACTIVATION_SHIFT  # netx/Lava bias_exp: the bias mantissa is used << 6
U_LIMIT = STATE_WRAP >> ACTIVATION_SHIFT  # 2**17: |u_float| * S * 64 < 2**23 <=> |u_float| * S < 2**17

# -- neurocores (docs/loihi2.md §4.1: Intel's compiler's per-core registers, read from its printouts) -
#: Neurons (LIF or sigma-delta) on one neurocore: Intel's compiler reports 3584 neurons as 87.52% and
#: 2688 as 65.64% of a core (4095 fits both, 4096 neither), and tiles PilotNet's 5632-neuron conv
#: (22 x 4 x 64) 8 columns wide, not 16, because 16 x 4 x 64 = 4096 would not fit.
NEURONS_PER_CORE = 4095
#: Synapse memory of one neurocore: Intel's compiler's ``SynMem`` register, 12000 words (its
#: violation message ``cost_db.registers['SynMem']=12000``); the word is taken as 64 bits (an
#: estimate: Intel's per-layer conv figures are whole 64-bit rows of packed weights).
SYNAPSE_WORDS_PER_CORE = 12000
SYNAPSE_WORD_BITS = 64
SYNAPSE_WORD_BYTES = SYNAPSE_WORD_BITS // 8
#: Bits a dense or sparse synapse stores beyond its weight (fitted: the smallest whole number with
#: which snnc's dense estimate is at least every dense allocation Intel's compiler printed, §4.1).
SYNAPSE_OVERHEAD_BITS = 13
#: Input axons of one neurocore: Intel's compiler reports 784 input axons as 4.90% of a core.
IN_AXONS_PER_CORE = 16000
#: Neuron groups of one neurocore (Intel's compiler: one group is 12.5%); a contiguous chunk of one
#: layer is at most 5 boxes of (channel, row, column), so it is never the binding limit here.
NEURON_GROUPS_PER_CORE = 8


@dataclass(frozen=True)
class CoreLimits:
    """Resource limits of the target (defaults: one Loihi 2 chip, docs/loihi2.md §4, §4.1).

    128 neurocores (Lava ``NUM_VIRTUAL_CORES_L2``); per core 4095 neurons, 96000 bytes of synapse
    memory (12000 64-bit words) and 16000 input axons: Intel's compiler's registers, read from the
    per-core tables it prints in lava-dl's tutorials (§4.1). ``sram_bytes_per_core`` is the synapse
    memory only (neuron state has its own, sized by ``neurons_per_core``).
    """

    cores: int = 128
    neurons_per_core: int = NEURONS_PER_CORE
    sram_bytes_per_core: int = SYNAPSE_WORDS_PER_CORE * SYNAPSE_WORD_BYTES
    in_axons_per_core: int = IN_AXONS_PER_CORE

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
