"""The lazy package ``__init__``s (``kmsflow.lazy``) keep every public name importable from its
package, without importing what a command does not use."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import pytest

LAZY_PACKAGES = (
    "kmsflow.audit",
    "kmsflow.envelope",
    "kmsflow.inventory",
    "kmsflow.kms",
    "kmsflow.lifecycle",
    "kmsflow.lifecycle.reencryption",
)


def _type_checking_imports(package: str) -> dict[str, str]:
    """name -> module of the ``if TYPE_CHECKING:`` import block of ``package``'s ``__init__``."""
    path = Path(importlib.import_module(package).__file__ or "")
    blocks = [
        node
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, package
    return {
        alias.asname or alias.name: str(node.module)
        for node in blocks[0].body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_imports_from_its_module(package: str) -> None:
    pkg = importlib.import_module(package)
    table = _type_checking_imports(package)
    assert sorted(table) == sorted(pkg.__all__)
    assert pkg.__dict__["__kmsflow_lazy__"] == table  # what runs is what type checkers see
    for name, module in table.items():
        value = getattr(pkg, name)
        assert value is getattr(importlib.import_module(module), name), name
        assert not isinstance(value, types.ModuleType), name
    assert set(pkg.__all__) <= set(dir(pkg))
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(pkg.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


def test_public_names_win_over_submodules_of_the_same_spelling() -> None:
    """``kmsflow.lifecycle.rewrap`` is the function, however its module was imported first."""
    code = (
        "import importlib, types\n"
        "for module, attr in (('kmsflow.lifecycle.rewrap', 'rewrap'),"
        " ('kmsflow.envelope.encrypt', 'encrypt')):\n"
        "    importlib.import_module(module)\n"
        "    package = importlib.import_module(module.rpartition('.')[0])\n"
        "    assert callable(getattr(package, attr)), module\n"
        "    assert not isinstance(getattr(package, attr), types.ModuleType), module\n"
        "from kmsflow.lifecycle import rewrap\n"
        "from kmsflow.envelope import encrypt\n"
        "assert rewrap.__module__ == 'kmsflow.lifecycle.rewrap'\n"
        "assert encrypt.__module__ == 'kmsflow.envelope.encrypt'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "ok"


def test_importing_the_packages_loads_none_of_their_modules() -> None:
    code = (
        "import sys\n"
        f"for name in {LAZY_PACKAGES!r}: __import__(name)\n"
        "heavy = ('grpc', 'google.cloud.', 'google.api_core', 'tink', 'fsspec', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
