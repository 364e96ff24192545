"""kmsflow_erase through ``dag.test()``: typed confirmation, erasure report, later proof of DESTROYED."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import Made, make_file
from lifecycle_dagkit import failure_messages, load_dag, run_dag

from kmsflow.audit import read_events
from kmsflow.envelope import decrypt
from kmsflow.kms import resources
from kmsflow.kms.errors import KeyVersionUnavailableError
from kmsflow.spec import apply, load_spec, plan

DAG_ID = "kmsflow_erase"
DAY = 86400.0


@pytest.fixture(scope="module")
def erase_dag(airflow_db: str) -> Any:
    return load_dag(DAG_ID)


@dataclass
class Tenants:
    emulator: Any
    client: Any
    spec_path: Path
    acme: str
    shared: str
    acme_made: list[Made]
    other_made: list[Made]
    audit: Path

    def states(self) -> list[str]:
        return [
            str(resources.VersionState(v.state).name) for v in resources.list_versions(self.client, self.acme)
        ]


@pytest.fixture
def tenants(fresh_emulator: Any, tmp_path: Path, ring_id: str, set_conn: Callable[..., str]) -> Tenants:
    """``tenant-acme`` (tenant acme, two versions) and ``shared``; one acme envelope sits under the
    shared root, where only a scan of every root finds it."""
    acme_root, shared_root = tmp_path / "acme", tmp_path / "shared"
    acme_root.mkdir()
    shared_root.mkdir()
    audit = tmp_path / "audit" / "audit.jsonl"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        f"""
project: kmsflow-test
location: us-central1
audit_log: {json.dumps(str(audit))}
key_rings:
  - id: {ring_id}
    keys:
      - id: tenant-acme
        tenant: acme
        rotation_period: null
        destroy_scheduled_duration: 24h
        roots: [{json.dumps(str(acme_root))}]
      - id: shared
        rotation_period: null
        roots: [{json.dumps(str(shared_root))}]
"""
    )
    spec = load_spec(spec_path)
    client = fresh_emulator.client()
    apply(plan(spec, client), client)
    acme, shared = (name for name, _ in spec.crypto_keys())
    src = tmp_path / "src"
    acme_made = [make_file(client, acme, src, str(acme_root / "a1.enc"), 100, seed=1)]
    resources.rotate(client, acme)
    acme_made.append(make_file(client, acme, src, str(acme_root / "a2.enc"), 100, seed=2))
    acme_made.append(make_file(client, acme, src, str(shared_root / "stray-acme.enc"), 100, seed=3))
    other_made = [
        make_file(client, shared, src, str(shared_root / f"s{i}.enc"), 150, seed=10 + i) for i in range(2)
    ]
    set_conn(endpoint=fresh_emulator.endpoint)
    return Tenants(fresh_emulator, client, spec_path, acme, shared, acme_made, other_made, audit)


def test_dag_is_manual_only(erase_dag: Any) -> None:
    assert erase_dag.schedule is None
    assert erase_dag.params["prove_only"] is False and erase_dag.params["confirm_tenant"] == ""
    assert sorted(t.task_id for t in erase_dag.tasks) == ["erase", "prove"]


def test_erase_then_prove_destroyed_after_the_grace_period(
    erase_dag: Any, tenants: Tenants, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = str(tenants.spec_path)
    common = {"spec_path": spec, "key": "tenant-acme", "reason": "DSR-2026-117"}

    for wrong in ({"confirm_tenant": "acme"}, {"confirm_tenant": "acme", "confirm_key": "shared"}):
        refused = run_dag(erase_dag, **common, **wrong)
        assert refused.states == {"erase": "failed", "prove": "skipped"}
    not_tenant = run_dag(
        erase_dag, spec_path=spec, key="shared", confirm_tenant="acme", confirm_key="shared", reason="x"
    )
    assert not_tenant.states["erase"] == "failed"
    messages = failure_messages(capfd)
    assert len(messages) == 3
    assert (
        "confirm by typing the tenant name 'acme'" in messages[0] and "(wrong or missing: key)" in messages[0]
    )
    assert "does not mark it with 'tenant:'" in messages[2]
    assert tenants.states() == ["ENABLED", "ENABLED"]
    assert not tenants.audit.exists() or not read_events(str(tenants.audit), action="erase")

    erased = run_dag(erase_dag, **common, confirm_tenant="acme", confirm_key="tenant-acme")
    assert erased.states == {"erase": "success", "prove": "skipped"}
    report = erased.values["erase"]
    assert report["ok"] is True and report["all_destroyed"] is False and report["scan_complete"] is True
    assert [v["state_after"] for v in report["versions"]] == ["DESTROY_SCHEDULED", "DESTROY_SCHEDULED"]
    assert [v["primary"] for v in report["versions"]] == [False, True]  # the primary too
    assert report["summary"] == {
        "tenant_envelopes": 3,
        "tenant_undecryptable": 3,
        "other_envelopes": 2,
        "other_still_decrypt": 2,
        "problems": 0,
    }
    assert all("DESTROY_SCHEDULED" in c["detail"] for c in report["tenant_envelopes"])
    assert report["records_compared"] is True
    assert tenants.states() == ["DESTROY_SCHEDULED", "DESTROY_SCHEDULED"]
    events = read_events(str(tenants.audit), action="erase")
    assert len(events) == 2 and all(e.run == f"{DAG_ID}/{erased.run_id}" for e in events)
    assert all("DSR-2026-117" in e.reason for e in events)

    # Independently of the report: tenant data no longer decrypts, the other tenant's still does.
    for i, made in enumerate(tenants.acme_made):
        with pytest.raises(KeyVersionUnavailableError):
            decrypt(tenants.client, made.dst, str(tmp_path / f"acme-{i}"))
    for i, made in enumerate(tenants.other_made):
        decrypt(tenants.client, made.dst, str(tmp_path / f"other-{i}"))
        assert (tmp_path / f"other-{i}").read_bytes() == made.src.read_bytes()

    failure_messages(capfd)
    early = run_dag(erase_dag, spec_path=spec, key="tenant-acme", prove_only=True)
    assert early.states == {"erase": "skipped", "prove": "failed"}
    [message] = failure_messages(capfd)
    assert "not DESTROYED yet" in message and "run the proof again" in message
    early_report = early.xcoms[("prove", "report")]
    assert early_report["ok"] is True and early_report["all_destroyed"] is False

    tenants.emulator.admin.advance(1.05 * DAY)
    proved = run_dag(erase_dag, spec_path=spec, key="tenant-acme", prove_only=True)
    assert proved.states == {"erase": "skipped", "prove": "success"}
    final = proved.values["prove"]
    assert final["all_destroyed"] is True and final["ok"] is True
    assert [v["state_after"] for v in final["versions"]] == ["DESTROYED", "DESTROYED"]
    [event] = read_events(str(tenants.audit), action="erase-proved")
    assert event.resource == tenants.acme and event.evidence["tenant_envelopes_undecryptable"] == 3
