"""Key problems surface as the KMS error they are, before or instead of any output: wrong key,
disabled or destroyed versions, missing permissions. Nothing kmsflow does here makes data
undecryptable: re-enabling a disabled version brings the envelope back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1

from kmsflow import envelope
from kmsflow.envelope import TamperedError
from kmsflow.kms import KeyVersionUnavailableError, KmsNotFoundError, KmsPermissionError

from .conftest import make_key, no_plaintext_left, write_random

State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
OWNER = "user:owner@example.com"  # the owner tests/conftest.py starts iam_emulator with


def set_state(kms: Any, version: str, state: Any) -> None:
    kms.update_crypto_key_version(
        request={"crypto_key_version": {"name": version, "state": state}, "update_mask": {"paths": ["state"]}}
    )


def test_record_pointing_at_another_key_is_rejected(kms: Any, key: str, ring_id: str, tmp_path: Path) -> None:
    other = make_key(kms, ring_id, "other")
    write_random(tmp_path / "in", 100)
    envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    record = tmp_path / "enc.kmsflow.json"
    body = json.loads(record.read_text())
    body["key"]["crypto_key"] = other
    body["key"]["crypto_key_version"] = f"{other}/cryptoKeyVersions/1"
    record.write_text(json.dumps(body))
    with pytest.raises(TamperedError, match="KMS refused to unwrap"):
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert no_plaintext_left(tmp_path, "out")


def test_encrypt_with_unknown_key_fails_before_writing(kms: Any, ring_id: str, tmp_path: Path) -> None:
    make_key(kms, ring_id)
    write_random(tmp_path / "in", 100)
    missing = f"projects/kmsflow-test/locations/us-central1/keyRings/{ring_id}/cryptoKeys/nope"
    with pytest.raises(KmsNotFoundError):
        envelope.encrypt(kms, missing, str(tmp_path / "in"), str(tmp_path / "enc"))
    assert no_plaintext_left(tmp_path, "enc")


def test_disabled_version_blocks_decrypt_until_reenabled(kms: Any, key: str, tmp_path: Path) -> None:
    data = write_random(tmp_path / "ds" / "a", 5000)
    record = envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    version = record.key.crypto_key_version
    set_state(kms, version, State.DISABLED)
    with pytest.raises(KeyVersionUnavailableError):
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    with pytest.raises(KeyVersionUnavailableError):
        envelope.verify(kms, str(tmp_path / "enc"))
    assert no_plaintext_left(tmp_path, "out")
    # encrypt under a disabled primary fails up front, leaving nothing
    with pytest.raises(KeyVersionUnavailableError):
        envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "enc2"))
    assert no_plaintext_left(tmp_path, "enc2")
    set_state(kms, version, State.ENABLED)
    envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert (tmp_path / "out" / "a").read_bytes() == data


def test_destroyed_version_is_reported_as_unavailable(fresh_emulator: Any, tmp_path: Path) -> None:
    kms = fresh_emulator.client()
    key = make_key(kms, f"ring-{uuid.uuid4().hex[:8]}")
    write_random(tmp_path / "in", 3000)
    record = envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    kms.create_crypto_key_version(parent=key, crypto_key_version={})
    kms.update_crypto_key_primary_version(name=key, crypto_key_version_id="2")
    scheduled = kms.destroy_crypto_key_version(name=record.key.crypto_key_version)
    with pytest.raises(KeyVersionUnavailableError):  # DESTROY_SCHEDULED
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    fresh_emulator.admin.advance(scheduled.destroy_time.timestamp() - fresh_emulator.admin.now() + 1)
    assert kms.get_crypto_key_version(name=record.key.crypto_key_version).state == State.DESTROYED
    with pytest.raises(KeyVersionUnavailableError):
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert no_plaintext_left(tmp_path, "out")
    # an envelope made under the new primary names version 2 and is unaffected
    record2 = envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc2"))
    assert record2.key.crypto_key_version == f"{key}/cryptoKeyVersions/2"
    envelope.decrypt(kms, str(tmp_path / "enc2"), str(tmp_path / "out2"))


def test_encrypter_only_principal_can_encrypt_but_not_decrypt(iam_emulator: Any, tmp_path: Path) -> None:
    owner = iam_emulator.client(OWNER)
    key = make_key(owner, f"ring-{uuid.uuid4().hex[:8]}")
    producer = f"serviceAccount:producer-{uuid.uuid4().hex[:6]}@proj.iam.gserviceaccount.com"
    policy = owner.get_iam_policy(request={"resource": key})
    policy.bindings.add(role="roles/cloudkms.cryptoKeyEncrypter", members=[producer])
    owner.set_iam_policy(request={"resource": key, "policy": policy})

    data = write_random(tmp_path / "in", 2000)
    client = iam_emulator.client(producer)
    envelope.encrypt(client, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    with pytest.raises(KmsPermissionError, match="decrypt with"):
        envelope.decrypt(client, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert no_plaintext_left(tmp_path, "out")
    stranger = iam_emulator.client("user:stranger@example.com")
    with pytest.raises(KmsPermissionError):
        envelope.encrypt(stranger, key, str(tmp_path / "in"), str(tmp_path / "enc-x"))
    assert no_plaintext_left(tmp_path, "enc-x")
    envelope.decrypt(owner, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data
