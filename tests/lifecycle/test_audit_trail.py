"""The audit trail of a whole key life (rotate, rewrap, disable, destroy, restore, confirm, erase):
one event per state change, with evidence, and not a byte of key material or plaintext."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kmsflow.audit import read_events, record_rewrap
from kmsflow.cli.audit import audit_command
from kmsflow.envelope.aad import keyset_aad
from kmsflow.kms import crypto
from kmsflow.lifecycle import rewrap
from kmsflow.lifecycle.retirement.erase import erase_tenant
from kmsflow.lifecycle.retirement.restore import restore
from kmsflow.lifecycle.retirement.rotation import rotate
from kmsflow.lifecycle.retirement.shred import run_shred

from .shredkit import World, make_world, version_n


def secrets_of(world: World, seen: set[str]) -> None:
    """Every encoded form of every wrapped key, manifest, unwrapped keyset and plaintext so far."""
    for record in world.root.rglob("*.kmsflow.json"):
        data = json.loads(record.read_bytes())
        wrapped = data["key"]["wrapped_keyset"]
        seen.update({wrapped, data["manifest"]})
        raw = base64.b64decode(wrapped)
        keyset = crypto.decrypt(world.client, world.key, raw, keyset_aad(data["envelope_id"]))
        for blob in (raw, keyset):
            seen.update({base64.b64encode(blob).decode(), blob.hex()})
    for made in world.made:
        plain = made.src.read_bytes()
        seen.update({base64.b64encode(plain).decode(), plain.hex()})


def test_every_action_is_audited_without_secrets(fresh_emulator: Any, tmp_path: Path, ring_id: str) -> None:
    world = make_world(fresh_emulator, tmp_path, ring_id, extra={"tenant": "acme"})
    secrets: set[str] = set()
    world.encrypt("a.enc", 400)
    world.encrypt("b.enc", 64)
    secrets_of(world, secrets)

    def shred() -> Any:
        return run_shred(
            world.client, world.spec, now=world.now(), dry_run=False, audit=world.audit, run_id="dag/shred"
        )

    rotate(world.client, world.key, audit=world.audit, reason="quarterly", run_id="dag/rotate")
    report = rewrap(world.client, [str(world.root)])
    assert record_rewrap(world.audit, report, reason="after rotation", run="dag/rewrap") == 1
    secrets_of(world, secrets)
    v1 = version_n(world.key, 1)
    world.advance_days(2.05)
    shred()
    world.advance_days(3.05)
    shred()
    restore(
        world.client,
        v1,
        enable=False,
        audit=world.audit,
        reason="double-check",
        now=world.now(),
        run_id="dag/restore",
    )
    world.advance_days(3.05)
    shred()
    world.advance_days(1.05)
    shred()
    erase_tenant(
        world.client,
        world.spec,
        "data",
        confirm_tenant="acme",
        confirm_key="data",
        audit=world.audit,
        run_id="dag/erase",
        reason="DSR-7",
        now=world.now(),
    )

    actions = [e.action for e in read_events(world.audit.location)]
    assert actions == [
        "rotate",
        "rewrap-batch",
        "disable",
        "destroy",
        "restore",
        "destroy",
        "destroyed-confirmed",
        "erase",
    ]
    for event in read_events(world.audit.location):
        assert event.time.endswith("Z") and event.actor == "serviceAccount:shred@test.iam"
        assert event.run.startswith("dag/") and event.reason and event.resource.startswith("projects/")
    [batch] = read_events(world.audit.location, action="rewrap-batch")
    assert batch.evidence["versions_before"] == {v1: 2} and batch.evidence["rewrapped_total"] == 2

    text = Path(world.audit.location).read_text()
    assert len(secrets) > 10
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"key material or plaintext in the audit log: {leaked[:1]}"
    assert "[redacted]" not in text  # nothing even needed scrubbing: evidence is names and counts
    shown = audit_command(world.audit.location, json_output=False, resource=world.key)
    assert shown.count("\n    by ") == len(actions)
