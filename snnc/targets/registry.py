"""The registry of targets: the only list of them (see :mod:`snnc.registry`)."""

from snnc.registry import Registry

TARGETS = Registry(
    "target",
    {
        "loihi2": "snnc.targets.loihi2:TARGET",
        "sim": "snnc.targets.sim:TARGET",
        "onnx": "snnc.targets.onnx:TARGET",
        "nir": "snnc.targets.nir:TARGET",
    },
)
