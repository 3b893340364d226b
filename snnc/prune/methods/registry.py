"""The registry of pruning methods: the only list of them (see :mod:`snnc.registry`).

Built-ins are listed channel methods first, in the order the CLI has always listed them."""

from snnc.registry import Registry

METHODS = Registry(
    "pruning method",
    {
        "sca": "snnc.prune.methods.sca:METHOD",
        "criticality": "snnc.prune.methods.criticality:METHOD",
        "l1": "snnc.prune.methods.l1:METHOD",
        "random": "snnc.prune.methods.random:METHOD",
        "relief": "snnc.prune.methods.relief:METHOD",
        "switcher": "snnc.prune.methods.switcher:METHOD",
    },
)
