"""``manifest.reseal`` (rewrap's fast path) must produce what ``manifest.seal`` would for the same
fields: a record that reads back, whose manifest authenticates it, naming the new wrap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope import DataKey, TamperedError, manifest
from kmsflow.envelope.record import EnvelopeRecord, KeyWrap

KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


def wrap(version: int, wrapped: str) -> KeyWrap:
    return KeyWrap(
        crypto_key=KEY,
        crypto_key_version=f"{KEY}/cryptoKeyVersions/{version}",
        wrapped_keyset=wrapped,
        wrapped_at=f"2026-11-{version:02}T10:00:00Z",
    )


paths = st.lists(
    st.text("abcxyz_-é", min_size=1, max_size=8).map(lambda s: f"d/{s}"), min_size=1, max_size=5, unique=True
).map(sorted)  # as writers list them


@settings(max_examples=40, deadline=None)
@given(paths=paths, sizes=st.lists(st.integers(0, 10**12), min_size=5, max_size=5))
def test_reseal_equals_seal_with_the_new_wrap(paths: list[str], sizes: list[int]) -> None:
    key = DataKey.generate()
    fields = {
        "envelope_id": "ab" * 16,
        "kind": "dataset",
        "created": "2026-11-01T10:00:00Z",
        "key": wrap(1, "QUFB").model_dump(mode="json"),
        "files": [
            {"path": p, "size": s, "ciphertext_size": s + 40, "ciphertext_crc32c": "AAAAAA=="}
            for p, s in zip(paths, sizes, strict=False)
        ],
    }
    old = manifest.seal(key, fields)
    new_wrap = wrap(2, "QkJC")

    resealed = manifest.reseal(key, old, new_wrap)

    sealed = manifest.seal(key, {**fields, "key": new_wrap.model_dump(mode="json")})
    assert resealed.model_dump(exclude={"manifest"}) == sealed.model_dump(exclude={"manifest"})
    assert resealed.key == new_wrap and resealed.manifest != old.manifest
    back = EnvelopeRecord.from_json(resealed.to_json(), "r")
    assert back == resealed
    manifest.check(key, back, "r")  # authenticates, names version 2
    with pytest.raises(TamperedError):  # and the old manifest no longer fits the record
        manifest.check(key, back.model_copy(update={"manifest": old.manifest}), "r")
    with pytest.raises(TamperedError):  # sealed under this envelope's key only
        manifest.check(DataKey.generate(), back, "r")
