"""The audit log: append-only JSON lines locally, one object per event on GCS, read back in order."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kmsflow.audit import AuditLog, AuditLogError, read_events, resolve_actor
from kmsflow.kms.client import PRINCIPAL_ENV

VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"


def test_append_and_read_back_locally(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog(str(path), actor="serviceAccount:a@p.iam.gserviceaccount.com", run="dag/run1")
    when = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    first = log.append(
        "disable", VERSION, reason="retired", evidence={"scan_id": "ab" * 16, "references": 0}, time=when
    )
    log.append("destroy", VERSION, reason="soaked", time=when + timedelta(days=7), run="dag/run2")
    log.append("rotate", VERSION.rsplit("/cryptoKeyVersions", 1)[0], reason="manual")

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    row = json.loads(lines[0])
    assert set(row) == {"time", "actor", "run", "action", "resource", "reason", "evidence"}
    assert row["time"] == "2026-11-30T10:00:00.000Z" and first.time == row["time"]
    assert row["actor"] == "serviceAccount:a@p.iam.gserviceaccount.com" and row["run"] == "dag/run1"

    events = read_events(str(path))
    assert [e.action for e in events] == ["disable", "destroy", "rotate"]
    assert [e.action for e in read_events(str(path), resource=VERSION)] == ["disable", "destroy"]
    assert [e.run for e in read_events(str(path), action="destroy")] == ["dag/run2"]
    assert log.last(VERSION, ["disable", "destroy"]).action == "destroy"  # type: ignore[union-attr]
    assert events[0].when == when
    assert read_events(f"file://{path}")[0] == events[0]


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    assert read_events(str(tmp_path / "none.jsonl")) == []


def test_a_torn_last_line_is_ignored_and_fenced(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), actor="a")
    log.append("disable", VERSION, reason="r")
    with open(path, "ab") as f:
        f.write(b'{"time": "2026-')  # crash mid-write
    assert len(log.events()) == 1
    log.append("destroy", VERSION, reason="r")
    assert [e.action for e in log.events()] == ["disable", "destroy"]


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), actor="a")
    log.append("disable", VERSION, reason="r")
    with open(path, "ab") as f:
        f.write(b"garbage\n")
    log.append("destroy", VERSION, reason="r")
    with pytest.raises(AuditLogError, match=r"audit.jsonl:2: unreadable audit event"):
        log.events()


def test_concurrent_appends_keep_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def writer(n: int) -> None:
        log = AuditLog(str(path), actor=f"user:w{n}@example.com")
        for i in range(25):
            log.append("rewrap-batch", VERSION, reason=f"batch {i}", evidence={"i": i, "pad": "x" * 3000})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_events(str(path))) == 200


def test_actor_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    class Creds:
        service_account_email = "sa@proj.iam.gserviceaccount.com"

    monkeypatch.delenv(PRINCIPAL_ENV, raising=False)
    assert resolve_actor() == "unknown"
    assert resolve_actor(credentials=Creds()) == "serviceAccount:sa@proj.iam.gserviceaccount.com"
    monkeypatch.setenv(PRINCIPAL_ENV, "user:ops@example.com")
    assert resolve_actor(credentials=Creds()) == "user:ops@example.com"
    assert resolve_actor("user:explicit@example.com") == "user:explicit@example.com"
    assert AuditLog("/tmp/x.jsonl").actor == "user:ops@example.com"


def test_gcs_one_object_per_event(gcs_bucket: str) -> None:
    from kmsflow.envelope.storage import gcs_filesystem

    location = f"gs://{gcs_bucket}/kmsflow/audit"
    log = AuditLog(location, actor="a", run="r")
    base = datetime(2026, 11, 30, tzinfo=UTC)
    for i, action in enumerate(["disable", "destroy", "destroyed-confirmed"]):
        log.append(action, VERSION, reason="r", evidence={"i": i}, time=base + timedelta(days=i))
    fs = gcs_filesystem()
    fs.invalidate_cache()
    objects = sorted(fs.find(f"{gcs_bucket}/kmsflow/audit"))
    assert len(objects) == 3 and all(o.endswith(".json") for o in objects)
    events = read_events(location)
    assert [e.action for e in events] == ["disable", "destroy", "destroyed-confirmed"]
    assert read_events(location, action="destroy")[0].evidence == {"i": 1}
    assert read_events(f"gs://{gcs_bucket}/elsewhere") == []
