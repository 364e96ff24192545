"""Copies of the repository's source trees for tests that build and install them.

A build backend writes ``build/`` and ``*.egg-info`` next to what it builds. Built in place, the
provider's ``src/airflow_provider_kmsflow.egg-info`` would sit on the editable install's path and
make every later process in the suite see the distribution twice (Airflow then logs its plugin as
"already registered"). So tests build from copies, as ``docker build`` and ``pip install`` from an
sdist do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

BUILD_OUTPUTS = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")


def copy_source(origin: Path, target: Path) -> Path:
    """``origin`` (a directory or a file) copied to ``target`` without build outputs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        shutil.copytree(origin, target, ignore=BUILD_OUTPUTS)
    else:
        shutil.copy2(origin, target)
    return target
