"""Encrypt and Decrypt through Cloud KMS with CRC32C end to end and bounded retries.

These wrap small secrets (data keys, short values). Every request carries CRC32C checksums of its
payload; every response is checked against the checksums KMS returns, so corruption in either
direction is an error, never silently wrong bytes. Transient errors (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with jittered exponential backoff under a total
deadline (:mod:`kmsflow.kms.backoff`). ``client`` is either path to KMS: the lean
:class:`~kmsflow.kms.dataplane.KmsDataClient` (the CLI's encrypt, decrypt and verify) or a
``google-cloud-kms`` client (an Airflow hook's); both answer with the same protobuf message, so one
set of checks serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.protobuf.wrappers_pb2 import Int64Value

from kmsflow.kms.backoff import INITIAL, MAXIMUM, MULTIPLIER, current_deadline, is_transient
from kmsflow.kms.crc import crc32c
from kmsflow.kms.dataplane import KmsDataClient
from kmsflow.kms.errors import KmsIntegrityError, translate

if TYPE_CHECKING:
    from google.api_core import retry as gretry
    from google.cloud import kms_v1

    CryptoClient = KmsDataClient | kms_v1.KeyManagementServiceClient
    """Either path to Encrypt/Decrypt: the lean :class:`KmsDataClient` or ``google-cloud-kms``'s."""


def default_retry(deadline: float | None = None) -> gretry.Retry:
    """:mod:`kmsflow.kms.backoff`'s policy as a ``google.api_core`` ``Retry``, for ``google-cloud-kms``
    calls: jittered exponential backoff (0.1 s doubling to 5 s) on transient codes, for ``deadline``
    s (without it: the one :func:`retry_deadline` put in force, else 60 s).
    """
    from google.api_core import retry as gretry

    return gretry.Retry(
        predicate=is_transient,
        initial=INITIAL,
        maximum=MAXIMUM,
        multiplier=MULTIPLIER,
        timeout=current_deadline() if deadline is None else deadline,
    )


def _call(client: CryptoClient, method: str, request: dict[str, Any], retry: gretry.Retry | None) -> Any:
    """The raw protobuf response of ``method`` ("encrypt", "decrypt") through either client, so the
    checks below read the same message type whichever path answered."""
    if isinstance(client, KmsDataClient):
        return getattr(client, method)(request, retry=retry)
    answer = getattr(client, method)(request=request, retry=retry or default_retry())
    return type(answer).pb(answer)


@dataclass(frozen=True)
class Wrapped:
    """A KMS ciphertext and the exact CryptoKeyVersion that produced it."""

    ciphertext: bytes
    key_version: str


def encrypt(
    client: CryptoClient,
    key_name: str,
    plaintext: bytes,
    aad: bytes = b"",
    *,
    retry: gretry.Retry | None = None,
) -> Wrapped:
    """Encrypt ``plaintext`` under ``key_name`` (a CryptoKey: its primary; or a version)."""
    action = f"encrypt with {key_name}"
    request = {
        "name": key_name,
        "plaintext": plaintext,
        "plaintext_crc32c": Int64Value(value=crc32c(plaintext)),
        "additional_authenticated_data": aad,
        "additional_authenticated_data_crc32c": Int64Value(value=crc32c(aad)),
    }
    try:
        response = _call(client, "encrypt", request, retry)
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if not response.verified_plaintext_crc32c or not response.verified_additional_authenticated_data_crc32c:
        raise KmsIntegrityError(f"{action}: KMS did not verify the request checksums")
    if not crc_matches(response, "ciphertext"):
        raise KmsIntegrityError(f"{action}: the ciphertext was corrupted in transit")
    return Wrapped(ciphertext=response.ciphertext, key_version=response.name)


def decrypt(
    client: CryptoClient,
    key_name: str,
    ciphertext: bytes,
    aad: bytes = b"",
    *,
    retry: gretry.Retry | None = None,
) -> bytes:
    """Decrypt a ``ciphertext`` produced by any version of the CryptoKey ``key_name``."""
    action = f"decrypt with {key_name}"
    request = {
        "name": key_name,
        "ciphertext": ciphertext,
        "ciphertext_crc32c": Int64Value(value=crc32c(ciphertext)),
        "additional_authenticated_data": aad,
        "additional_authenticated_data_crc32c": Int64Value(value=crc32c(aad)),
    }
    try:
        response = _call(client, "decrypt", request, retry)
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if not crc_matches(response, "plaintext"):
        raise KmsIntegrityError(f"{action}: the plaintext was corrupted in transit")
    return bytes(response.plaintext)


def crc_matches(response: Any, field: str) -> bool:
    """Whether the response carries ``<field>_crc32c`` and it is the CRC32C of ``<field>``."""
    checksum = f"{field}_crc32c"
    return bool(response.HasField(checksum)) and getattr(response, checksum).value == crc32c(
        getattr(response, field)
    )


def key_of(version_name: str) -> str:
    """The CryptoKey name of a CryptoKeyVersion name."""
    head, sep, _ = version_name.partition("/cryptoKeyVersions/")
    if not sep:
        raise ValueError(f"not a CryptoKeyVersion name: {version_name!r}")
    return head
