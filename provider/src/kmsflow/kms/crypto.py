"""Encrypt and Decrypt through Cloud KMS with CRC32C end to end and bounded retries.

These wrap small secrets (data keys, short values). Every request carries CRC32C checksums of its
payload; every response is checked against the checksums KMS returns, so corruption in either
direction is an error, never silently wrong bytes. Transient errors (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with jittered exponential backoff under a total
deadline, using ``google.api_core.retry.Retry`` rather than a hand-written loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import kms_v1

from kmsflow.kms.crc import crc32c
from kmsflow.kms.errors import KmsIntegrityError, is_credentials_failure, translate

TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.ResourceExhausted)


def is_transient(exc: BaseException) -> bool:
    """The retry predicate: a transient status, unless it is a credentials refresh failure.

    gRPC reports a failed token refresh as UNAVAILABLE; google-auth has already retried what it
    could, and retrying the call would only delay "no usable credentials" by the whole deadline.
    """
    return isinstance(exc, TRANSIENT) and not is_credentials_failure(exc)


_DEADLINE: ContextVar[float] = ContextVar("kmsflow_kms_deadline", default=60.0)


def default_retry(deadline: float | None = None) -> gretry.Retry:
    """Jittered exponential backoff (0.1 s doubling to 5 s) on transient codes, for ``deadline`` s.

    Without ``deadline``: the one :func:`retry_deadline` put in force here, else 60 s.
    """
    return gretry.Retry(
        predicate=is_transient,
        initial=0.1,
        maximum=5.0,
        multiplier=2.0,
        timeout=_DEADLINE.get() if deadline is None else deadline,
    )


@contextmanager
def retry_deadline(seconds: float) -> Iterator[None]:
    """Make ``seconds`` the retry deadline of every kmsflow KMS call made in this context.

    Why ambient rather than a parameter: resource, IAM and key-spec functions make their KMS calls
    several layers down, and the deadline belongs to whoever calls (an Airflow connection), not to
    each function. A ``ContextVar`` is per thread (and per asyncio task): a plain thread started
    inside the block does not inherit it, so kmsflow fans out over
    :class:`kmsflow.pools.ContextThreadPool`, which runs each task in a copy of the caller's context.
    """
    token = _DEADLINE.set(seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@dataclass(frozen=True)
class Wrapped:
    """A KMS ciphertext and the exact CryptoKeyVersion that produced it."""

    ciphertext: bytes
    key_version: str


def encrypt(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    plaintext: bytes,
    aad: bytes = b"",
    *,
    retry: gretry.Retry | None = None,
) -> Wrapped:
    """Encrypt ``plaintext`` under ``key_name`` (a CryptoKey: its primary; or a version)."""
    action = f"encrypt with {key_name}"
    try:
        response = client.encrypt(
            request={
                "name": key_name,
                "plaintext": plaintext,
                "plaintext_crc32c": crc32c(plaintext),
                "additional_authenticated_data": aad,
                "additional_authenticated_data_crc32c": crc32c(aad),
            },
            retry=retry or default_retry(),
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if not response.verified_plaintext_crc32c or not response.verified_additional_authenticated_data_crc32c:
        raise KmsIntegrityError(f"{action}: KMS did not verify the request checksums")
    if response.ciphertext_crc32c != crc32c(response.ciphertext):
        raise KmsIntegrityError(f"{action}: the ciphertext was corrupted in transit")
    return Wrapped(ciphertext=response.ciphertext, key_version=response.name)


def decrypt(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    ciphertext: bytes,
    aad: bytes = b"",
    *,
    retry: gretry.Retry | None = None,
) -> bytes:
    """Decrypt a ``ciphertext`` produced by any version of the CryptoKey ``key_name``."""
    action = f"decrypt with {key_name}"
    try:
        response = client.decrypt(
            request={
                "name": key_name,
                "ciphertext": ciphertext,
                "ciphertext_crc32c": crc32c(ciphertext),
                "additional_authenticated_data": aad,
                "additional_authenticated_data_crc32c": crc32c(aad),
            },
            retry=retry or default_retry(),
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if response.plaintext_crc32c != crc32c(response.plaintext):
        raise KmsIntegrityError(f"{action}: the plaintext was corrupted in transit")
    return bytes(response.plaintext)


def key_of(version_name: str) -> str:
    """The CryptoKey name of a CryptoKeyVersion name."""
    head, sep, _ = version_name.partition("/cryptoKeyVersions/")
    if not sep:
        raise ValueError(f"not a CryptoKeyVersion name: {version_name!r}")
    return head
