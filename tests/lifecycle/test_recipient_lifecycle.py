"""Recipient keys through the whole lifecycle: provisioned from the spec (IAM roles per purpose),
inventory per version, audited rotation (a new version becomes current), rewrap (one
Decapsulate/AsymmetricDecrypt + a local wrap, data untouched), then the old version shredded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envelope.recipients import make_recipient_key, wait_enabled

from kmsflow.audit import AuditLog, read_events
from kmsflow.envelope import Envelope
from kmsflow.envelope.encrypt import encrypt_for
from kmsflow.envelope.record import RecipientWrap
from kmsflow.inventory import scan
from kmsflow.kms import asymmetric, iam
from kmsflow.kms.public_key import fetch_public_key
from kmsflow.lifecycle import rewrap, rotate
from kmsflow.lifecycle.retirement.shred import run_shred
from kmsflow.spec import load_spec

from .shredkit import DAY, emu_now, provision, state, version_n, write_spec

PRODUCER = "serviceAccount:edge@proj.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:inference@proj.iam.gserviceaccount.com"


@pytest.mark.parametrize(
    ("purpose", "algorithm", "consumer_role"),
    [
        ("KEY_ENCAPSULATION", "ML_KEM_768", "roles/cloudkms.decapsulator"),
        ("KEY_ENCAPSULATION", "KEM_XWING", "roles/cloudkms.decapsulator"),
        ("ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_3072_SHA256", "roles/cloudkms.cryptoKeyDecrypter"),
    ],
)
def test_rotate_rewrap_then_shred_the_old_version(
    fresh_emulator: Any, tmp_path: Path, ring_id: str, purpose: str, algorithm: str, consumer_role: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    spec = write_spec(
        tmp_path,
        ring_id,
        {
            "inbox": {
                "purpose": purpose,
                "algorithm": algorithm,
                "roots": [str(root)],
                "producers": [PRODUCER],
                "consumers": [CONSUMER],
                "retention": {"retired_version_enabled_for": "2d", "soak_period": "3d"},
            }
        },
    )
    client = fresh_emulator.client()
    provision(client, spec)
    key = next(name for name, _ in spec.crypto_keys())
    roles = {b.role: set(b.members) for b in iam.get_policy(client, key).bindings}
    assert roles["roles/cloudkms.publicKeyViewer"] == {PRODUCER} == roles["roles/cloudkms.viewer"]
    assert roles[consumer_role] == {CONSUMER}
    assert "roles/cloudkms.cryptoKeyEncrypter" not in roles
    v1, v2 = version_n(key, 1), version_n(key, 2)
    wait_enabled(client, v1)

    # Producers hold only v1's public key.
    src = tmp_path / "src"
    (src / "ds").mkdir(parents=True)
    (src / "ds" / "x").write_bytes(b"x" * 5000)
    (src / "model.bin").write_bytes(b"m" * 70000)
    public = fetch_public_key(client, v1)
    encrypt_for(public, str(src / "ds"), str(root / "ds.enc"))
    encrypt_for(public, str(src / "model.bin"), str(root / "model.enc"))
    assert scan([str(root)]).by_version()[v1].envelopes == 2

    audit = AuditLog(str(tmp_path / "audit.jsonl"), actor="serviceAccount:ops@test.iam")
    made = rotate(client, key, audit=audit, reason="test")
    assert made.name == v2
    [event] = read_events(audit.location, action="rotate")
    assert event.resource == key and event.evidence.get("previous_primary") == v1
    wait_enabled(client, v2)
    assert asymmetric.current_version(client, key).name == v2

    data = [root / "ds.enc" / "x", root / "model.enc"]
    data_before = {p: p.read_bytes() for p in data}
    report = rewrap(client, [str(root)])
    assert report.ok and report.rewrapped == 2, report.to_dict()
    assert report.versions_after == {v2: 2}
    assert {p: p.read_bytes() for p in data_before} == data_before  # data never touched
    record = Envelope.open(str(root / "ds.enc")).record
    assert isinstance(record.key, RecipientWrap) and record.key.crypto_key_version == v2
    assert rewrap(client, [str(root)]).already_current == 2  # converged
    inventory = scan([str(root)])
    assert v1 not in inventory.by_version() and inventory.by_version()[v2].envelopes == 2

    def shred() -> Any:
        now = emu_now(fresh_emulator)
        return run_shred(
            client, load_spec(str(tmp_path / "spec.yaml")), now=now, audit=audit, run_id="t", dry_run=False
        )

    fresh_emulator.admin.advance(2.05 * DAY)
    disabled = shred()
    assert disabled.decision(v1).outcome == "disabled", disabled.render()
    kept = disabled.decision(v2)
    assert kept is not None and kept.outcome == "kept" and "never disabled" in kept.reason  # the current one
    fresh_emulator.admin.advance(3.05 * DAY)
    destroyed = shred()
    assert destroyed.decision(v1).outcome == "destroy_scheduled", destroyed.render()
    assert state(client, v1) == "DESTROY_SCHEDULED" and state(client, v2) == "ENABLED"

    # Everything still opens, with v2 only.
    Envelope.open(str(root / "ds.enc")).decrypt(client, str(tmp_path / "out"))
    assert (tmp_path / "out" / "x").read_bytes() == b"x" * 5000
    Envelope.open(str(root / "model.enc")).decrypt(client, str(tmp_path / "model.out"))
    assert (tmp_path / "model.out").read_bytes() == b"m" * 70000


def test_a_recipient_key_with_a_rotation_period_is_refused(tmp_path: Path) -> None:
    from kmsflow.spec.loader import SpecError

    path = tmp_path / "spec.yaml"
    path.write_text(
        "project: p\nlocation: l\nkey_rings:\n  - id: r\n    keys:\n      - id: k\n"
        "        purpose: KEY_ENCAPSULATION\n        algorithm: ML_KEM_768\n        rotation_period: 90d\n"
    )
    with pytest.raises(SpecError, match="no automatic rotation"):
        load_spec(str(path))


def test_reencrypt_gives_a_recipient_envelope_a_new_data_key_for_the_current_version(
    emulator: Any, tmp_path: Path
) -> None:
    from kmsflow.lifecycle import reencrypt

    client = emulator.client()
    key = make_recipient_key(client, "ML_KEM_768")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a").write_bytes(b"a" * 3000)
    (tmp_path / "ds" / "b").write_bytes(b"")
    old = encrypt_for(
        fetch_public_key(client, version_n(key, 1)), str(tmp_path / "ds"), str(tmp_path / "enc")
    )
    asymmetric.add_version(client, key)
    wait_enabled(client, version_n(key, 2))

    report = reencrypt(client, [str(tmp_path / "enc")])
    assert report.ok, report.to_dict()
    new = Envelope.open(str(tmp_path / "enc")).record
    assert new.envelope_id != old.envelope_id
    assert isinstance(new.key, RecipientWrap) and new.key.crypto_key_version == version_n(key, 2)
    Envelope.open(str(tmp_path / "enc")).decrypt(client, str(tmp_path / "out"))
    assert (tmp_path / "out" / "a").read_bytes() == b"a" * 3000 and (
        tmp_path / "out" / "b"
    ).read_bytes() == b""


def test_the_current_version_is_never_disabled_or_destroyed(emulator: Any) -> None:
    """Invariant 3 for recipient keys: the current version stands in for the primary."""
    from kmsflow.kms import resources
    from kmsflow.kms.errors import KmsGuardError

    client = emulator.client()
    key = make_recipient_key(client, "ML_KEM_768")
    for action in (resources.disable_version, resources.destroy_version):
        with pytest.raises(KmsGuardError, match="current version"):
            action(client, version_n(key, 1))
    asymmetric.add_version(client, key)
    wait_enabled(client, version_n(key, 2))
    assert resources.disable_version(client, version_n(key, 1)).state.name == "DISABLED"
    with pytest.raises(KmsGuardError, match="current version"):
        resources.disable_version(client, version_n(key, 2))
