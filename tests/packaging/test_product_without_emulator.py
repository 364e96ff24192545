"""The product never imports the emulators: they are the ``kmsflow-emulator`` dev/test distribution.

``kmsflow_emulator`` (KMS + IAM emulator) and ``gcp_storage_emulator`` (under
``kmsflow_emulator.gcs``) are installed in the dev environment, so "not imported" is checked for
real: a fresh interpreter imports every module of the core (``kmsflow`` minus ``kmsflow.airflow``),
then every module of the provider (``kmsflow.airflow``), and neither emulator may be in
``sys.modules`` after either step. The emulator, for its part, does not import kmsflow.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "provider" / "src" / "kmsflow"
EMULATORS = ("kmsflow_emulator", "gcp_storage_emulator")

IMPORT_ALL = """
import importlib, json, pkgutil, sys

def modules(name):
    package = importlib.import_module(name)
    found = [name]
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if not info.name.endswith(".__main__"):  # runs a program when imported
            found.append(info.name)
    return found

def loaded(prefixes):
    return sorted(m for m in sys.modules if m.split(".")[0] in prefixes)

emulators = {emulators!r}
report = {{}}
core = [m for m in modules("kmsflow") if m != "kmsflow.airflow" and not m.startswith("kmsflow.airflow.")]
for name in core:
    importlib.import_module(name)
report["core"] = core
report["after_core"] = loaded(emulators)
provider = modules("kmsflow.airflow")
for name in provider:
    importlib.import_module(name)
report["provider"] = provider
report["after_provider"] = loaded(emulators)
print(json.dumps(report))
"""

IMPORT_EMULATOR = """
import importlib, json, pkgutil, sys
import kmsflow_emulator
names = [info.name for info in pkgutil.walk_packages(kmsflow_emulator.__path__, "kmsflow_emulator.")]
for name in names:
    importlib.import_module(name)
kmsflow = sorted(m for m in sys.modules if m.split(".")[0] == "kmsflow")
print(json.dumps({"modules": names, "kmsflow": kmsflow}))
"""


def _run(script: str) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_EMULATOR")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_no_product_module_imports_an_emulator() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in EMULATORS]
    assert offenders == []
    assert not (PACKAGE / "emulator").exists()


def test_importing_every_core_and_provider_module_loads_no_emulator() -> None:
    report = _run(IMPORT_ALL.format(emulators=EMULATORS))
    assert "kmsflow.kms.clock" in report["core"]
    assert "kmsflow.airflow.tasks.common" in report["provider"]  # where kms_now reads the emulator clock
    assert report["after_core"] == []
    assert report["after_provider"] == []


def test_the_emulator_does_not_import_kmsflow() -> None:
    report = _run(IMPORT_EMULATOR)
    assert {"kmsflow_emulator.server", "kmsflow_emulator.cli", "kmsflow_emulator.gcs"} <= set(
        report["modules"]
    )
    assert report["kmsflow"] == []
