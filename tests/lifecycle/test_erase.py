"""Tenant erasure: typed confirmation, every version (primary included) destroyed, and a report
proving the tenant's envelopes no longer unwrap while every other envelope still does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import Made, make_dataset, make_file, same_tree

from kmsflow.audit import AuditLog, read_events
from kmsflow.envelope import Envelope
from kmsflow.kms import resources
from kmsflow.kms.errors import ConfirmationError, ErasureRefusedError, KeyVersionUnavailableError
from kmsflow.lifecycle.retirement.erase import erase_tenant, prove_erasure
from kmsflow.spec import KeySpec

from .shredkit import emu_now, provision, state, unwraps, version_n, write_spec


@dataclass
class Tenants:
    emulator: Any
    client: Any
    spec: KeySpec
    acme: str
    shared: str
    acme_made: list[Made]
    other_made: list[Made]
    audit: AuditLog


@pytest.fixture
def tenants(emulator: Any, tmp_path: Path, ring_id: str) -> Tenants:
    """On the shared emulator: for tests that never move the clock."""
    return build(emulator, tmp_path, ring_id)


@pytest.fixture
def tenants_fresh(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> Tenants:
    """On a private emulator: for tests that move the clock past the grace period."""
    return build(fresh_emulator, tmp_path, ring_id)


def build(emulator: Any, tmp_path: Path, ring_id: str) -> Tenants:
    acme_root, shared_root = tmp_path / "acme", tmp_path / "shared"
    acme_root.mkdir()
    shared_root.mkdir()
    spec = write_spec(
        tmp_path,
        ring_id,
        {
            "tenant-acme": {"tenant": "acme", "roots": [str(acme_root)]},
            "shared": {"roots": [str(shared_root)]},
        },
    )
    client = emulator.client()
    provision(client, spec)
    acme, shared = (name for name, _ in spec.crypto_keys())
    src = tmp_path / "src"
    acme_made = [make_file(client, acme, src, str(acme_root / "model.bin"), 3000, seed=1)]
    resources.rotate(client, acme)  # two versions: v1 and the primary v2 both wrap tenant data
    acme_made.append(make_dataset(client, acme, src, str(acme_root / "ds"), {"a": 10, "b/c": 20}, seed=2))
    other_made = [
        make_file(client, shared, src, str(shared_root / "x.bin"), 500, seed=3),
        make_dataset(client, shared, src, str(shared_root / "features"), {"p0": 100, "p1": 1}, seed=4),
        # Another key's artifact filed under the tenant's root must survive the erasure.
        make_file(client, shared, src, str(acme_root / "shared-in-acme.bin"), 50, seed=5),
    ]
    audit = AuditLog(str(tmp_path / "audit.jsonl"), actor="user:dpo@example.com")
    return Tenants(emulator, client, spec, acme, shared, acme_made, other_made, audit)


def erase(t: Tenants, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "confirm_tenant": "acme",
        "confirm_key": "tenant-acme",
        "audit": t.audit,
        "run_id": "kmsflow_erase/manual__1",
        "reason": "DSR-42",
        "now": emu_now(t.emulator),
    }
    kwargs.update(overrides)
    return erase_tenant(t.client, t.spec, kwargs.pop("key", "tenant-acme"), **kwargs)


def test_erasure_report_proves_tenant_gone_and_others_intact(tenants_fresh: Tenants, tmp_path: Path) -> None:
    t = tenants_fresh
    report = erase(t)
    assert report.ok, report.render()
    assert report.snapshot_scan_id and report.snapshot_scan_id != report.scan_id
    assert [v.action for v in report.versions] == ["destroy_scheduled", "destroy_scheduled"]
    assert [v.primary for v in report.versions] == [False, True]  # the primary too: erasure only
    assert {state(t.client, version_n(t.acme, n)) for n in (1, 2)} == {"DESTROY_SCHEDULED"}

    assert len(report.tenant_envelopes) == 2
    assert all(c.ok and c.state == "DESTROY_SCHEDULED" for c in report.tenant_envelopes)
    assert all("unwrap refused" in c.detail for c in report.tenant_envelopes)
    assert len(report.other_envelopes) == 3 and report.records_compared
    assert all(c.ok and "record unchanged" in c.detail for c in report.other_envelopes)
    for made in t.acme_made:
        with pytest.raises(KeyVersionUnavailableError, match="DESTROY_SCHEDULED"):
            Envelope.open(made.dst).unlock(t.client)
    for i, made in enumerate(t.other_made):  # full decrypt of every other artifact
        out = tmp_path / f"out{i}"
        Envelope.open(made.dst).decrypt(t.client, str(out))
        assert same_tree(made.src, out)

    events = read_events(t.audit.location, action="erase")
    assert [e.resource for e in events] == [version_n(t.acme, 1), version_n(t.acme, 2)]
    assert events[1].evidence["primary"] is True and events[0].evidence["tenant"] == "acme"
    assert all(e.actor == "user:dpo@example.com" and "DSR-42" in e.reason for e in events)
    assert state(t.client, version_n(t.shared, 1)) == "ENABLED"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["tenant_undecryptable"] == 2 and data["summary"]["other_still_decrypt"] == 3
    assert "PROVED" in report.render()

    # After the grace period: DESTROYED for good, and the final proof is audited.
    t.emulator.admin.advance(86400 * 1.05)
    final = prove_erasure(t.client, t.spec, t.acme, audit=t.audit, now=emu_now(t.emulator))
    assert final.ok and final.all_destroyed, final.render()
    assert all(c.state == "DESTROYED" for c in final.tenant_envelopes)
    assert len(final.other_envelopes) == 3 and all(c.ok for c in final.other_envelopes)
    [proved] = read_events(t.audit.location, action="erase-proved")
    assert proved.resource == t.acme
    assert all(unwraps(t.client, m.dst) for m in t.other_made)


def test_erasure_refuses_a_key_without_tenant(tenants: Tenants) -> None:
    with pytest.raises(ErasureRefusedError, match="does not mark it with 'tenant:'"):
        erase(tenants, key="shared", confirm_key="shared")
    with pytest.raises(ErasureRefusedError, match="not in the spec"):
        erase(tenants, key="nope", confirm_key="nope")
    assert state(tenants.client, version_n(tenants.shared, 1)) == "ENABLED"
    assert read_events(tenants.audit.location) == []


@pytest.mark.parametrize(
    ("confirm_tenant", "confirm_key", "wrong"),
    [
        (None, None, "tenant, key"),
        ("acme", None, "key"),
        ("acme", "shared", "key"),
        ("ACME", "tenant-acme", "tenant"),
        ("tenant-acme", "acme", "tenant, key"),
    ],
)
def test_erasure_requires_typed_tenant_and_key(
    tenants: Tenants, confirm_tenant: str | None, confirm_key: str | None, wrong: str
) -> None:
    with pytest.raises(ConfirmationError, match=f"wrong or missing: {wrong}\\)") as err:
        erase(tenants, confirm_tenant=confirm_tenant, confirm_key=confirm_key)
    assert "'acme'" in str(err.value) and "'tenant-acme'" in str(err.value)
    assert {state(tenants.client, version_n(tenants.acme, n)) for n in (1, 2)} == {"ENABLED"}
    assert read_events(tenants.audit.location) == []


def test_erasure_accepts_the_full_key_name(tenants: Tenants) -> None:
    report = erase(tenants, key=tenants.acme, confirm_key=tenants.acme)
    assert report.ok
