"""The record's JSON spelling stays what ``json.dumps(indent=2, ensure_ascii=False)`` writes, for
any content: records written before and after the switch to pydantic's serializer are the same
bytes, and a human reading a sidecar sees one stable layout."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope.record import EnvelopeRecord

VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"

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
)


@settings(max_examples=200)
@given(entries, st.sampled_from(["file", "dataset"]))
def test_to_json_is_the_json_module_spelling(files: list[dict[str, object]], kind: str) -> None:
    record = EnvelopeRecord.model_validate(
        {
            "envelope_id": "0" * 32,
            "kind": kind,
            "created": "2026-11-30T10:00:00Z",
            "key": {
                "crypto_key": VERSION.split("/cryptoKeyVersions/")[0],
                "crypto_key_version": VERSION,
                "wrapped_keyset": "AAAA",
                "wrapped_at": "2026-11-30T10:00:00Z",
            },
            "manifest": "AAAA",
            "files": files,
        }
    )
    expected = (json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n").encode()
    assert record.to_json() == expected
    assert json.loads(record.to_json()) == record.model_dump(mode="json")
