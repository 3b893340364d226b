"""A named registry of plugins (targets, pruning methods) whose built-ins load on first use.

Built-ins are named with the module that defines them (``"package.module:ATTRIBUTE"``) and imported
only when asked for, so listing the names (the CLI's help and choices) imports no torch, ONNX or Lava.
Anything else joins with :meth:`Registry.register`: a new chip in its own package, a user's pruning
method, a test's toy plugin.
"""

from __future__ import annotations

import importlib

from snnc.errors import UsageError


class Registry:
    """``names()``, ``get(name)``, ``register(obj)`` (keyed by ``obj.name``) and ``unregister(name)``."""

    def __init__(self, what: str, builtin: dict[str, str]) -> None:
        self.what = what  # "target", "pruning method": used in the error message
        self._builtin = dict(builtin)
        self._loaded: dict[str, object] = {}

    def register(self, obj):
        """Add ``obj`` under ``obj.name`` and return it; a later registration replaces an earlier one."""
        self._loaded[obj.name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove a registered plugin (a built-in comes back on next use)."""
        self._loaded.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every name, built-ins first, without importing anything."""
        return tuple(dict.fromkeys([*self._builtin, *self._loaded]))

    def get(self, name: str):
        """The plugin called ``name``; a one-line :class:`UsageError` listing the choices otherwise."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._builtin:
            raise UsageError(f"unknown {self.what} {name!r}; choose one of {', '.join(self.names())}")
        module, attr = self._builtin[name].split(":")
        obj = getattr(importlib.import_module(module), attr)
        return self._loaded.setdefault(name, obj)
