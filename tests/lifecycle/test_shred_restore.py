"""Restore brings a shredded version back within the grace window; after DESTROYED it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmsflow.audit import read_events
from kmsflow.kms import resources
from kmsflow.kms.errors import KeyVersionUnavailableError
from kmsflow.lifecycle import rewrap
from kmsflow.lifecycle.retirement.restore import restore
from kmsflow.lifecycle.retirement.shred import run_shred

from .shredkit import World, make_world, state, unwraps, version_n


@pytest.fixture
def world(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> World:
    return make_world(fresh_emulator, tmp_path, ring_id)


def shred(world: World) -> Any:
    return run_shred(world.client, world.spec, now=world.now(), dry_run=False, audit=world.audit, run_id="t")


def scheduled(world: World) -> str:
    """v1 wraps envelope a; rotate, rewrap, then shred it to DESTROY_SCHEDULED."""
    world.encrypt("a.enc")
    resources.rotate(world.client, world.key)
    rewrap(world.client, [str(world.root)])
    v1 = version_n(world.key, 1)
    world.advance_days(2.05)
    assert shred(world).decision(v1).outcome == "disabled"  # type: ignore[union-attr]
    world.advance_days(3.05)
    assert shred(world).decision(v1).outcome == "destroy_scheduled"  # type: ignore[union-attr]
    return v1


def test_restore_within_the_grace_window(world: World) -> None:
    v1 = scheduled(world)
    world.advance_days(0.5)
    version = restore(world.client, v1, enable=True, audit=world.audit, reason="late reader", now=world.now())
    assert state(world.client, v1) == "ENABLED" and version.name == v1
    [event] = read_events(world.audit.location, action="restore")
    assert (
        event.evidence["state_before"] == "DESTROY_SCHEDULED" and event.evidence["state_after"] == "ENABLED"
    )
    assert event.reason == "late reader"
    # An old ciphertext under v1 decrypts again (a record restored from backup, say).
    world.encrypt("b.enc")  # under the primary; v1 itself wraps nothing any more
    assert all(unwraps(world.client, m.dst) for m in world.made)
    # Past the grace period nothing happens to it: it is ENABLED again, no longer scheduled.
    world.advance_days(1.05)
    assert state(world.client, v1) == "ENABLED"


def test_restore_to_disabled_restarts_the_soak(world: World) -> None:
    v1 = scheduled(world)
    restore(world.client, v1, enable=False, audit=world.audit, reason="investigating", now=world.now())
    assert state(world.client, v1) == "DISABLED"
    world.advance_days(1.05)
    report = shred(world)
    assert report.decision(v1).outcome == "kept" and "(restore)" in report.decision(v1).reason  # type: ignore[union-attr]
    assert state(world.client, v1) == "DISABLED"
    world.advance_days(2)
    assert shred(world).decision(v1).outcome == "destroy_scheduled"  # type: ignore[union-attr]


def test_restore_after_destroyed_fails_clearly(world: World) -> None:
    v1 = scheduled(world)
    world.advance_days(1.05)
    assert state(world.client, v1) == "DESTROYED"
    with pytest.raises(KeyVersionUnavailableError, match=r"DESTROYED .*grace window is over.*gone for good"):
        restore(world.client, v1, enable=True, audit=world.audit, reason="too late")
    assert read_events(world.audit.location, action="restore") == []


def test_restore_needs_a_reason(world: World) -> None:
    v1 = scheduled(world)
    with pytest.raises(ValueError, match="reason"):
        restore(world.client, v1, enable=False, audit=world.audit, reason=" ")
    assert state(world.client, v1) == "DESTROY_SCHEDULED"


def test_restored_and_enabled_version_gets_a_full_retention_again(world: World) -> None:
    v1 = scheduled(world)
    restore(world.client, v1, enable=True, audit=world.audit, reason="needed", now=world.now())
    world.advance_days(1)
    report = shred(world)
    assert report.decision(v1).outcome == "kept" and "stays enabled" in report.decision(v1).reason  # type: ignore[union-attr]
    assert state(world.client, v1) == "ENABLED"
    world.advance_days(1.05)
    assert shred(world).decision(v1).outcome == "disabled"  # type: ignore[union-attr]


def test_shred_confirms_versions_destroyed_by_erasure(
    fresh_emulator: Any, tmp_path: Path, ring_id: str
) -> None:
    from kmsflow.lifecycle.retirement.erase import erase_tenant

    world = make_world(fresh_emulator, tmp_path, ring_id, extra={"tenant": "acme"})
    world.encrypt("a.enc")
    erase_tenant(
        world.client,
        world.spec,
        "data",
        confirm_tenant="acme",
        confirm_key="data",
        audit=world.audit,
        run_id="t",
        reason="DSR",
        now=world.now(),
    )
    v1 = version_n(world.key, 1)
    report = shred(world)
    assert report.decision(v1).outcome == "kept" and "primary" in report.decision(v1).reason  # type: ignore[union-attr]
    assert state(world.client, v1) == "DESTROY_SCHEDULED"
