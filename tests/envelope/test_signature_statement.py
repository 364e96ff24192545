"""The signed statement's encoding (Hypothesis): one byte string per statement, read back exactly,
and any change of any field makes a signature over the original fail."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope.errors import RecordInvalidError
from kmsflow.envelope.signature import signature_valid
from kmsflow.envelope.statement import SignedFile, Signer, Statement, parse, signed_message
from kmsflow.kms.public_key import DER, PublicKey

VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
_PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = PublicKey(
    VERSION,
    "EC_SIGN_P256_SHA256",
    _PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ),
    DER,
)

hex_id = st.binary(min_size=16, max_size=16).map(bytes.hex)
timestamps = st.datetimes(min_value=datetime(1000, 1, 1), timezones=st.none()).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
paths = st.text(min_size=1, max_size=30)
sizes = st.integers(min_value=0, max_value=2**63)
files = st.lists(
    st.builds(
        SignedFile,
        path=paths,
        size=sizes,
        ciphertext_size=sizes,
        ciphertext_sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
    ),
    max_size=6,
    unique_by=lambda f: f.path,
).map(lambda fs: tuple(sorted(fs, key=lambda f: f.path)))
signers = st.builds(
    Signer,
    crypto_key_version=st.sampled_from([VERSION, VERSION.replace("/1", "/2"), VERSION.replace("k/", "j/")]),
    algorithm=st.sampled_from(["EC_SIGN_P256_SHA256", "PQ_SIGN_ML_DSA_65", "RSA_SIGN_PSS_3072_SHA256"]),
)
statements = st.builds(
    Statement,
    envelope_id=hex_id,
    kind=st.sampled_from(["file", "dataset"]),
    created=timestamps,
    files=files,
    data_key_commitment=st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
    signer=signers,
)


def sign(statement: Statement) -> bytes:
    return _PRIVATE.sign(signed_message(statement.encode()), ec.ECDSA(hashes.SHA256()))


@settings(max_examples=300)
@given(statements)
def test_parse_of_encode_is_identity(statement: Statement) -> None:
    data = statement.encode()
    assert parse(data, "t") == statement
    assert parse(data, "t").encode() == data


def _changed(statement: Statement, data: Any) -> Statement:
    """``statement`` with one field (or one file's field) drawn and given another valid value."""
    field = data.draw(
        st.sampled_from(["envelope_id", "kind", "created", "files", "commitment", "signer", "file"])
    )
    if field == "file" and statement.files:
        i = data.draw(st.integers(0, len(statement.files) - 1))
        entry = statement.files[i]
        sub = data.draw(st.sampled_from(["size", "ciphertext_size", "ciphertext_sha256", "path"]))
        if sub == "path":
            new_path = data.draw(paths.filter(lambda p: p not in {f.path for f in statement.files}))
            new_files = sorted(
                [
                    *statement.files[:i],
                    *statement.files[i + 1 :],
                    entry.model_copy(update={"path": new_path}),
                ],
                key=lambda f: f.path,
            )
            return statement.model_copy(update={"files": tuple(new_files)})
        value = data.draw(
            (
                st.binary(min_size=32, max_size=32).map(bytes.hex) if sub == "ciphertext_sha256" else sizes
            ).filter(lambda v: v != getattr(entry, sub))
        )
        new_entry = entry.model_copy(update={sub: value})
        return statement.model_copy(
            update={"files": (*statement.files[:i], new_entry, *statement.files[i + 1 :])}
        )
    strategies = {
        "envelope_id": hex_id,
        "kind": st.sampled_from(["file", "dataset"]),
        "created": timestamps,
        "files": files,
        "commitment": st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
        "signer": signers,
        "file": files,  # no file to change: change the list instead
    }
    name = {"commitment": "data_key_commitment", "file": "files"}.get(field, field)
    value = data.draw(strategies[field].filter(lambda v: v != getattr(statement, name)))
    return statement.model_copy(update={name: value})


@settings(max_examples=300)
@given(statements, st.data())
def test_any_change_of_any_field_fails_verification(statement: Statement, data: Any) -> None:
    signature = sign(statement)
    assert signature_valid(PUBLIC, signature, signed_message(statement.encode()))
    changed = _changed(statement, data)
    assert changed != statement
    assert changed.encode() != statement.encode()
    assert parse(changed.encode(), "t") == changed
    assert not signature_valid(PUBLIC, signature, signed_message(changed.encode()))


@settings(max_examples=100)
@given(statements)
def test_only_the_canonical_encoding_parses(statement: Statement) -> None:
    body = json.loads(statement.encode())
    for other in (
        json.dumps(body, sort_keys=True).encode(),  # spaces
        json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()
        if any(ord(c) > 127 for f in statement.files for c in f.path)
        else statement.encode() + b" ",
        json.dumps(body, separators=(",", ":")).encode() if list(body) != sorted(body) else b"{}",
    ):
        with pytest.raises(RecordInvalidError):
            parse(other, "t")


def test_refuses_what_is_not_a_statement() -> None:
    good = json.loads(
        Statement(
            envelope_id="0" * 32,
            kind="file",
            created="2026-01-01T00:00:00Z",
            files=(SignedFile(path="", size=1, ciphertext_size=57, ciphertext_sha256="a" * 64),),
            data_key_commitment=base64.b64encode(bytes(32)).decode(),
            signer=Signer(crypto_key_version=VERSION, algorithm="EC_SIGN_P256_SHA256"),
        ).encode()
    )
    for bad in (
        {**good, "format": "kmsflow.envelope"},
        {**good, "version": 2},
        {**good, "extra": 1},
        {**good, "envelope_id": "0" * 31},
        {**good, "data_key_commitment": base64.b64encode(bytes(31)).decode()},
        {**good, "files": [{**good["files"][0], "size": True}]},
        {**good, "files": [{**good["files"][0], "ciphertext_sha256": "A" * 64}]},
        {**good, "signer": {**good["signer"], "crypto_key_version": "projects/p"}},
    ):
        with pytest.raises(RecordInvalidError):
            parse(json.dumps(bad, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(), "t")
    for raw in (b"", b"\xff", b"[" * 10_000, b"null"):
        with pytest.raises(RecordInvalidError):
            parse(raw, "t")
