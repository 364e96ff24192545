"""run_shred over real envelopes on a private emulator whose clock the tests move: the full path
disable -> soak -> destroy -> DESTROYED, and each guard refusing with a clear message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import make_file

from kmsflow.audit import AuditLog, AuditLogError, read_events
from kmsflow.envelope import Envelope
from kmsflow.kms import resources
from kmsflow.kms.errors import ConfirmationError, KmsGuardError
from kmsflow.lifecycle import rewrap
from kmsflow.lifecycle.retirement.shred import run_shred

from .shredkit import DAY, World, emu_now, make_world, provision, state, version_n, write_spec


@pytest.fixture
def world(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> World:
    return make_world(fresh_emulator, tmp_path, ring_id)


def shred(world: World, **kwargs: Any) -> Any:
    kwargs.setdefault("dry_run", False)
    return run_shred(world.client, world.spec, now=world.now(), audit=world.audit, run_id="test", **kwargs)


def rotated_and_rewrapped(world: World) -> tuple[str, str]:
    """v1 wraps one envelope, then v2 becomes primary and the envelope moves to it."""
    world.encrypt("a.enc")
    resources.rotate(world.client, world.key)
    report = rewrap(world.client, [str(world.root)])
    assert report.rewrapped == 1 and report.ok
    return version_n(world.key, 1), version_n(world.key, 2)


def test_full_path_disable_soak_destroy_confirmed(world: World, tmp_path: Path) -> None:
    v1, v2 = rotated_and_rewrapped(world)

    first = shred(world)
    assert first.decision(v1).outcome == "kept"  # type: ignore[union-attr]
    assert "stays enabled 2d" in first.decision(v1).reason  # type: ignore[union-attr]
    assert first.decision(v2).outcome == "kept" and "primary" in first.decision(v2).reason  # type: ignore[union-attr]
    assert state(world.client, v1) == "ENABLED"

    world.advance_days(2.05)
    disabled = shred(world)
    d1 = disabled.decision(v1)
    assert d1 is not None and d1.outcome == "disabled", disabled.render()
    assert d1.references == 0 and d1.scan_id == disabled.keys[0].scan.scan_id  # type: ignore[union-attr]
    assert state(world.client, v1) == "DISABLED"
    [event] = read_events(world.audit.location, action="disable")
    assert event.resource == v1
    assert event.evidence["scan_id"] == d1.scan_id and event.evidence["references"] == 0
    assert event.evidence["envelopes_scanned"] == 1
    assert event.actor == "serviceAccount:shred@test.iam" and event.run == "test"

    world.advance_days(1)
    soaking = shred(world)
    assert soaking.decision(v1).outcome == "kept" and "soaking" in soaking.decision(v1).reason  # type: ignore[union-attr]

    world.advance_days(2.05)
    destroyed = shred(world)
    d1 = destroyed.decision(v1)
    assert d1 is not None and d1.outcome == "destroy_scheduled", destroyed.render()
    assert state(world.client, v1) == "DESTROY_SCHEDULED"
    [destroy] = read_events(world.audit.location, action="destroy")
    assert destroy.evidence["scan_id"] != event.evidence["scan_id"]  # re-proved by a new scan
    assert destroy.evidence["disable_scan_id"] == event.evidence["scan_id"]
    assert destroy.evidence["destroy_time"]

    grace = shred(world)
    assert grace.decision(v1).outcome == "kept" and "restore possible" in grace.decision(v1).reason  # type: ignore[union-attr]
    assert not read_events(world.audit.location, action="destroyed-confirmed")

    world.advance_days(1.05)
    confirmed = shred(world)
    assert confirmed.decision(v1).outcome == "destroyed_confirmed", confirmed.render()  # type: ignore[union-attr]
    assert state(world.client, v1) == "DESTROYED"
    assert len(read_events(world.audit.location, action="destroyed-confirmed")) == 1
    again = shred(world)
    assert again.decision(v1).outcome == "kept"  # type: ignore[union-attr]
    assert len(read_events(world.audit.location, action="destroyed-confirmed")) == 1

    # The primary was never touched, and the (re-wrapped) artifact still decrypts fully.
    assert state(world.client, v2) == "ENABLED"
    Envelope.open(world.made[0].dst).decrypt(world.client, str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == world.made[0].src.read_bytes()
    json.dumps(confirmed.to_dict())


def test_referenced_version_is_never_disabled_until_rewrapped(world: World) -> None:
    world.encrypt("a.enc")
    world.encrypt("b.enc")
    resources.rotate(world.client, world.key)
    v1 = version_n(world.key, 1)
    world.advance_days(40)
    for _ in range(2):
        report = shred(world)
        d1 = report.decision(v1)
        assert d1 is not None and d1.outcome == "refused"
        assert d1.references == 2 and "referenced by 2 envelope(s)" in d1.reason and "rewrap" in d1.reason
        assert state(world.client, v1) == "ENABLED"
    assert read_events(world.audit.location) == []

    rewrap(world.client, [str(world.root)])
    report = shred(world)
    assert report.decision(v1).outcome == "disabled"  # type: ignore[union-attr]


def test_a_disabled_version_that_gained_a_reference_is_not_destroyed(world: World) -> None:
    v1, _ = rotated_and_rewrapped(world)
    world.advance_days(2.05)
    assert shred(world).decision(v1).outcome == "disabled"  # type: ignore[union-attr]
    # Someone restores an old record (a backup) still wrapped by v1 while it soaks.
    resources.enable_version(world.client, v1)
    make_file(world.client, v1, world.src, str(world.root / "restored.enc"), 100, seed=9)
    resources.disable_version(world.client, v1)
    world.advance_days(3.05)
    report = shred(world)
    d1 = report.decision(v1)
    assert d1 is not None and d1.outcome == "refused" and d1.references == 1
    assert state(world.client, v1) == "DISABLED"


def test_incomplete_scan_blocks_the_key(world: World) -> None:
    rotated_and_rewrapped(world)
    (world.root / "junk.bin.kmsflow.json").write_bytes(b"not a record {")
    world.advance_days(30)
    report = shred(world)
    v1 = version_n(world.key, 1)
    d1 = report.decision(v1)
    assert d1 is not None and d1.outcome == "refused" and "incomplete scan" in d1.reason
    blocked = report.keys[0].blocked or ""
    assert "incomplete" in blocked and "invalid_record" in blocked and "junk.bin.kmsflow.json" in blocked
    assert report.keys[0].scan is not None and not report.keys[0].scan.complete
    assert state(world.client, v1) == "ENABLED"
    assert read_events(world.audit.location) == []
    assert "BLOCKED" in report.render()


def test_unreachable_root_blocks_the_key(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> None:
    world = make_world(fresh_emulator, tmp_path, ring_id, extra={"roots": [str(tmp_path / "missing")]})
    resources.rotate(world.client, world.key)
    world.advance_days(30)
    report = shred(world)
    assert report.decision(version_n(world.key, 1)).outcome == "refused"  # type: ignore[union-attr]
    assert "unreachable_root" in (report.keys[0].blocked or "")
    assert state(world.client, version_n(world.key, 1)) == "ENABLED"


def test_key_without_roots_is_never_shredded(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> None:
    world = make_world(fresh_emulator, tmp_path, ring_id, extra={"roots": []})
    resources.rotate(world.client, world.key)
    world.advance_days(30)
    report = shred(world)
    assert report.decision(version_n(world.key, 1)).outcome == "refused"  # type: ignore[union-attr]
    assert "no roots" in (report.keys[0].blocked or "")
    assert state(world.client, version_n(world.key, 1)) == "ENABLED"


def test_the_primary_is_never_a_candidate(world: World) -> None:
    world.encrypt("a.enc")
    world.advance_days(100)
    report = shred(world)
    [only] = report.decisions()
    assert only.outcome == "kept" and "primary" in only.reason
    assert state(world.client, only.version) == "ENABLED"
    with pytest.raises(KmsGuardError, match="primary version"):
        resources.destroy_version(world.client, only.version)


def test_dry_run_changes_nothing(world: World) -> None:
    v1, _ = rotated_and_rewrapped(world)
    world.advance_days(2.05)
    dry = shred(world, dry_run=True)
    assert dry.decision(v1).outcome == "would_disable" and dry.dry_run  # type: ignore[union-attr]
    assert "DRY RUN" in dry.render()
    assert state(world.client, v1) == "ENABLED"
    assert not Path(world.audit.location).exists()

    shred(world)
    world.advance_days(3.05)
    dry = shred(world, dry_run=True)
    assert dry.decision(v1).outcome == "would_destroy"  # type: ignore[union-attr]
    assert state(world.client, v1) == "DISABLED"
    assert [e.action for e in read_events(world.audit.location)] == ["disable"]


def test_manual_run_must_be_confirmed_by_typing_the_key(world: World) -> None:
    v1, _ = rotated_and_rewrapped(world)
    world.advance_days(2.05)
    for confirm in (None, "", "other", world.key + "x"):
        with pytest.raises(ConfirmationError, match="not confirmed: type the name of each key") as err:
            shred(world, keys=["data"], confirm=confirm)
        assert "'data'" in str(err.value) and "Nothing was changed" in str(err.value)
    assert state(world.client, v1) == "ENABLED"
    assert read_events(world.audit.location) == []

    # A manual dry run needs no confirmation; a confirmed one acts (id or full name).
    assert shred(world, keys=["data"], dry_run=True).decision(v1).outcome == "would_disable"  # type: ignore[union-attr]
    report = shred(world, keys=[world.key], confirm=world.key)
    assert report.manual and report.decision(v1).outcome == "disabled"  # type: ignore[union-attr]


def test_unknown_key_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="not in the spec"):
        shred(world, keys=["nope"], confirm="nope")


def test_disabled_by_hand_starts_the_soak_now(world: World) -> None:
    v1, _ = rotated_and_rewrapped(world)
    resources.disable_version(world.client, v1)  # outside kmsflow: no audit record
    world.advance_days(10)
    first = shred(world)
    assert first.decision(v1).outcome == "soak_started"  # type: ignore[union-attr]
    [event] = read_events(world.audit.location)
    assert event.action == "soak-start" and event.resource == v1
    world.advance_days(2)
    assert shred(world).decision(v1).outcome == "kept"  # type: ignore[union-attr]
    world.advance_days(1.05)
    assert shred(world).decision(v1).outcome == "destroy_scheduled"  # type: ignore[union-attr]


def test_versions_newer_than_a_moved_back_primary_are_kept(world: World) -> None:
    resources.rotate(world.client, world.key)
    resources.set_primary(world.client, world.key, 1)
    world.advance_days(40)
    report = shred(world)
    v1, v2 = version_n(world.key, 1), version_n(world.key, 2)
    assert report.decision(v1).outcome == "kept" and "primary" in report.decision(v1).reason  # type: ignore[union-attr]
    assert report.decision(v2).outcome == "kept" and "no retirement date" in report.decision(v2).reason  # type: ignore[union-attr]
    assert state(world.client, v2) == "ENABLED"


def test_an_unreadable_audit_log_stops_the_run_before_any_change(world: World) -> None:
    v1, _ = rotated_and_rewrapped(world)
    world.advance_days(2.05)
    world.audit.append("note", world.key, reason="first")
    with open(world.audit.location, "ab") as f:
        f.write(b"{damaged\n")
    world.audit.append("note", world.key, reason="second")
    with pytest.raises(AuditLogError, match="unreadable audit event"):
        shred(world)
    assert state(world.client, v1) == "ENABLED"


def test_an_envelope_filed_under_another_keys_root_still_blocks(
    fresh_emulator: Any, tmp_path: Path, ring_id: str
) -> None:
    # Invariant 2 says *every* configured root: key "data" wraps an envelope that sits under the
    # root of key "other"; scanning only data's own root would miss it and destroy live data.
    own, elsewhere = tmp_path / "root", tmp_path / "other-root"
    own.mkdir()
    elsewhere.mkdir()
    retention = {"retired_version_enabled_for": "2d", "soak_period": "3d"}
    spec = write_spec(
        tmp_path,
        ring_id,
        {
            "data": {"roots": [str(own)], "retention": retention},
            "other": {"roots": [str(elsewhere)], "retention": retention},
        },
    )
    client = fresh_emulator.client()
    provision(client, spec)
    key = next(name for name, _ in spec.crypto_keys())
    make_file(client, key, tmp_path / "src", str(elsewhere / "misfiled.enc"), 100)
    resources.rotate(client, key)
    fresh_emulator.admin.advance(30 * DAY)
    audit = AuditLog(str(tmp_path / "audit.jsonl"), actor="serviceAccount:shred@test.iam")
    report = run_shred(client, spec, now=emu_now(fresh_emulator), audit=audit, run_id="test", dry_run=False)
    decision = report.decision(version_n(key, 1))
    assert decision is not None and decision.outcome == "refused", report.render()
    assert decision.references == 1 and "misfiled.enc" in decision.reason
    assert state(client, version_n(key, 1)) == "ENABLED"
