"""snnc: prune-then-compile toolchain for spiking neural networks on Loihi-style hardware."""

__version__ = "0.1.0"
