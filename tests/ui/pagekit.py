"""What the Key Lifecycle page tests share (imported by name: pytest puts this directory on the path):
the isolated Airflow environment (``conftest.py`` applies it at import), the markup-like file name,
the lifecycle world the page describes."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_HOME = tempfile.mkdtemp(prefix="kmsflow-ui-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
AIRFLOW_ENV = {
    "AIRFLOW_HOME": _HOME,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
}
"""Where this directory's Airflow lives: applied only if Airflow is not imported yet (it fixes its
home and database at first import; in a whole-suite run tests/airflow's conftest may have done so)."""
AUTH_ENV = {
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
    "AIRFLOW__API_AUTH__JWT_SECRET": "kmsflow-ui-tests-only-" + "0" * 64,
}
"""Read when the API app and its auth manager are made: always applied."""

XSS_NAME = "<img src=x onerror=alert(1)>"
"""A file name from storage that must be shown as text, never run."""


@dataclass
class Lifecycle:
    """The world the page describes: a spec, its key (v1 retired but still referenced, v2 primary),
    envelopes under one root, an audit log and the snapshot a lifecycle run wrote beside it."""

    spec: Path
    key: str
    root: Path
    audit_log: Path
    envelopes: list[str]
    run: str


def write_spec(path: Path, key: str, root: Path, audit_log: Path) -> Path:
    """A one-key spec naming ``key`` (``projects/P/locations/L/keyRings/R/cryptoKeys/K``)."""
    parts = key.split("/")
    path.write_text(
        f"project: {parts[1]}\nlocation: {parts[3]}\naudit_log: {audit_log}\nkey_rings:\n"
        f"  - id: {parts[5]}\n    keys:\n      - id: {parts[7]}\n        roots:\n          - {root}\n"
        "        retention:\n          retired_version_enabled_for: 30d\n          soak_period: 7d\n"
    )
    return path


RUN = "kmsflow_rotate_rewrap/manual__2026-12-07T10:00:00+00:00"


def connection(endpoint: str) -> str:
    """``AIRFLOW_CONN_KMSFLOW_DEFAULT`` for the emulator at ``endpoint``."""
    return json.dumps({"conn_type": "kmsflow", "extra": {"endpoint": endpoint}})


def make_lifecycle(tmp_path: Path, client: Any, ring_id: str) -> Lifecycle:
    """Two envelopes under v1 (one named like markup), a rotation (v2 primary, audited), one envelope
    under v2: v1 is retired but still referenced -- its envelopes are its blockers."""
    from inventory.builders import make_file, make_key

    from kmsflow.audit import AuditLog
    from kmsflow.lifecycle import rotate

    key = make_key(client, ring_id)
    root = tmp_path / "root"
    audit_log = tmp_path / "audit" / "audit.jsonl"
    src = tmp_path / "src"
    made = [
        make_file(client, key, src, str(root / "model.bin.enc"), size=3000, seed=1).dst,
        make_file(client, key, src, str(root / f"{XSS_NAME}.enc"), size=1000, seed=2).dst,
    ]
    audit = AuditLog(str(audit_log), actor="user:owner@example.com")
    rotate(client, key, audit=audit, reason="test", run_id=RUN)
    made.append(make_file(client, key, src, str(root / "new.bin.enc"), size=500, seed=3).dst)
    spec = write_spec(tmp_path / "spec.yaml", key, root, audit_log)
    return Lifecycle(spec, key, root, audit_log, made, RUN)
