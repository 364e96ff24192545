"""The record's JSON spelling stays what ``json.dumps(indent=2, ensure_ascii=False)`` writes, for
any content: records written before and after the switch to pydantic's serializer are the same
bytes, and a human reading a sidecar sees one stable layout. Reading goes through pydantic's JSON
parser first: it must accept exactly what the step-by-step parse accepts."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope.errors import EnvelopeError
from kmsflow.envelope.record import EnvelopeRecord

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
    """``from_json`` validates with pydantic's JSON parser first; it must never accept (or read
    differently) a record that ``json`` + ``model_validate`` would refuse."""
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
