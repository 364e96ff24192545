"""Fixtures for the Key Lifecycle page: an isolated Airflow (SimpleAuthManager with an ``admin`` and
a ``viewer`` user, a fixed JWT secret), a key spec on the emulator with real envelopes, and the
real Airflow API app (plugins included) behind FastAPI's TestClient.

Airflow reads its configuration when first imported, so the environment is set at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pagekit import AIRFLOW_ENV, AUTH_ENV, Lifecycle, connection, make_lifecycle

if "airflow" not in sys.modules:
    os.environ.update(AIRFLOW_ENV)
os.environ.update(AUTH_ENV)


@pytest.fixture
def lifecycle(tmp_path: Path, emulator: Any, ring_id: str, monkeypatch: pytest.MonkeyPatch) -> Lifecycle:
    """:func:`pagekit.make_lifecycle`, the page's environment pointing at it, and the snapshot of a
    complete scan written by the real snapshot writer (as a rotate_rewrap run would)."""
    from kmsflow.airflow.hooks.kms import KmsHook
    from kmsflow.airflow.tasks.snapshot import snapshot_writer
    from kmsflow.inventory import scan
    from kmsflow.spec import load_spec

    world = make_lifecycle(tmp_path, emulator.client(), ring_id)
    monkeypatch.setenv("KMSFLOW_SPEC", str(world.spec))
    monkeypatch.setenv("AIRFLOW_CONN_KMSFLOW_DEFAULT", connection(emulator.endpoint))
    hook = KmsHook()
    try:
        snapshot_writer(load_spec(world.spec), hook, world.run)(scan([str(world.root)]))
    finally:
        hook.close()
    return world


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata DB, migrated, with the kmsflow DAGs serialized (Airflow's REST API triggers
    only DAGs it knows)."""
    for args in (["db", "migrate"], ["dags", "reserialize"]):  # the DB Airflow in this process uses
        command = [sys.executable, "-m", "airflow", *args]
        result = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def api_app(airflow_db: None) -> Any:
    """Airflow's own API server app (core API, auth, plugins: the kmsflow page under /kmsflow)."""
    from airflow.api_fastapi.app import create_app

    return create_app(apps="core")


@pytest.fixture(scope="session")
def tokens(api_app: Any) -> dict[str, str]:
    """A JWT per user role, signed as Airflow's login would sign it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = get_auth_manager()
    return {
        role: manager.generate_jwt(SimpleAuthManagerUser(username=role, role=role))
        for role in ("admin", "viewer")
    }


@pytest.fixture
def client(api_app: Any) -> Iterator[Any]:
    """TestClient on the whole API app; the page's trigger goes to the same app in process."""
    import httpx
    from fastapi.testclient import TestClient

    from kmsflow.airflow.plugin import KmsflowPlugin

    page_app = KmsflowPlugin.fastapi_apps[0]["app"]
    page_app.state.api_transport = httpx.ASGITransport(app=api_app)
    with TestClient(api_app, base_url="http://testserver") as made:
        yield made
    del page_app.state.api_transport
