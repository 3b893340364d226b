"""The registry of pruning methods: the only list of them (see :mod:`snnc.registry`)."""

from snnc.registry import Registry

METHODS = Registry(
    "pruning method",
    {
        "sca": "snnc.prune.methods.sca:METHOD",
        "criticality": "snnc.prune.methods.criticality:METHOD",
        "relief": "snnc.prune.methods.relief:METHOD",
        "switcher": "snnc.prune.methods.switcher:METHOD",
        "l1": "snnc.prune.methods.l1:METHOD",
        "random": "snnc.prune.methods.random:METHOD",
    },
)
