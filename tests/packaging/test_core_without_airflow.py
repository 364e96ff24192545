"""The core installs and runs without Airflow: an E2EE consumer needs only the base package.

Two checks: a static one (no core module imports airflow, so the layering holds as code grows),
and a real one (a separate venv with only requirements/core-lock.txt can import the core and
round-trip through the emulator).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from sources import copy_source

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "provider" / "src" / "kmsflow"
CORE = ["kms", "envelope", "inventory", "lifecycle", "audit", "spec", "cli.py", "__init__.py"]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_core_module_imports_airflow() -> None:
    offenders = []
    for entry in CORE:
        target = PACKAGE / entry
        files = [target] if target.is_file() else sorted(target.rglob("*.py"))
        offenders += [str(f.relative_to(ROOT)) for f in files if "airflow" in _imports(f)]
    assert offenders == []


def test_consumer_venv_without_airflow(tmp_path: Path) -> None:
    venv = tmp_path / "consumer"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(uv), "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run([*install, "-r", str(ROOT / "requirements" / "core-lock.txt")], check=True)
    # Built from copies (tests/sources.py: never leave build outputs in the tree).
    provider = copy_source(ROOT / "provider", tmp_path / "src" / "provider")
    subprocess.run([*install, "--no-deps", str(provider)], check=True)
    # The round trip runs against the emulator (a dev/test distribution; its dependencies are core
    # dependencies too, so core-lock.txt has them, but pqcrypto, which only SLH-DSA keys import).
    emulator = copy_source(ROOT / "emulator", tmp_path / "src" / "emulator")
    subprocess.run([*install, "--no-deps", str(emulator)], check=True)
    script = (ROOT / "tests" / "packaging" / "consumer_roundtrip.py").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "KMS_EMULATOR"))}
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("consumer ok")
