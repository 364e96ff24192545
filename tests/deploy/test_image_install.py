"""Install the provider into a clean venv exactly as the Dockerfile does, then import it and parse the
DAGs there: what the image's Airflow services would do first.

The Dockerfile's `pip install` arguments are read from the Dockerfile (its COPY destinations mapped
back to the repository) and given to `uv pip install` (same requirement and constraint semantics,
from uv's cache instead of a fresh download). No Docker engine, so the base image's own packages are
not there: this checks the pins resolve together and nothing else is needed to run the DAG files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dockerfile import copies, pip_installs
from sources import copy_source

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"  # scripts/bootstrap.sh installs it into the venv

CHECK = """
import importlib.util, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.providers_manager import ProvidersManager
import kmsflow.airflow
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "emulator": importlib.util.find_spec("kmsflow_emulator") is not None,
    "errors": {path: str(error) for path, error in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "provider": "airflow-provider-kmsflow" in ProvidersManager().providers,
}))
"""


def build_context(copied: dict[str, str], into: Path) -> Path:
    """The Dockerfile's COPY sources, copied out of the repository as ``docker build`` would: the
    build backend writes ``build/`` and ``*.egg-info`` next to what it builds, never into the tree."""
    for source in copied.values():
        copy_source(ROOT / source, into / source)
    return into


def repository_path(argument: str, copied: dict[str, str], context: Path) -> str:
    """``/opt/kmsflow/provider[airflow]`` -> ``<context>/provider[airflow]`` (via the COPY lines)."""
    for destination, source in copied.items():
        if argument == destination or argument.startswith(destination + "["):
            return str(context / source) + argument[len(destination) :]
    return argument


def test_provider_installs_as_in_the_dockerfile_and_the_dags_parse(tmp_path: Path) -> None:
    assert UV.exists(), f"{UV} missing: run scripts/bootstrap.sh"
    copied = copies(ROOT / "Dockerfile")
    context = build_context(copied, tmp_path / "context")
    (install,) = pip_installs(ROOT / "Dockerfile")
    venv = tmp_path / "venv"
    # The registry settings (index, proxy, certificates) stay; no PYTHON* variable, VIRTUAL_ENV or
    # AIRFLOW_* leaks into the build backend or the clean venv.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "AIRFLOW", "KMSFLOW", "VIRTUAL_ENV"))
    }
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        command = [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
        for constraint in install.constraints:
            command += ["--constraint", repository_path(constraint, copied, context)]
        command += [repository_path(requirement, copied, context) for requirement in install.requirements]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420, check=False)
        assert result.returncode == 0, result.stderr[-3000:]

        home = tmp_path / "airflow-home"
        home.mkdir()
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-c", CHECK, str(ROOT / "dags")],
            env={**env, "AIRFLOW_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report == {
            "emulator": False,
            "errors": {},
            "dags": [
                "kmsflow_erase",
                "kmsflow_ml_pipeline",
                "kmsflow_provision",
                "kmsflow_rotate_rewrap",
                "kmsflow_shred",
            ],
            "provider": True,
        }
    finally:
        shutil.rmtree(venv, ignore_errors=True)
