"""Seal and check the manifest: the record's own authentication, under the envelope's data key.

The manifest is a Tink streaming AEAD ciphertext (AAD ``aad.manifest_aad``) of
``record.authenticated_view``: every record field except the manifest and the KMS-authenticated
wrapped keyset. A reader decrypts it and requires it to equal the record it is holding, so editing
any field (a file entry dropped, a size, the key version name, a date) is detected without trusting
the JSON. Whoever re-wraps the key holds the data key already and simply re-seals (:func:`reseal`).

Both directions use :meth:`DataKey.one_segment_primitive`: the same ciphertext as the key's own
1 MiB-segment primitive gives, without Tink clearing a 1 MiB buffer for a few hundred bytes.
"""

from __future__ import annotations

import io
from typing import Any

import tink

from kmsflow.envelope.aad import manifest_aad
from kmsflow.envelope.errors import TamperedError
from kmsflow.envelope.keyset import ONE_SEGMENT_OVERHEAD, DataKey
from kmsflow.envelope.record import (
    EnvelopeRecord,
    KeyWrap,
    RecipientWrap,
    authenticated_view,
    decode_b64,
    encode_b64,
    manifest_plaintext,
    parse_manifest,
)


def seal(key: DataKey, fields: dict[str, Any]) -> EnvelopeRecord:
    """The record for ``fields`` (all fields but ``manifest``), with its manifest sealed under ``key``."""
    draft = EnvelopeRecord.model_validate({**fields, "manifest": ""})  # normalized, defaults filled
    return _sealed(key, draft)


def reseal(key: DataKey, record: EnvelopeRecord, wrap: KeyWrap | RecipientWrap) -> EnvelopeRecord:
    """``record`` re-wrapped: its ``key`` replaced by ``wrap`` and its manifest sealed again.

    Nothing is validated again: ``record`` was when it was parsed (and its manifest checked by the
    caller), ``wrap`` when it was built. Rewrap calls this once per envelope.
    """
    return _sealed(key, record.model_copy(update={"key": wrap, "manifest": ""}))


def _sealed(key: DataKey, draft: EnvelopeRecord) -> EnvelopeRecord:
    plaintext = manifest_plaintext(draft.model_dump(mode="json"))
    buf = io.BytesIO()
    sink = _Keep(buf)
    primitive = key.one_segment_primitive(len(plaintext) + ONE_SEGMENT_OVERHEAD)
    with primitive.new_encrypting_stream(sink, manifest_aad(draft.envelope_id)) as enc:
        enc.write(plaintext)
    return draft.model_copy(update={"manifest": encode_b64(buf.getvalue())})


def check(key: DataKey, record: EnvelopeRecord, where: str) -> None:
    """Raise :class:`TamperedError` unless the manifest authenticates and equals the record."""
    try:
        sealed = decode_b64(record.manifest)
        primitive = key.one_segment_primitive(len(sealed))
        with primitive.new_decrypting_stream(io.BytesIO(sealed), manifest_aad(record.envelope_id)) as dec:
            manifest = parse_manifest(dec.read())
    except (tink.TinkError, ValueError):
        raise TamperedError(f"{where}: manifest failed authentication (record altered or swapped)") from None
    if manifest != authenticated_view(record.model_dump(mode="json")):
        raise TamperedError(f"{where}: record fields differ from its authenticated manifest (record edited)")


class _Keep(io.RawIOBase):
    """A BytesIO that survives Tink closing it."""

    def __init__(self, inner: io.BytesIO) -> None:
        super().__init__()
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self._inner.write(b)
