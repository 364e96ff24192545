"""Invariant 5 for the operators: every landed state change appends one audit event, no-ops none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kmsflow.airflow.operators import (
    CreateCryptoKeyOperator,
    CreateKeyRingOperator,
    DestroyKeyVersionOperator,
    DisableKeyVersionOperator,
    GrantKmsRoleOperator,
    RestoreKeyVersionOperator,
    RotateKeyOperator,
    SetKmsIamOperator,
)
from kmsflow.audit import read_events
from kmsflow.kms.iam import DECRYPTER_ROLE

READER = "serviceAccount:inference@proj.iam.gserviceaccount.com"


def run(op: Any) -> Any:
    return op.execute(context={})


@pytest.fixture
def audit_path(tmp_path: Path, iam_emulator: Any, owner: str, set_conn: Callable[..., str]) -> Path:
    path = tmp_path / "audit.jsonl"
    set_conn(endpoint=iam_emulator.endpoint, principal=owner, audit_log=str(path))
    return path


def test_state_changes_are_audited_once_with_actor_and_reason(
    audit_path: Path, owner: str, location: str, ring_id: str
) -> None:
    ring = f"{location}/keyRings/{ring_id}"
    key = f"{ring}/cryptoKeys/k"
    ops = [
        CreateKeyRingOperator(task_id="ring", location=location, key_ring_id=ring_id),
        CreateCryptoKeyOperator(task_id="key", key_ring=ring, key_id="k", reason="CHG-42 new model key"),
        RotateKeyOperator(task_id="rotate", key_name=key),
        DisableKeyVersionOperator(task_id="disable", version_name=f"{key}/cryptoKeyVersions/1"),
        DestroyKeyVersionOperator(task_id="destroy", version_name=f"{key}/cryptoKeyVersions/1", confirm=True),
        RestoreKeyVersionOperator(task_id="restore", version_name=f"{key}/cryptoKeyVersions/1"),
        GrantKmsRoleOperator(task_id="grant", resource=key, role=DECRYPTER_ROLE, members=[READER]),
        SetKmsIamOperator(task_id="set", resource=key, bindings={DECRYPTER_ROLE: []}),
    ]
    for op in ops:
        run(op)
    events = read_events(str(audit_path))
    assert [e.action for e in events] == [
        "create-key-ring",
        "create-crypto-key",
        "rotate",
        "disable",
        "destroy",
        "restore",
        "iam-grant",
        "iam-set",
    ]
    assert {e.actor for e in events} == {owner}
    assert events[1].reason == "CHG-42 new model key"
    assert events[3].evidence == {"before": "ENABLED", "after": "DISABLED"}
    assert events[0].run == "airflow/ring"

    # Re-running operators whose target state already holds writes nothing and records nothing:
    # ring, key, disable (the version is DISABLED after the restore), restore, set.
    for op in (ops[0], ops[1], ops[3], ops[5], ops[7]):
        run(op)
    assert len(read_events(str(audit_path))) == len(events)


def test_operator_audit_log_overrides_the_connection(
    audit_path: Path, tmp_path: Path, location: str, ring_id: str
) -> None:
    other = tmp_path / "elsewhere.jsonl"
    run(CreateKeyRingOperator(task_id="ring", location=location, key_ring_id=ring_id, audit_log=str(other)))
    assert [e.action for e in read_events(str(other))] == ["create-key-ring"]
    assert not audit_path.exists()
