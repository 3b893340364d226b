"""Pruning methods, one object per module (``METHOD``), listed in :mod:`.registry`; the protocol they
follow is :class:`snnc.prune.methods.base.PruningMethod`. Importing this package loads no method."""
