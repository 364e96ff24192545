"""Rewrap takes envelopes through its phases a chunk at a time (``kmsflow.pools.chunks``): one
envelope's failure, in any phase, must stay that envelope's."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from google.cloud import kms_v1
from inventory.builders import make_file, make_key

from kmsflow.envelope import Envelope
from kmsflow.envelope.aad import keyset_aad
from kmsflow.kms import crypto, resources
from kmsflow.lifecycle import rewrap


def record_of(dst: str) -> Path:
    return Path(dst + ".kmsflow.json")


def test_failures_in_every_phase_of_one_chunk_stay_per_envelope(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    root, src = tmp_path / "root", tmp_path / "src"
    made = [make_file(kms, key, src, str(root / f"{i}.enc"), 500 + i, seed=i) for i in range(8)]
    # a key whose only version is then disabled: its envelope fails in the unwrap phase
    other = make_key(kms, ring_id, "other")
    stuck = make_file(kms, other, src, str(root / "stuck.enc"), seed=20)
    resources.rotate(kms, other)
    resources.disable_version(kms, stuck.record.key.crypto_key_version)
    v2 = resources.rotate(kms, key).name
    current = make_file(kms, key, src, str(root / "current.enc"), seed=21)  # already under v2
    unreadable = record_of(made[1].dst)  # fails in the read phase
    unreadable.write_text("{not json")
    tampered = record_of(made[4].dst)  # fails in the manifest check phase
    raw = json.loads(tampered.read_bytes())
    raw["files"][0]["size"] += 1
    tampered.write_text(json.dumps(raw, indent=2))
    tampered_bytes = tampered.read_bytes()
    raced = record_of(made[6].dst)  # another writer gets there first: a conflict at the swap
    raced_bytes = raced.read_bytes() + b"\n"

    def concurrent_writer(record_url: str) -> None:
        if record_url == str(raced):
            raced.write_bytes(raced_bytes)

    targets = [m.dst for m in made] + [stuck.dst, current.dst]
    report = rewrap(kms, targets, max_workers=1, before_swap=concurrent_writer)  # one chunk of all ten

    assert report.envelopes == 10
    assert (report.rewrapped, report.already_current) == (5, 1)
    assert sorted((Path(f.url).name, f.error) for f in report.failures) == [
        ("1.enc", "RecordInvalidError"),
        ("4.enc", "TamperedError"),
        ("stuck.enc", "KeyVersionUnavailableError"),
    ]
    assert [(Path(c.url).name, c.error) for c in report.conflicts] == [("6.enc", "RecordConflictError")]
    assert tampered.read_bytes() == tampered_bytes and raced.read_bytes() == raced_bytes
    for i in (0, 2, 3, 5, 7):
        assert Envelope.open(made[i].dst).record.key.crypto_key_version == v2
        out = tmp_path / f"out{i}"
        Envelope.open(made[i].dst).decrypt(kms, str(out))
        assert out.read_bytes() == Path(made[i].src).read_bytes()
    assert report.versions_after == {
        v2: 6,
        made[0].record.key.crypto_key_version: 2,
        stuck.record.key.crypto_key_version: 1,
    }


def unwrapped_keyset(kms: kms_v1.KeyManagementServiceClient, dst: str) -> bytes:
    record = Envelope.open(dst).record
    aad = keyset_aad(record.envelope_id)
    return crypto.decrypt(kms, record.key.crypto_key, record.key.wrapped_bytes(), aad)


def test_rewrap_wraps_the_very_keyset_it_unwrapped_and_refuses_one_that_is_not_a_keyset(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root, src = tmp_path / "root", tmp_path / "src"
    made = [make_file(kms, key, src, str(root / f"{i}.enc"), 300, seed=i) for i in range(3)]
    keysets = [unwrapped_keyset(kms, m.dst) for m in made]
    # KMS authenticates this wrapped value (right key, right AAD), but what it unwraps is not a
    # Tink keyset: the check phase must refuse it before anything is wrapped or written.
    bogus = record_of(made[1].dst)
    raw = json.loads(bogus.read_bytes())
    wrapped = crypto.encrypt(kms, key, b"\x00" * 64, keyset_aad(raw["envelope_id"]))
    raw["key"]["wrapped_keyset"] = base64.b64encode(wrapped.ciphertext).decode()
    bogus.write_text(json.dumps(raw, indent=2))
    bogus_bytes = bogus.read_bytes()
    v2 = resources.rotate(kms, key).name

    report = rewrap(kms, [m.dst for m in made], max_workers=1)

    assert [(Path(f.url).name, f.error) for f in report.failures] == [("1.enc", "TamperedError")]
    assert "not a valid Tink keyset" in report.failures[0].reason
    assert bogus.read_bytes() == bogus_bytes
    for i in (0, 2):
        assert Envelope.open(made[i].dst).record.key.crypto_key_version == v2
        assert unwrapped_keyset(kms, made[i].dst) == keysets[i]


def test_an_envelope_in_flight_never_shows_its_unwrapped_keyset() -> None:
    """Error reporters that render a frame's locals (Sentry, ``pytest --showlocals``) use repr."""
    in_flight = sys.modules["kmsflow.lifecycle.rewrap"]._InFlight
    secret = b"\x08\x01\x12secret-keyset-bytes"
    shown = repr(in_flight(target="t", keyset=secret))
    assert repr(secret) not in shown and "secret-keyset" not in shown
