"""Encrypt/Decrypt, CRC32C, limits, GenerateRandomBytes, concurrency, Tink, and a property test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tink
from google.api_core import exceptions
from google.cloud import kms_v1
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tink import aead
from tink.integration import gcpkms

from kmsflow.kms import crc32c

State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
LIMIT = 64 * 1024


def disable(kms: kms_v1.KeyManagementServiceClient, name: str, state: Any = State.DISABLED) -> None:
    kms.update_crypto_key_version(
        request={"crypto_key_version": {"name": name, "state": state}, "update_mask": {"paths": ["state"]}}
    )


def test_round_trip_with_aad(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    sealed = kms.encrypt(
        request={"name": key.name, "plaintext": b"model weights", "additional_authenticated_data": b"run-7"}
    )
    assert sealed.name == key.primary.name
    assert b"model weights" not in sealed.ciphertext
    opened = kms.decrypt(
        request={"name": key.name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": b"run-7"}
    )
    assert opened.plaintext == b"model weights"
    assert opened.used_primary is True
    assert opened.protection_level == kms_v1.ProtectionLevel.SOFTWARE

    for wrong in (b"run-8", b""):
        with pytest.raises(exceptions.InvalidArgument):
            kms.decrypt(
                request={
                    "name": key.name,
                    "ciphertext": sealed.ciphertext,
                    "additional_authenticated_data": wrong,
                }
            )
    # Encrypting twice gives different ciphertexts (fresh nonce).
    again = kms.encrypt(
        request={"name": key.name, "plaintext": b"model weights", "additional_authenticated_data": b"run-7"}
    )
    assert again.ciphertext != sealed.ciphertext
    # Empty plaintext is allowed.
    empty = kms.encrypt(name=key.name, plaintext=b"")
    assert kms.decrypt(name=key.name, ciphertext=empty.ciphertext).plaintext == b""


def test_ciphertext_names_its_version(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    old = kms.encrypt(name=key.name, plaintext=b"old")
    assert old.name == key.primary.name
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    new = kms.encrypt(name=key.name, plaintext=b"new")
    assert new.name == v2.name

    opened_old = kms.decrypt(name=key.name, ciphertext=old.ciphertext)
    assert (opened_old.plaintext, opened_old.used_primary) == (b"old", False)
    opened_new = kms.decrypt(name=key.name, ciphertext=new.ciphertext)
    assert (opened_new.plaintext, opened_new.used_primary) == (b"new", True)

    # An explicit (non-primary) version encrypts under that version.
    explicit = kms.encrypt(name=key.primary.name, plaintext=b"explicit")
    assert explicit.name == key.primary.name
    opened = kms.decrypt(name=key.name, ciphertext=explicit.ciphertext)
    assert (opened.plaintext, opened.used_primary) == (b"explicit", False)

    # Decrypt through a disabled version fails; re-enabling brings it back.
    disable(kms, key.primary.name)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.decrypt(name=key.name, ciphertext=old.ciphertext)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(name=key.primary.name, plaintext=b"x")
    assert kms.decrypt(name=key.name, ciphertext=new.ciphertext).plaintext == b"new"
    disable(kms, key.primary.name, State.ENABLED)
    assert kms.decrypt(name=key.name, ciphertext=old.ciphertext).plaintext == b"old"

    # Disabling the primary stops Encrypt through the key.
    disable(kms, v2.name)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(name=key.name, plaintext=b"x")
    with pytest.raises(exceptions.NotFound):
        kms.encrypt(name=f"{key.name}/cryptoKeyVersions/9", plaintext=b"x")


def test_payload_limit(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    biggest = bytes(range(256)) * (LIMIT // 256)
    assert len(biggest) == LIMIT
    sealed = kms.encrypt(
        request={"name": key.name, "plaintext": biggest, "additional_authenticated_data": biggest}
    )
    opened = kms.decrypt(
        request={"name": key.name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": biggest}
    )
    assert opened.plaintext == biggest
    with pytest.raises(exceptions.InvalidArgument, match="65536"):
        kms.encrypt(name=key.name, plaintext=biggest + b"!")
    with pytest.raises(exceptions.InvalidArgument, match="65536"):
        kms.encrypt(
            request={"name": key.name, "plaintext": b"x", "additional_authenticated_data": biggest + b"!"}
        )
    with pytest.raises(exceptions.InvalidArgument):
        kms.decrypt(
            request={
                "name": key.name,
                "ciphertext": sealed.ciphertext,
                "additional_authenticated_data": biggest + b"!",
            }
        )


def test_crc32c_request_checks(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    plaintext, aad = b"weights", b"aad"
    bad_plaintext = {"plaintext_crc32c": crc32c(plaintext) ^ 1}
    bad_aad = {"additional_authenticated_data_crc32c": crc32c(aad) ^ 1}
    base = {"name": key.name, "plaintext": plaintext, "additional_authenticated_data": aad}
    with pytest.raises(exceptions.InvalidArgument, match="plaintext_crc32c"):
        kms.encrypt(request={**base, **bad_plaintext})
    with pytest.raises(exceptions.InvalidArgument, match="additional_authenticated_data_crc32c"):
        kms.encrypt(request={**base, **bad_aad})

    sealed = kms.encrypt(request=base)
    good = {"name": key.name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": aad}
    with pytest.raises(exceptions.InvalidArgument, match="ciphertext_crc32c"):
        kms.decrypt(request={**good, "ciphertext_crc32c": crc32c(sealed.ciphertext) ^ 1})
    with pytest.raises(exceptions.InvalidArgument, match="additional_authenticated_data_crc32c"):
        kms.decrypt(request={**good, **bad_aad})
    # A checksum of zero is still a checksum (and wrong here).
    with pytest.raises(exceptions.InvalidArgument):
        kms.encrypt(request={**base, "plaintext_crc32c": 0})

    opened = kms.decrypt(
        request={
            **good,
            "ciphertext_crc32c": crc32c(sealed.ciphertext),
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
    )
    assert opened.plaintext == plaintext
    assert opened.plaintext_crc32c == crc32c(plaintext)


def test_crc32c_response_fields(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    plaintext, aad = b"some artifact bytes", b"context"
    base = {"name": key.name, "plaintext": plaintext, "additional_authenticated_data": aad}

    plain = kms.encrypt(request=base)
    assert plain.ciphertext_crc32c == crc32c(plain.ciphertext)
    assert plain.verified_plaintext_crc32c is False
    assert plain.verified_additional_authenticated_data_crc32c is False

    only_plaintext = kms.encrypt(request={**base, "plaintext_crc32c": crc32c(plaintext)})
    assert only_plaintext.verified_plaintext_crc32c is True
    assert only_plaintext.verified_additional_authenticated_data_crc32c is False
    assert only_plaintext.ciphertext_crc32c == crc32c(only_plaintext.ciphertext)

    only_aad = kms.encrypt(request={**base, "additional_authenticated_data_crc32c": crc32c(aad)})
    assert only_aad.verified_plaintext_crc32c is False
    assert only_aad.verified_additional_authenticated_data_crc32c is True

    both = kms.encrypt(
        request={
            **base,
            "plaintext_crc32c": crc32c(plaintext),
            "additional_authenticated_data_crc32c": crc32c(aad),
        }
    )
    assert both.verified_plaintext_crc32c is True
    assert both.verified_additional_authenticated_data_crc32c is True

    opened = kms.decrypt(
        request={"name": key.name, "ciphertext": both.ciphertext, "additional_authenticated_data": aad}
    )
    assert opened.plaintext_crc32c == crc32c(plaintext)


def test_bad_ciphertexts(
    kms: kms_v1.KeyManagementServiceClient, ring: str, key: kms_v1.CryptoKey, new_key: Callable[..., Any]
) -> None:
    other = new_key(kms, ring, "other")
    sealed = kms.encrypt(name=key.name, plaintext=b"secret").ciphertext

    def tampered(index: int) -> bytes:
        out = bytearray(sealed)
        out[index] ^= 0x01
        return bytes(out)

    candidates = {
        "last byte": tampered(len(sealed) - 1),
        "first byte": tampered(0),
        "version id": tampered(7),
        "nonce": tampered(10),
        "body": tampered(len(sealed) // 2 + 8),
        "truncated": sealed[:-1],
        "short": sealed[:8],
        "empty": b"",
        "garbage": b"\x00" * len(sealed),
    }
    for label, ciphertext in candidates.items():
        with pytest.raises(exceptions.InvalidArgument):
            kms.decrypt(name=key.name, ciphertext=ciphertext)
            pytest.fail(f"{label} ciphertext decrypted")
    # Both keys have a version 1; a ciphertext still only opens under its own key.
    with pytest.raises(exceptions.InvalidArgument):
        kms.decrypt(name=other.name, ciphertext=sealed)
    # ...and a ciphertext naming a version the key does not have is refused the same way.
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    from_v2 = kms.encrypt(name=v2.name, plaintext=b"v2").ciphertext
    with pytest.raises(exceptions.InvalidArgument):
        kms.decrypt(name=other.name, ciphertext=from_v2)
    with pytest.raises(exceptions.NotFound):
        kms.decrypt(name=key.name + "-gone", ciphertext=sealed)
    with pytest.raises(exceptions.InvalidArgument):
        kms.decrypt(name=key.primary.name, ciphertext=sealed)
    assert kms.decrypt(name=key.name, ciphertext=sealed).plaintext == b"secret"


def test_generate_random_bytes(kms: kms_v1.KeyManagementServiceClient, location: str) -> None:
    first = kms.generate_random_bytes(location=location, length_bytes=32)
    second = kms.generate_random_bytes(location=location, length_bytes=32)
    assert len(first.data) == 32
    assert first.data_crc32c == crc32c(first.data)
    assert first.data != second.data
    assert len(kms.generate_random_bytes(location=location, length_bytes=1024).data) == 1024
    for bad in (0, 7, 1025):
        with pytest.raises(exceptions.InvalidArgument):
            kms.generate_random_bytes(location=location, length_bytes=bad)
    with pytest.raises(exceptions.InvalidArgument):
        kms.generate_random_bytes(location="projects/p", length_bytes=32)


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_round_trips(
    emulator: Any, key: kms_v1.CryptoKey, clients: Callable[..., kms_v1.KeyManagementServiceClient]
) -> None:
    threads, rounds = 8, 50
    per_thread = [clients(emulator) for _ in range(threads)]
    errors: list[BaseException] = []
    done = [0] * threads
    start = threading.Barrier(threads)

    def work(index: int) -> None:
        client = per_thread[index]
        try:
            start.wait()
            for round_ in range(rounds):
                plaintext = f"thread {index} round {round_}".encode() * (round_ + 1)
                aad = f"{index}/{round_}".encode()
                sealed = client.encrypt(
                    request={"name": key.name, "plaintext": plaintext, "additional_authenticated_data": aad}
                )
                opened = client.decrypt(
                    request={
                        "name": key.name,
                        "ciphertext": sealed.ciphertext,
                        "additional_authenticated_data": aad,
                    }
                )
                assert opened.plaintext == plaintext
                assert opened.plaintext_crc32c == crc32c(plaintext)
                done[index] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors[:3]
    assert done == [rounds] * threads


def test_concurrent_version_creation(
    emulator: Any, key: kms_v1.CryptoKey, clients: Callable[..., kms_v1.KeyManagementServiceClient]
) -> None:
    threads, each = 8, 5
    names: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        client = clients(emulator)
        start.wait()
        for _ in range(each):
            name = client.create_crypto_key_version(parent=key.name, crypto_key_version={}).name
            with lock:
                names.append(name)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    ids = sorted(int(n.rsplit("/", 1)[1]) for n in names)
    assert ids == list(range(2, 2 + threads * each))
    kms = clients(emulator)
    listed = [v.name for v in kms.list_crypto_key_versions(request={"parent": key.name})]
    assert listed == [f"{key.name}/cryptoKeyVersions/{i}" for i in range(1, 2 + threads * each)]


# ----------------------------------------------------------------------------- Tink


def test_tink_envelope_round_trip(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    aead.register()
    uri = "gcp-kms://" + key.name
    kms_client = gcpkms.new_client(kms_v1_client=kms, key_uri=uri)
    assert kms_client.does_support(uri)
    remote = kms_client.get_aead(uri)

    # The remote AEAD alone is a straight Encrypt/Decrypt through the emulator.
    direct = remote.encrypt(b"dek", b"ad")
    assert (
        kms.decrypt(
            request={"name": key.name, "ciphertext": direct, "additional_authenticated_data": b"ad"}
        ).plaintext
        == b"dek"
    )

    envelope = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM, remote)
    payload = b"an ML artifact " * 10_000  # larger than one Encrypt call could take
    sealed = envelope.encrypt(payload, b"artifact-id")
    assert envelope.decrypt(sealed, b"artifact-id") == payload
    with pytest.raises(tink.TinkError):
        envelope.decrypt(sealed, b"another-id")

    # After the key is rotated the envelope still opens (the wrapped DEK names version 1).
    kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    assert envelope.decrypt(sealed, b"artifact-id") == payload
    assert envelope.decrypt(envelope.encrypt(b"x", b""), b"") == b"x"


# ----------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def property_key(kms: kms_v1.KeyManagementServiceClient, location: str) -> Iterator[str]:
    ring = kms.create_key_ring(
        request={"parent": location, "key_ring_id": f"prop-{uuid.uuid4().hex[:12]}", "key_ring": {}}
    ).name
    yield kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "prop",
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    ).name


def _fill(size: int, pattern: bytes) -> bytes:
    """``size`` bytes repeating ``pattern`` (hypothesis cannot draw 64 KiB of bytes directly)."""
    if not pattern:
        return bytes(size)
    return (pattern * (size // len(pattern) + 1))[:size]


@settings(max_examples=25, deadline=None, database=None)
@given(
    plaintext_size=st.integers(0, LIMIT),
    aad_size=st.integers(0, LIMIT),
    pattern=st.binary(max_size=32),
)
@example(plaintext_size=0, aad_size=0, pattern=b"")
@example(plaintext_size=LIMIT, aad_size=LIMIT, pattern=b"\xff\x00")
@example(plaintext_size=1, aad_size=LIMIT, pattern=b"z")
def test_round_trip_property(
    kms: kms_v1.KeyManagementServiceClient,
    property_key: str,
    plaintext_size: int,
    aad_size: int,
    pattern: bytes,
) -> None:
    plaintext = _fill(plaintext_size, pattern)
    aad = _fill(aad_size, pattern[::-1] + b"a")
    sealed = kms.encrypt(
        request={
            "name": property_key,
            "plaintext": plaintext,
            "additional_authenticated_data": aad,
            "plaintext_crc32c": crc32c(plaintext),
        }
    )
    assert sealed.verified_plaintext_crc32c
    assert sealed.ciphertext_crc32c == crc32c(sealed.ciphertext)
    opened = kms.decrypt(
        request={"name": property_key, "ciphertext": sealed.ciphertext, "additional_authenticated_data": aad}
    )
    assert opened.plaintext == plaintext
    assert opened.plaintext_crc32c == crc32c(plaintext)
    assert opened.used_primary
