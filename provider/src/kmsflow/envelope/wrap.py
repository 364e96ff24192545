"""Wrap and unwrap the data key with Cloud KMS: exactly one KMS call per envelope either way.

The KMS associated data binds the format version and the envelope id (see ``aad.keyset_aad``), so a
wrapped keyset moved into another envelope's record, or a record whose id was edited, is refused
by KMS itself. A KMS "invalid argument" on Decrypt therefore means the record was altered (or names
the wrong key) and is reported as :class:`TamperedError`; other KMS errors (permission denied,
version disabled or destroyed, unavailable) pass through with their own types.

Both calls go through the lean data path (:func:`kmsflow.kms.dataplane.data_client`), whichever
client the caller holds: a ``google-cloud-kms`` client lends it its channel.

Unwrapping dispatches on the record's ``key``: a recipient wrap (public-key envelope) is opened by
``kmsflow.envelope.recipient`` with the same guarantees, so every reader goes through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmsflow.clock import record_time
from kmsflow.envelope.aad import keyset_aad
from kmsflow.envelope.errors import TamperedError
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.record import KeyWrap, RecipientWrap, encode_b64
from kmsflow.kms import crypto
from kmsflow.kms.dataplane import data_client
from kmsflow.kms.errors import KmsInvalidArgumentError

if TYPE_CHECKING:
    from google.api_core.retry import Retry

    from kmsflow.kms.crypto import CryptoClient


def wrap_key(
    client: CryptoClient,
    key_name: str,
    key: DataKey,
    envelope_id: str,
    *,
    retry: Retry | None = None,
) -> KeyWrap:
    """One KMS Encrypt of the serialized keyset under ``key_name`` (its current primary version).

    ``retry`` bounds how long transient KMS errors are retried (``crypto.default_retry()`` if None),
    so a caller with its own deadline, such as an Airflow connection's, gets it honoured here.
    """
    return key_wrap(wrap_keyset(client, key_name, key.serialize(), envelope_id, retry=retry))


def wrap_keyset(
    client: CryptoClient,
    key_name: str,
    keyset: bytes,
    envelope_id: str,
    *,
    retry: Retry | None = None,
) -> crypto.Wrapped:
    """:func:`wrap_key` for a keyset already serialized (as :func:`unwrap_keyset` returns it), without
    building the record's :class:`KeyWrap` (:func:`key_wrap` does).

    Why separate: rewrap wraps the exact bytes it unwrapped, and runs its KMS calls back to back with
    no other work between them (see ``kmsflow.lifecycle.rewrap``).
    """
    return crypto.encrypt(data_client(client), key_name, keyset, keyset_aad(envelope_id), retry=retry)


def key_wrap(wrapped: crypto.Wrapped) -> KeyWrap:
    """The record's ``key`` for a keyset KMS has just wrapped."""
    return KeyWrap(
        crypto_key=crypto.key_of(wrapped.key_version),
        crypto_key_version=wrapped.key_version,
        wrapped_keyset=encode_b64(wrapped.ciphertext),
        wrapped_at=record_time(),
    )


def unwrap_key(
    client: CryptoClient,
    wrap: KeyWrap | RecipientWrap,
    envelope_id: str,
    where: str,
    *,
    retry: Retry | None = None,
) -> DataKey:
    """One KMS Decrypt of the wrapped keyset; the result stays in memory only.

    ``retry`` as for :func:`wrap_key` (None: ``crypto.default_retry()``).
    """
    return DataKey.parse(unwrap_keyset(client, wrap, envelope_id, where, retry=retry))


def unwrap_keyset(
    client: CryptoClient,
    wrap: KeyWrap | RecipientWrap,
    envelope_id: str,
    where: str,
    *,
    retry: Retry | None = None,
) -> bytes:
    """:func:`unwrap_key` without parsing: the serialized keyset, secret, in memory only.

    Not yet known to be a keyset: whoever uses it as one must :meth:`DataKey.parse` it first.
    """
    if isinstance(wrap, RecipientWrap):
        from kmsflow.envelope import recipient

        return recipient.unwrap_keyset(client, wrap, envelope_id, where, retry=retry)
    if crypto.key_of(wrap.crypto_key_version) != wrap.crypto_key:
        raise TamperedError(
            f"{where}: record names key version {wrap.crypto_key_version} outside {wrap.crypto_key}"
        )
    try:
        return crypto.decrypt(
            data_client(client), wrap.crypto_key, wrap.wrapped_bytes(), keyset_aad(envelope_id), retry=retry
        )
    except KmsInvalidArgumentError as exc:
        raise TamperedError(
            f"{where}: KMS refused to unwrap the data key of envelope {envelope_id} "
            f"(wrapped key or envelope id altered, or record moved between envelopes): {exc}"
        ) from None
