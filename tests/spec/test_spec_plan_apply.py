"""plan → apply → verify against the IAM-enforcing emulator: seed, updates, conflicts, IAM drift."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsflow.kms import crypto
from kmsflow.kms import iam as kiam
from kmsflow.kms.errors import ImmutableFieldError, KmsPermissionError
from kmsflow.kms.resources import ensure_crypto_key, get_key, get_key_ring
from kmsflow.spec import (
    ApplyReport,
    Change,
    KeySpec,
    Plan,
    SpecDriftError,
    apply,
    load_spec,
    plan,
    verify,
)

OWNER = "user:owner@example.com"  # the owner tests/conftest.py starts iam_emulator with
SEED = Path(__file__).resolve().parents[2] / "examples" / "specs" / "seed.yaml"
PIPELINE = "serviceAccount:ml-pipeline@kmsflow-demo.iam.gserviceaccount.com"
INFERENCE = "serviceAccount:inference@kmsflow-demo.iam.gserviceaccount.com"
ADMIN = "user:kms-admin@example.com"
EVE = "user:eve@example.com"
ENC, DEC = kiam.PRODUCER_ROLE, kiam.CONSUMER_ROLE


@pytest.fixture
def owner(iam_emulator):  # type: ignore[no-untyped-def]
    return iam_emulator.client(OWNER)


def seed_spec(ring_id: str, **key_overrides: Any) -> KeySpec:
    """The seed example under a fresh key ring id (the emulator is shared), optionally edited."""
    data = yaml.safe_load(SEED.read_text())
    data["key_rings"][0]["id"] = ring_id
    data["key_rings"][0]["keys"][0].update(key_overrides)
    return load_spec(data)


def test_seed_plan_apply_verify(iam_emulator, owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    spec = seed_spec(ring_id)
    ring = spec.key_ring_name(ring_id)
    key = spec.key_name(ring_id, "ai-crypto-key")
    tenant = spec.key_name(ring_id, "tenant-acme-key")

    first = plan(spec, owner)
    assert not first.empty
    assert first.changes[:2] == [
        Change("create", ring),
        Change("grant", ring, kiam.ADMIN_ROLE, None, ADMIN),
    ]
    assert first.changes[2] == Change(
        "create",
        key,
        None,
        None,
        {
            "purpose": "ENCRYPT_DECRYPT",
            "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
            "protection_level": "SOFTWARE",
            "rotation_period": "90d",
            "destroy_scheduled_duration": "30d",
            "labels": {"app": "ai", "managed-by": "kmsflow"},
        },
    )
    assert first.changes[3:5] == [
        Change("grant", key, DEC, None, INFERENCE),
        Change("grant", key, ENC, None, PIPELINE),
    ]
    assert first.summary() == {"create": 3, "update": 0, "grant": 5, "revoke": 0, "conflict": 0}
    text = first.render()
    assert f"+ create key ring {ring}\n" in text
    settings = "ENCRYPT_DECRYPT, GOOGLE_SYMMETRIC_ENCRYPTION, SOFTWARE, rotation every 90d"
    assert f"+ create crypto key {key} ({settings})" in text
    assert f"+ iam {key} roles/cloudkms.cryptoKeyEncrypter: {PIPELINE}" in text
    assert text.endswith("Plan: 3 to create, 0 to update, 5 IAM grants, 0 IAM revokes, 0 conflicts.")
    json.dumps(first.to_dict())  # JSON-safe for XCom

    seen: list[Change] = []
    report = apply(first, owner, on_change=seen.append)
    assert isinstance(report, ApplyReport) and report.changed
    assert report.applied == seen
    assert sorted(c.render() for c in report.applied) == sorted(c.render() for c in first.changes)

    assert plan(spec, owner).empty
    assert verify(spec, owner).render().startswith("No changes")
    assert apply(plan(spec, owner), owner).applied == []  # re-applying writes nothing

    live = get_key(owner, key)
    assert live.rotation_period == timedelta(days=90)
    assert dict(live.labels) == {"app": "ai", "managed-by": "kmsflow"}
    assert get_key(owner, tenant).destroy_scheduled_duration == timedelta(days=1)
    # The IAM took effect with least privilege: the pipeline wraps, inference unwraps, not vice versa.
    wrapped = crypto.encrypt(iam_emulator.client(PIPELINE), key, b"data key")
    assert crypto.decrypt(iam_emulator.client(INFERENCE), key, wrapped.ciphertext) == b"data key"
    with pytest.raises(KmsPermissionError):
        crypto.decrypt(iam_emulator.client(PIPELINE), key, wrapped.ciphertext)
    with pytest.raises(KmsPermissionError):  # the acme key has its own consumer
        crypto.decrypt(iam_emulator.client(INFERENCE), tenant, crypto.encrypt(owner, tenant, b"x").ciphertext)
    assert get_key_ring(iam_emulator.client(ADMIN), ring).name == ring  # admin via the ring


def test_mutable_field_changes_are_planned_and_applied(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    apply(plan(seed_spec(ring_id, rotation_period="30d"), owner), owner)
    spec = seed_spec(ring_id, labels={"app": "ai", "tier": "gold"})
    key = spec.key_name(ring_id, "ai-crypto-key")
    changed = plan(spec, owner)
    assert changed.changes == [
        Change("update", key, "rotation_period", "30d", "90d"),
        Change(
            "update", key, "labels", {"app": "ai", "managed-by": "kmsflow"}, {"app": "ai", "tier": "gold"}
        ),
    ]
    assert f"~ update {key} rotation_period: 30d -> 90d" in changed.render()
    report = apply(changed, owner)
    assert [(c.action, c.field) for c in report.applied] == [
        ("update", "rotation_period"),
        ("update", "labels"),
    ]
    assert get_key(owner, key).rotation_period == timedelta(days=90)
    assert plan(spec, owner).empty


def test_immutable_conflicts_are_reported_and_block_apply(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    apply(plan(seed_spec(ring_id), owner), owner)
    spec = seed_spec(ring_id, protection_level="HSM", destroy_scheduled_duration="7d", rotation_period="60d")
    key = spec.key_name(ring_id, "ai-crypto-key")
    conflicted = plan(spec, owner)  # no crash: conflicts are part of the plan
    assert conflicted.conflicts == [
        Change("conflict", key, "protection_level", "SOFTWARE", "HSM"),
        Change("conflict", key, "destroy_scheduled_duration", "30d", "7d"),
    ]
    assert Change("update", key, "rotation_period", "90d", "60d") in conflicted.changes
    text = conflicted.render()
    assert f"! conflict {key} protection_level: SOFTWARE -> HSM (immutable: use a new key id instead)" in text
    assert "Conflicts block apply" in text
    before = get_key(owner, key)
    with pytest.raises(ImmutableFieldError) as info:
        apply(conflicted, owner)
    assert info.value.field == "protection_level"
    assert [c.field for c in info.value.conflicts] == ["protection_level", "destroy_scheduled_duration"]
    assert get_key(owner, key) == before  # nothing written, not even the allowed rotation update
    with pytest.raises(SpecDriftError) as drift:
        verify(spec, owner)
    assert drift.value.plan.conflicts == conflicted.conflicts


def test_iam_changed_behind_our_back_is_planned_exactly_and_fixed(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    spec = seed_spec(ring_id)
    apply(plan(spec, owner), owner)
    ring = spec.key_ring_name(ring_id)
    key = spec.key_name(ring_id, "ai-crypto-key")

    kiam.grant(owner, key, DEC, [EVE])  # someone adds a consumer by hand
    kiam.revoke(owner, key, ENC, [PIPELINE])  # and removes the producer
    kiam.grant(owner, ring, kiam.ADMIN_ROLE, [EVE])  # and makes themselves admin
    kiam.grant(owner, key, kiam.VIEWER_ROLE, [EVE])  # a role the spec does not manage

    drifted = plan(spec, owner)
    assert drifted.changes == [
        Change("revoke", ring, kiam.ADMIN_ROLE, EVE, None),
        Change("revoke", key, DEC, EVE, None),
        Change("grant", key, ENC, None, PIPELINE),
    ]
    assert f"- iam {key} roles/cloudkms.cryptoKeyDecrypter: {EVE}" in drifted.render()
    assert f"+ iam {key} roles/cloudkms.cryptoKeyEncrypter: {PIPELINE}" in drifted.render()

    report = apply(drifted, owner)
    assert report.applied == drifted.changes
    assert plan(spec, owner).empty
    members = kiam.role_members(kiam.get_policy(owner, key))
    assert members == {ENC: {PIPELINE}, DEC: {INFERENCE}, kiam.VIEWER_ROLE: {EVE}}  # viewer untouched


def test_emptying_producers_revokes_them(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    apply(plan(seed_spec(ring_id), owner), owner)
    spec = seed_spec(ring_id, producers=[])
    key = spec.key_name(ring_id, "ai-crypto-key")
    the_plan = plan(spec, owner)
    assert the_plan.changes == [Change("revoke", key, ENC, PIPELINE, None)]
    apply(the_plan, owner)
    assert ENC not in kiam.role_members(kiam.get_policy(owner, key))
    assert plan(spec, owner).empty


def test_plan_survives_a_json_round_trip_and_applies(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    """The Airflow path: plan in one task, push to_dict() through XCom, apply in another."""
    spec = seed_spec(ring_id)
    original = plan(spec, owner)
    rebuilt = Plan.from_dict(json.loads(json.dumps(original.to_dict())))
    assert rebuilt.changes == original.changes
    assert rebuilt.spec == spec
    assert rebuilt.to_dict()["summary"] == original.summary()
    apply(rebuilt, owner)
    assert verify(spec, owner).empty


def test_keys_the_spec_does_not_manage_fields_of_are_left_alone(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    """labels/destroy duration omitted → not managed; KMS-advanced next_rotation_time is no drift."""
    spec = load_spec(
        {
            "project": "kmsflow-test",
            "location": "us-central1",
            "key_rings": [{"id": ring_id, "keys": [{"id": "k", "rotation_period": "30d"}]}],
        }
    )
    ring = spec.key_ring_name(ring_id)
    first = plan(spec, owner)
    assert [c.action for c in first.changes] == ["create", "create"]
    assert first.changes[1].after == {
        "purpose": "ENCRYPT_DECRYPT",
        "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
        "protection_level": "SOFTWARE",
        "rotation_period": "30d",
    }
    apply(first, owner)
    ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=30), labels={"owner": "ml"})
    assert plan(spec, owner).empty


def test_existing_key_without_rotation_gets_a_schedule(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    spec = seed_spec(ring_id)
    apply(plan(seed_spec(ring_id, rotation_period=None), owner), owner)
    key = spec.key_name(ring_id, "ai-crypto-key")
    the_plan = plan(spec, owner)
    assert [(c.action, c.resource, c.field, c.before) for c in the_plan.changes] == [
        ("update", key, "rotation_period", None),
        ("update", key, "next_rotation_time", None),
    ]
    assert str(the_plan.changes[1].after).endswith("Z")
    apply(the_plan, owner)
    assert plan(spec, owner).empty


def test_callers_without_permission_get_typed_errors(iam_emulator, owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    spec = seed_spec(ring_id)
    stranger = iam_emulator.client("user:stranger@example.com")
    with pytest.raises(KmsPermissionError):
        plan(spec, stranger)
    the_plan = plan(spec, owner)
    with pytest.raises(KmsPermissionError) as info:
        apply(the_plan, stranger)
    assert any("applied before the failure: nothing" in note for note in info.value.__notes__)
    # A ring admin (not the owner) may not create key rings but can manage the rest.
    apply(plan(seed_spec(ring_id), owner), owner)
    admin = iam_emulator.client(ADMIN)
    edited = seed_spec(ring_id, rotation_period="45d", consumers=[EVE])
    assert [(c.action, c.field) for c in plan(edited, admin).changes] == [
        ("update", "rotation_period"),
        ("grant", DEC),
        ("revoke", DEC),
    ]
    apply(plan(edited, admin), admin)
    assert verify(edited, admin).empty


def test_verify_accepts_a_plan_and_raises_with_the_remaining_changes(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    spec = seed_spec(ring_id)
    pending = plan(spec, owner)
    with pytest.raises(SpecDriftError, match=r"\+ create key ring") as info:
        verify(pending, owner)
    assert info.value.plan.changes == pending.changes
