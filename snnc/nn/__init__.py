"""Spiking network layers with Loihi 2's CUBA-LIF dynamics, and the model zoo."""

from snnc.nn.blocks import Conv, Dense, Flatten, Pool, Residual, VoltageBiasBatchNorm
from snnc.nn.neuron import DECAY_UNITY, NeuronParams, cuba_lif, delay_one_step, spike_fn
from snnc.nn.zoo import ZOO, SpikingNet, build, named_blocks, prunable_blocks

__all__ = [
    "Conv",
    "DECAY_UNITY",
    "Dense",
    "Flatten",
    "NeuronParams",
    "Pool",
    "Residual",
    "SpikingNet",
    "VoltageBiasBatchNorm",
    "ZOO",
    "build",
    "cuba_lif",
    "delay_one_step",
    "named_blocks",
    "prunable_blocks",
    "spike_fn",
]
