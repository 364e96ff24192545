"""Fixtures for the Airflow suite: an isolated AIRFLOW_HOME, a migrated SQLite DB, kmsflow connections.

Airflow reads its configuration when first imported, so the environment is set here at import time,
before any test module of this directory imports ``airflow``. Only ``AIRFLOW_*`` variables are set
process-wide (nothing else reads them); the KMS emulator contract variables (``KMS_EMULATOR_HOST``,
``KMSFLOW_PRINCIPAL``) are never set globally, so other test directories are unaffected.

Test modules import nothing from a ``conftest`` (every ``conftest.py`` outside a package is imported
as the module ``conftest``); the shared ``tests/conftest.py`` hands itself out as the ``shared``
fixture (and ``owner``, ``location``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

_HOME = tempfile.mkdtemp(prefix="kmsflow-airflow-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
AIRFLOW_ENV = {
    "AIRFLOW_HOME": _HOME,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
}
os.environ.update(AIRFLOW_ENV)

from airflow.sdk.bases.operator import ExecutorSafeguard  # noqa: E402

# Operators' execute() is called directly in most tests; this is the switch Airflow's own tests use.
ExecutorSafeguard.test_mode = True

from envelope.conftest import gcs_bucket, gcs_emulator  # noqa: E402  (the GCS emulator fixtures)

from kmsflow.airflow.hooks.kms import KmsHook  # noqa: E402

CONN_ENV = "AIRFLOW_CONN_KMSFLOW_DEFAULT"

__all__ = ["gcs_bucket", "gcs_emulator"]


@pytest.fixture(autouse=True)
def _no_ambient_kms_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure KMS through connections; stray contract variables must not leak in."""
    monkeypatch.delenv("KMS_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("KMSFLOW_PRINCIPAL", raising=False)
    monkeypatch.delenv(CONN_ENV, raising=False)


def conn_json(**extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for a kmsflow connection with these extras."""
    return json.dumps({"conn_type": "kmsflow", "extra": {k: v for k, v in extra.items() if v is not None}})


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``set_conn(conn_id, **extra)`` defines a kmsflow connection through the environment."""

    def define(conn_id: str = KmsHook.default_conn_name, **extra: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(**extra))
        return conn_id

    return define


@pytest.fixture
def kms_conn(iam_emulator: Any, owner: str, set_conn: Callable[..., str]) -> str:
    """``kmsflow_default`` → the IAM-enforcing emulator, acting as the owner."""
    return set_conn(endpoint=iam_emulator.endpoint, principal=owner)


@pytest.fixture
def hook(kms_conn: str) -> Iterator[KmsHook]:
    made = KmsHook()
    yield made
    made.close()


@pytest.fixture
def ring(hook: KmsHook, location: str, ring_id: str) -> str:
    made, created = hook.ensure_key_ring(location, ring_id)
    assert created
    return str(made.name)


@pytest.fixture
def key(hook: KmsHook, ring: str) -> str:
    made, changes = hook.ensure_crypto_key(
        ring,
        "k",
        purpose="ENCRYPT_DECRYPT",
        algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level="SOFTWARE",
    )
    assert changes == ["created"]
    return str(made.name)


def _airflow_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, **AIRFLOW_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def airflow_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``airflow`` CLI of this venv (``airflow_cli("providers", "list")``), isolated env."""
    return _airflow_cli


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the SQLite metadata DB once per session (needed by ``dag.test()`` only)."""
    result = _airflow_cli("db", "migrate", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return AIRFLOW_ENV["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
