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
from pagekit import AIRFLOW_ENV, XSS_NAME, Lifecycle, write_spec

os.environ.update(AIRFLOW_ENV)


@pytest.fixture
def lifecycle(tmp_path: Path, emulator: Any, ring_id: str, monkeypatch: pytest.MonkeyPatch) -> Lifecycle:
    """Two envelopes under v1 (one named like markup), a rotation (v2 primary), one envelope under
    v2, and the snapshot of a complete scan written by the real snapshot writer."""
    from inventory.builders import make_file, make_key

    from kmsflow.airflow.hooks.kms import KmsHook
    from kmsflow.airflow.tasks.snapshot import snapshot_writer
    from kmsflow.audit import AuditLog
    from kmsflow.inventory import scan
    from kmsflow.lifecycle import rotate
    from kmsflow.spec import load_spec

    client = emulator.client()
    key = make_key(client, ring_id)
    root = tmp_path / "root"
    audit_log = tmp_path / "audit" / "audit.jsonl"
    src = tmp_path / "src"
    made = [
        make_file(client, key, src, str(root / "model.bin.enc"), size=3000, seed=1).dst,
        make_file(client, key, src, str(root / f"{XSS_NAME}.enc"), size=1000, seed=2).dst,
    ]
    run = "kmsflow_rotate_rewrap/manual__2026-12-07T10:00:00+00:00"
    rotate(
        client, key, audit=AuditLog(str(audit_log), actor="user:owner@example.com"), reason="test", run_id=run
    )
    made.append(make_file(client, key, src, str(root / "new.bin.enc"), size=500, seed=3).dst)
    spec = write_spec(tmp_path / "spec.yaml", key, root, audit_log)
    monkeypatch.setenv("KMSFLOW_SPEC", str(spec))
    monkeypatch.setenv(
        "AIRFLOW_CONN_KMSFLOW_DEFAULT",
        f'{{"conn_type": "kmsflow", "extra": {{"endpoint": "{emulator.endpoint}"}}}}',
    )
    hook = KmsHook()
    try:
        snapshot_writer(load_spec(spec), hook, run)(scan([str(root)]))
    finally:
        hook.close()
    return Lifecycle(spec, key, root, audit_log, made, run)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata DB, migrated, with the kmsflow DAGs serialized (Airflow's REST API triggers
    only DAGs it knows)."""
    env = {**os.environ, **AIRFLOW_ENV}
    for args in (["db", "migrate"], ["dags", "reserialize"]):
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=600
        )
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
