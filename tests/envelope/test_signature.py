"""Signed envelopes with the emulator's ASYMMETRIC_SIGN keys: every algorithm kmsflow signs with,
offline verification from a public key file, forgery and substitution refused, rewrap keeps the
signature valid, re-encrypt does not."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from google.cloud import kms_v1

from kmsflow.envelope import Envelope, encrypt
from kmsflow.envelope.errors import DestinationExistsError, InvalidDestinationError, RecordInvalidError
from kmsflow.envelope.layout import signature_location
from kmsflow.envelope.signature import (
    DIGESTS,
    SignatureError,
    SignatureNotFoundError,
    UnsupportedSignerError,
    sign_envelope,
    verify_signature,
)
from kmsflow.kms.public_key import PublicKey, fetch_public_key

from .conftest import write_random

LOCATION = "projects/kmsflow-test/locations/us-central1"


def make_signing_key(client: kms_v1.KeyManagementServiceClient, ring_id: str, algorithm: str) -> str:
    """A new ASYMMETRIC_SIGN key of ``algorithm`` in ring ``ring_id`` (created if needed)."""
    try:
        client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring_id, "key_ring": {}})
    except Exception as exc:
        if "exist" not in str(exc).lower():
            raise
    key = client.create_crypto_key(
        request={
            "parent": f"{LOCATION}/keyRings/{ring_id}",
            "crypto_key_id": f"sign-{uuid.uuid4().hex[:8]}",
            "crypto_key": {"purpose": "ASYMMETRIC_SIGN", "version_template": {"algorithm": algorithm}},
        }
    )
    return str(key.name)


def dataset(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_random(src / "weights.bin", 300_000, seed=1)
    write_random(src / "shards" / "a.bin", 5_000, seed=2)
    write_random(src / "shards" / "b.bin", 0, seed=3)
    return src


@pytest.fixture
def signer(kms: kms_v1.KeyManagementServiceClient, ring_id: str) -> str:
    return make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")


@pytest.mark.parametrize("algorithm", sorted(DIGESTS))
def test_encrypt_sign_with_each_algorithm_verifies_offline(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path, algorithm: str
) -> None:
    signing = make_signing_key(kms, ring_id, algorithm)
    src = dataset(tmp_path)
    record = encrypt(kms, key, str(src), str(tmp_path / "ds.enc"), sign_with=signing)
    env = Envelope.open(str(tmp_path / "ds.enc"))
    public = fetch_public_key(kms, f"{signing}/cryptoKeyVersions/1")
    pub_file = tmp_path / "signer.pub"
    pub_file.write_bytes(public.to_file_bytes())

    statement = verify_signature(env, str(pub_file))  # no client: no KMS call is possible
    assert statement.envelope_id == record.envelope_id
    assert statement.signer.algorithm == algorithm
    assert [f.path for f in statement.files] == [f.path for f in record.files]
    # With the data key (one KMS Decrypt) the key commitment is checked as well.
    verify_signature(env, public, key=env.unlock(kms))
    # The signed envelope is still a normal envelope.
    env.verify(kms)


def test_sign_existing_file_envelope_and_verify_by_key_name(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    write_random(tmp_path / "model.bin", 70_000)
    encrypt(kms, key, str(tmp_path / "model.bin"), str(tmp_path / "model.enc"))
    env = Envelope.open(str(tmp_path / "model.enc"))
    with pytest.raises(SignatureNotFoundError):
        verify_signature(env, signer, client=kms)

    statement = sign_envelope(kms, env, signer)
    assert (tmp_path / "model.enc.kmsflow.sig.json").is_file()
    assert statement.signer.crypto_key_version == f"{signer}/cryptoKeyVersions/1"
    verify_signature(env, signer, client=kms)  # a CryptoKey: any of its versions
    verify_signature(env, f"{signer}/cryptoKeyVersions/1", client=kms)

    with pytest.raises(DestinationExistsError, match="--replace"):
        sign_envelope(kms, env, signer)
    sign_envelope(kms, env, signer, replace=True)
    verify_signature(env, signer, client=kms)


def test_newest_enabled_version_signs(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    kms.create_crypto_key_version(request={"parent": signer, "crypto_key_version": {}})
    kms.get_crypto_key_version(request={"name": f"{signer}/cryptoKeyVersions/2"})  # generated now
    write_random(tmp_path / "m.bin", 10)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    statement = verify_signature(Envelope.open(str(tmp_path / "m.enc")), signer, client=kms)
    assert statement.signer.crypto_key_version == f"{signer}/cryptoKeyVersions/2"
    # A verifier that trusts only version 1 refuses it.
    with pytest.raises(SignatureError, match=r"signed by .*/cryptoKeyVersions/2"):
        verify_signature(Envelope.open(str(tmp_path / "m.enc")), f"{signer}/cryptoKeyVersions/1", client=kms)


def test_signature_by_another_key_fails(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, ring_id: str, tmp_path: Path
) -> None:
    other = make_signing_key(kms, ring_id, "EC_SIGN_P256_SHA256")
    write_random(tmp_path / "m.bin", 1000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    env = Envelope.open(str(tmp_path / "m.enc"))
    with pytest.raises(SignatureError, match="signed by"):
        verify_signature(env, other, client=kms)
    with pytest.raises(SignatureError, match="signed by"):
        verify_signature(env, fetch_public_key(kms, f"{other}/cryptoKeyVersions/1"))
    # A public key file that claims the signer's name but holds another key's bytes.
    real = fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1")
    impostor = fetch_public_key(kms, f"{other}/cryptoKeyVersions/1")
    lying = PublicKey(real.version_name, real.algorithm, impostor.key, impostor.format)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(env, lying)


def test_signature_of_another_envelope_fails(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    write_random(tmp_path / "a.bin", 1000, seed=1)
    write_random(tmp_path / "b.bin", 1000, seed=2)
    encrypt(kms, key, str(tmp_path / "a.bin"), str(tmp_path / "a.enc"), sign_with=signer)
    encrypt(kms, key, str(tmp_path / "b.bin"), str(tmp_path / "b.enc"))
    shutil.copy(tmp_path / "a.enc.kmsflow.sig.json", tmp_path / "b.enc.kmsflow.sig.json")
    with pytest.raises(SignatureError, match=r"signs envelope .*, this is envelope"):
        verify_signature(Envelope.open(str(tmp_path / "b.enc")), signer, client=kms)


def test_swapped_file_or_record_fails(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    src = dataset(tmp_path)
    encrypt(kms, key, str(src), str(tmp_path / "one"), sign_with=signer)
    encrypt(kms, key, str(src), str(tmp_path / "two"), sign_with=signer)
    public = fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1")

    # A ciphertext swapped in from another envelope of the same data (same size).
    shutil.copy(tmp_path / "two" / "weights.bin", tmp_path / "one" / "weights.bin")
    with pytest.raises(SignatureError, match=r"weights\.bin: ciphertext differs from what was signed"):
        verify_signature(Envelope.open(str(tmp_path / "one")), public)

    # The other envelope's record (and so its envelope id) swapped in beside these files.
    three = tmp_path / "three"
    shutil.copytree(tmp_path / "two", three)
    shutil.copy(tmp_path / "one" / "_kmsflow" / "envelope.json", three / "_kmsflow" / "envelope.json")
    with pytest.raises(SignatureError, match="signs envelope"):
        verify_signature(Envelope.open(str(three)), public)

    # A file added to the dataset, or one removed.
    four = tmp_path / "four"
    shutil.copytree(tmp_path / "two", four)
    (four / "extra.bin").write_bytes(b"x")
    with pytest.raises(SignatureError, match="not in the envelope"):
        verify_signature(Envelope.open(str(four)), public)
    (four / "extra.bin").unlink()
    (four / "shards" / "b.bin").unlink()
    with pytest.raises(SignatureError, match="missing"):
        verify_signature(Envelope.open(str(four)), public)


def test_ciphertext_grown_past_its_signed_size_fails_after_one_piece(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    signer: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytes appended to a ciphertext fail the signature check, which stops reading one piece past
    the signed size: a file grown by gigabytes is refused without hashing all of them."""
    from kmsflow.envelope import streams
    from kmsflow.envelope.storage import CHUNK_SIZE

    write_random(tmp_path / "m.bin", 5000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    public = fetch_public_key(kms, f"{signer}/cryptoKeyVersions/1")
    verify_signature(Envelope.open(str(tmp_path / "m.enc")), public)
    with open(tmp_path / "m.enc", "ab") as f:
        f.truncate(64 << 20)  # sparse zeros, enough that reading them all would fail the count
    read: list[int] = []
    real = streams.ChecksumReader.read

    def counted(self: streams.ChecksumReader, size: int | None = -1) -> bytes:
        data = real(self, size)
        read.append(len(data))
        return data

    monkeypatch.setattr(streams.ChecksumReader, "read", counted)
    with pytest.raises(SignatureError, match=r"m\.enc: ciphertext differs from what was signed"):
        verify_signature(Envelope.open(str(tmp_path / "m.enc")), public)
    assert 0 < sum(read) <= 5000 + 2 * CHUNK_SIZE, sum(read)


def test_wrapped_key_substitution_fails_the_commitment(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    """Another data key put in the record (a whole other envelope's key and manifest, under this
    envelope's id) is what only the commitment can catch: the record alone still looks signed."""
    from kmsflow.envelope import manifest
    from kmsflow.envelope.keyset import DataKey
    from kmsflow.envelope.wrap import wrap_key

    write_random(tmp_path / "m.bin", 1000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    env = Envelope.open(str(tmp_path / "m.enc"))
    other_key = DataKey.generate()
    forged = manifest.reseal(other_key, env.record, wrap_key(kms, key, other_key, env.record.envelope_id))
    (tmp_path / "m.enc.kmsflow.json").write_bytes(forged.to_json())
    forged_env = Envelope.open(str(tmp_path / "m.enc"))
    verify_signature(forged_env, signer, client=kms)  # offline: the ciphertexts are the signed ones
    with pytest.raises(SignatureError, match="data key is not the one that was signed"):
        verify_signature(forged_env, signer, client=kms, key=forged_env.unlock(kms))


def test_rewrap_keeps_the_signature_valid(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    from kmsflow.lifecycle import rewrap

    src = dataset(tmp_path)
    encrypt(kms, key, str(src), str(tmp_path / "ds"), sign_with=signer)
    before = (tmp_path / "ds" / "_kmsflow" / "envelope.json").read_bytes()
    new = kms.create_crypto_key_version(request={"parent": key, "crypto_key_version": {}})
    kms.update_crypto_key_primary_version(
        request={"name": key, "crypto_key_version_id": new.name.rsplit("/")[-1]}
    )
    report = rewrap(kms, [str(tmp_path / "ds")])
    assert report.rewrapped == 1, report
    env = Envelope.open(str(tmp_path / "ds"))
    assert (tmp_path / "ds" / "_kmsflow" / "envelope.json").read_bytes() != before
    assert env.record.key.crypto_key_version == new.name
    verify_signature(env, signer, client=kms, key=env.unlock(kms))


def test_reencrypt_leaves_a_signature_that_no_longer_applies(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    from kmsflow.lifecycle import reencrypt

    write_random(tmp_path / "m.bin", 1000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    reencrypt(kms, [str(tmp_path / "m.enc")])
    env = Envelope.open(str(tmp_path / "m.enc"))
    with pytest.raises(SignatureError, match="signs envelope"):
        verify_signature(env, signer, client=kms)
    sign_envelope(kms, env, signer, replace=True)  # re-signing is the remedy
    verify_signature(env, signer, client=kms)

    # A local dataset is replaced as a whole directory: its old signature record went with it.
    encrypt(kms, key, str(dataset(tmp_path)), str(tmp_path / "ds"), sign_with=signer)
    reencrypt(kms, [str(tmp_path / "ds")])
    with pytest.raises(SignatureNotFoundError):
        verify_signature(Envelope.open(str(tmp_path / "ds")), signer, client=kms)


def test_hostile_signature_records(
    kms: kms_v1.KeyManagementServiceClient, key: str, signer: str, tmp_path: Path
) -> None:
    write_random(tmp_path / "m.bin", 1000)
    encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=signer)
    env = Envelope.open(str(tmp_path / "m.enc"))
    sig = tmp_path / "m.enc.kmsflow.sig.json"
    good = json.loads(sig.read_bytes())
    for bad in (b"", b"[" * 100_000, b"\xff", b"{}", json.dumps({**good, "extra": 1}).encode()):
        sig.write_bytes(bad)
        with pytest.raises(RecordInvalidError):
            verify_signature(env, signer, client=kms)
    # A statement edited (not canonical any more, or another value): refused either way.
    statement = json.loads(__import__("base64").b64decode(good["statement"]))
    statement["files"][0]["size"] += 1
    edited = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
    sig.write_text(json.dumps({**good, "statement": __import__("base64").b64encode(edited).decode()}))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_signature(env, signer, client=kms)


def test_signing_refuses_unsuitable_keys_before_writing(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    write_random(tmp_path / "m.bin", 1000)
    pkcs1 = make_signing_key(kms, ring_id, "RSA_SIGN_PKCS1_2048_SHA256")
    with pytest.raises(UnsupportedSignerError, match="not an algorithm kmsflow signs with"):
        encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "m.enc"), sign_with=pkcs1)
    assert list(tmp_path.iterdir()) == [tmp_path / "m.bin"]  # nothing published, no temp left
    with pytest.raises(InvalidDestinationError, match="signature records"):
        encrypt(kms, key, str(tmp_path / "m.bin"), str(tmp_path / "x.kmsflow.sig.json"))


def test_signature_location_is_beside_the_record(tmp_path: Path) -> None:
    from kmsflow.envelope.storage import resolve

    assert signature_location(resolve(str(tmp_path / "m.enc")), "file").path.endswith(
        "m.enc.kmsflow.sig.json"
    )
    assert signature_location(resolve(str(tmp_path / "ds")), "dataset").path.endswith(
        "ds/_kmsflow/signature.json"
    )
