"""Public names of a kmsflow package, imported on first use (PEP 562).

``kmsflow.envelope``, ``kmsflow.kms``, ``kmsflow.lifecycle``, ``kmsflow.audit`` and
``kmsflow.inventory`` re-export names from their modules, and some of those modules load the Cloud
KMS client and gRPC (about 2 s). A package's ``__init__`` therefore imports its names only for type
checkers (``if TYPE_CHECKING:``) and otherwise calls :func:`lazy_names` with an explicit
module → names table: ``from kmsflow.envelope import inspect`` then imports
``kmsflow.envelope.envelope`` and what it needs, and nothing else, on first access.

Where a public name is spelled like its own module (``kmsflow.envelope.encrypt``, the function,
defined in the module ``kmsflow.envelope.encrypt``), the import system would bind the module over the
name each time the module is imported. The package keeps the public name, as the eager imports did:
its class becomes :class:`_Package`, which does not let a submodule replace a public name.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

_PUBLIC = "__kmsflow_lazy__"  # in the package's namespace: public name -> module defining it


class _Package(types.ModuleType):
    """A package whose public names win over its submodules of the same spelling."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get(_PUBLIC, {}):
            return  # the import system binding submodule `name`: the public name stays
        super().__setattr__(name, value)


def lazy_names(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names are ``modules``
    (module → the names it defines). A name is imported on first access, then cached in the
    package's namespace (later accesses are plain attribute reads)."""
    where = {name: module for module, names in modules.items() for name in names}
    namespace = sys.modules[package]
    namespace.__dict__[_PUBLIC] = where
    if any(module == f"{package}.{name}" for name, module in where.items()):
        namespace.__class__ = _Package

    def load(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace.__dict__[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace.__dict__, *where})

    return load, names
