"""snnc: prune-then-compile toolchain for spiking neural networks on Loihi-style hardware.

The Python API (:mod:`snnc.api`) is here: ``snnc.train``, ``snnc.prune``, ``snnc.compile``,
``snnc.simulate``, ``snnc.evaluate``, loaded on first use so that ``import snnc`` stays cheap (no
torch).

Three of those names are also snnc's own modules: ``snnc.train`` (the training loop),
``snnc.prune`` and ``snnc.compile`` (packages). Importing a submodule makes it an attribute of its
parent, so once one of them is imported, ``snnc.<name>`` is that module; this package makes each of
them callable as it is attached (its call is the API function of the same name), so
``snnc.prune(model, ...)`` works whether or not ``snnc.prune`` was imported, and
``snnc.prune.methods`` ... still name the modules.
"""

import sys as _sys
from types import ModuleType as _ModuleType

__version__ = "0.1.0"

_API = ("train", "prune", "compile", "simulate", "evaluate", "Result", "Simulation")
__all__ = ["__version__", *_API]


class _CallableModule(_ModuleType):
    """A module of snnc whose name is also an API function: calling it calls :mod:`snnc.api`'s."""

    def __call__(self, *args, **kwargs):
        from snnc import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(_ModuleType):
    """``snnc`` itself: its submodules ``train``, ``prune``, ``compile`` become callable as the
    import system attaches them."""

    def __setattr__(self, name: str, value) -> None:
        if name in ("train", "prune", "compile") and type(value) is _ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name: str):
    if name in _API:
        from snnc import api

        return getattr(api, name)
    raise AttributeError(f"module 'snnc' has no attribute {name!r}")


_sys.modules[__name__].__class__ = _Package
for _name in ("train", "prune", "compile"):  # already imported (e.g. before this module reloaded)
    if f"{__name__}.{_name}" in _sys.modules:
        setattr(_sys.modules[__name__], _name, _sys.modules[f"{__name__}.{_name}"])
