"""``kmsflow audit`` output (audit_command) and the provisioning recorder for spec.apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kmsflow.audit import AuditLog, provision_recorder, read_events
from kmsflow.cli.audit import audit_command
from kmsflow.spec import apply, load_spec, plan

KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


def test_text_and_json_views(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path, actor="user:ops@example.com", run="cli")
    log.append("disable", KEY + "/cryptoKeyVersions/1", reason="retired", evidence={"scan_id": "f" * 32})
    log.append("rotate", KEY, reason="manual rotation")
    log.append("rotate", KEY + "2", reason="other key")

    text = audit_command(path, json_output=False, resource=KEY)
    assert "disable" in text and "rotate" in text and "by user:ops@example.com in run cli" in text
    assert "scan_id=" + "f" * 32 in text and "other key" not in text and "2 event(s)" in text

    rows = json.loads(audit_command(path, json_output=True, resource=None))
    assert [r["action"] for r in rows] == ["disable", "rotate", "rotate"]
    assert audit_command(str(tmp_path / "none.jsonl"), json_output=False, resource=None) == "no audit events"


def test_text_view_escapes_what_the_log_holds(tmp_path: Path) -> None:
    """Anyone who can append to the log chooses its text: the human view shows it inert."""
    path = str(tmp_path / "audit.jsonl")
    log = AuditLog(path, actor="user:x\x1b[2J", run="cli")
    log.append("rewrap", KEY, reason="ok\n\x1b]0;pwned\x07", evidence={"url": "/d/evil\u202e.enc"})
    text = audit_command(path, json_output=False, resource=None)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "why: ok\\x0a\\x1b]0;pwned\\x07\n" in text and "url=/d/evil\\u202e.enc" in text
    assert "by user:x\\x1b[2J in run cli" in text
    assert json.loads(audit_command(path, json_output=True, resource=None))[0]["actor"] == "user:x\x1b[2J"


def test_provision_recorder_logs_each_applied_change(emulator: Any, tmp_path: Path, ring_id: str) -> None:
    spec = load_spec(
        f"project: kmsflow-test\nlocation: us-central1\naudit_log: {tmp_path / 'audit.jsonl'}\n"
        f"key_rings:\n  - id: {ring_id}\n    keys:\n      - id: data\n        rotation_period: null\n"
    )
    assert spec.audit_log == str(tmp_path / "audit.jsonl")
    log = AuditLog(spec.audit_log, actor="a", run="kmsflow_provision/r1")
    report = apply(plan(spec, emulator.client()), emulator.client(), on_change=provision_recorder(log))
    events = read_events(spec.audit_log)
    assert len(events) == len(report.applied) == 2
    assert {e.action for e in events} == {"provision-create"}
    assert all(e.run == "kmsflow_provision/r1" and "+ create" in e.reason for e in events)
