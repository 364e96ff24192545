"""The record's JSON spelling stays what ``json.dumps(indent=2, ensure_ascii=False)`` writes, for
any content, and what earlier kmsflow wrote (pydantic's serializer, before ``envelope.strict``):
the same bytes, and a human reading a sidecar sees one stable layout. ``from_json`` accepts exactly
what validating the ``json`` module's parse accepts."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.envelope.statement import Statement, parse

VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"

VALID: dict[str, object] = {
    "format": "kmsflow.envelope",
    "version": 1,
    "envelope_id": "0" * 32,
    "kind": "file",
    "created": "2026-11-30T10:00:00Z",
    "key": {
        "crypto_key": VERSION.split("/cryptoKeyVersions/")[0],
        "crypto_key_version": VERSION,
        "wrapped_keyset": "AAAA",
        "wrapped_at": "2026-11-30T10:00:00Z",
    },
    "manifest": "AAAA",
    "files": [{"path": "", "size": 1, "ciphertext_size": 17, "ciphertext_crc32c": "AAAAAA=="}],
}


entries = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.text(min_size=1, max_size=30),
            "size": st.integers(min_value=0, max_value=2**53),
            "ciphertext_size": st.integers(min_value=0, max_value=2**53),
            "ciphertext_crc32c": st.sampled_from(["AAAAAA==", "mnG7TA==", "/////w=="]),
        }
    ),
    max_size=4,
    unique_by=lambda entry: entry["path"],
).map(lambda files: sorted(files, key=lambda entry: entry["path"]))  # as writers list them


@settings(max_examples=200)
@given(entries, st.sampled_from(["file", "dataset"]))
def test_to_json_is_the_json_module_spelling(files: list[dict[str, object]], kind: str) -> None:
    record = EnvelopeRecord.model_validate({**VALID, "kind": kind, "files": files})
    expected = (json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()
    assert record.to_json() == expected
    assert json.loads(record.to_json()) == record.model_dump(mode="json")


# Written by kmsflow at f70222f (pydantic's serializer) for the fields below: escapes, non-ASCII,
# U+2028, DEL, a 20-digit size, a recipient wrap; and that version's signed statement encoding.
WRITTEN_BEFORE = (
    b"{\n"
    b'  "format": "kmsflow.envelope",\n'
    b'  "version": 1,\n'
    b'  "envelope_id": "0123456789abcdef0123456789abcdef",\n'
    b'  "kind": "dataset",\n'
    b'  "created": "2026-12-07T21:00:00Z",\n'
    b'  "key": {\n'
    b'    "crypto_key": "projects/p/locations/l/keyRings/r/cryptoKeys/k",\n'
    b'    "crypto_key_version": "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7",\n'
    b'    "wrapped_keyset": "AAECAwQ=",\n'
    b'    "wrapped_at": "2026-12-07T21:00:01Z",\n'
    b'    "wrap": "ml-kem-768",\n'
    b'    "encapsulated_key": "/////w=="\n'
    b"  },\n"
    b'  "manifest": "bWFuaWZlc3Q=",\n'
    b'  "files": [\n'
    b"    {\n"
    b'      "path": "a\\tb\\"c\\\\d",\n'
    b'      "size": 0,\n'
    b'      "ciphertext_size": 56,\n'
    b'      "ciphertext_crc32c": "mnG7TA=="\n'
    b"    },\n"
    b"    {\n"
    b'      "path": "caf\xc3\xa9/\xe2\x80\xa8\x7f",\n'
    b'      "size": 10000000000000000000,\n'
    b'      "ciphertext_size": 10000000000000000056,\n'
    b'      "ciphertext_crc32c": "mnG7TA=="\n'
    b"    },\n"
    b"    {\n"
    b'      "path": "\xf0\x9f\x98\x80",\n'
    b'      "size": 1,\n'
    b'      "ciphertext_size": 57,\n'
    b'      "ciphertext_crc32c": "mnG7TA=="\n'
    b"    }\n"
    b"  ]\n"
    b"}\n"
)
STATEMENT_BEFORE = (
    b'{"created":"2026-12-07T21:00:00Z","data_key_commitment":"AAAAAAAAAAAAAAAAAAAAAAA'
    b'AAAAAAAAAAAAAAAAAAAA=","envelope_id":"0123456789abcdef0123456789abcdef","files":'
    b'[{"ciphertext_sha256":"ababababababababababababababababababababababababababababa'
    b'bababab","ciphertext_size":59,"path":"caf\xc3\xa9","size":3}],"format":"kmsflow.signed'
    b'-envelope","kind":"file","signer":{"algorithm":"EC_SIGN_P256_SHA256","crypto_key'
    b'_version":"projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7"},'
    b'"version":1}'
)


def test_records_and_statements_are_the_bytes_earlier_kmsflow_wrote() -> None:
    version = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7"
    record = EnvelopeRecord.model_validate(
        {
            "envelope_id": "0123456789abcdef0123456789abcdef",
            "kind": "dataset",
            "created": "2026-12-07T21:00:00Z",
            "key": {
                "crypto_key": version.split("/cryptoKeyVersions/")[0],
                "crypto_key_version": version,
                "wrapped_keyset": "AAECAwQ=",
                "wrapped_at": "2026-12-07T21:00:01Z",
                "wrap": "ml-kem-768",
                "encapsulated_key": "/////w==",
            },
            "manifest": "bWFuaWZlc3Q=",
            "files": [
                {"path": path, "size": size, "ciphertext_size": size + 56, "ciphertext_crc32c": "mnG7TA=="}
                for path, size in [('a\tb"c\\d', 0), ("caf\u00e9/\u2028\x7f", 10**19), ("\U0001f600", 1)]
            ],
        }
    )
    assert record.to_json() == WRITTEN_BEFORE
    assert EnvelopeRecord.from_json(WRITTEN_BEFORE, "r") == record
    statement = Statement.model_validate(
        {
            "envelope_id": "0123456789abcdef0123456789abcdef",
            "kind": "file",
            "created": "2026-12-07T21:00:00Z",
            "files": [
                {"path": "caf\u00e9", "size": 3, "ciphertext_size": 59, "ciphertext_sha256": "ab" * 32}
            ],
            "data_key_commitment": "A" * 43 + "=",
            "signer": {"crypto_key_version": version, "algorithm": "EC_SIGN_P256_SHA256"},
        }
    )
    assert statement.encode() == STATEMENT_BEFORE
    assert parse(STATEMENT_BEFORE, "s") == statement


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def outcome(parse: object) -> object:
    try:
        return parse()  # type: ignore[operator]
    except Exception as exc:
        return type(exc)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [*sorted(VALID), "key.crypto_key_version", "key.wrapped_keyset", "files.0", "files.0.size"]
    ),
    st.one_of(json_values, st.sampled_from(["1", 1.0, "AAA=", "AAAB", VERSION + "x", -1, 2**70])),
    st.booleans(),
)
def test_one_pass_parse_accepts_exactly_what_the_step_by_step_parse_accepts(
    field: str, value: object, delete: bool
) -> None:
    """``model_validate_json`` and ``from_json`` never accept (or read differently) a record that
    ``json`` + ``model_validate`` would refuse."""
    doc = json.loads(json.dumps(VALID))
    *parents, last = field.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if delete and isinstance(target, dict):
        target.pop(last, None)
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    data = json.dumps(doc, ensure_ascii=False).encode()
    step_by_step = outcome(lambda: EnvelopeRecord.model_validate(json.loads(data)))
    one_pass = outcome(lambda: EnvelopeRecord.model_validate_json(data))
    if isinstance(one_pass, EnvelopeRecord):
        assert one_pass == step_by_step
    via_from_json = outcome(lambda: EnvelopeRecord.from_json(data, "r"))
    if isinstance(step_by_step, EnvelopeRecord):
        assert via_from_json == step_by_step
    else:
        assert isinstance(via_from_json, type) and issubclass(via_from_json, EnvelopeError)
