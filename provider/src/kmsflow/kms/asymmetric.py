"""Cloud KMS calls for recipient keys (ASYMMETRIC_DECRYPT, KEY_ENCAPSULATION): CRC32C end to end.

``AsymmetricDecrypt`` and ``Decapsulate`` return a secret; like :mod:`kmsflow.kms.crypto`, every
request carries the CRC32C of its ciphertext, KMS must say it verified it, and the answer's CRC32C
is checked, so corruption on the wire is an error, never a wrong key. Both go through the lean data
path (``kmsflow.kms.dataplane``), like Encrypt and Decrypt, whichever client the caller holds.
Transient errors are retried under the same deadline.

Such keys have no primary version. kmsflow's **current version** of a recipient key, the one
producers wrap for and rewrap moves envelopes to, is its newest ENABLED version (highest version
number). Why not a field in the key spec: producers holding only a public key file never read the
spec, and every consumer, rewrap and shred run must agree without sharing anything but KMS itself.
Rotating = creating a version (:func:`add_version`); retiring the old one = disabling it once
rewrap moved every envelope off it (the shred DAG's proof), which also makes it non-current.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import kms_v1
from google.protobuf.wrappers_pb2 import Int64Value

from kmsflow.kms.crc import crc32c
from kmsflow.kms.crypto import crc_matches, default_retry
from kmsflow.kms.dataplane import data_client
from kmsflow.kms.errors import KmsError, KmsIntegrityError, translate
from kmsflow.kms.resources import CryptoKeyVersion, VersionState, list_versions

if TYPE_CHECKING:
    from kmsflow.kms.crypto import CryptoClient

Purpose = kms_v1.CryptoKey.CryptoKeyPurpose
RECIPIENT_PURPOSES = (Purpose.ASYMMETRIC_DECRYPT, Purpose.KEY_ENCAPSULATION)


class NoCurrentVersionError(KmsError):
    """A recipient key has no ENABLED version to wrap for (all disabled, destroyed or pending)."""


def version_number(version_name: str) -> int:
    """The id of a CryptoKeyVersion name (``.../cryptoKeyVersions/7`` -> 7)."""
    return int(version_name.rsplit("/", 1)[1])


def newest_enabled(versions: Iterable[CryptoKeyVersion]) -> CryptoKeyVersion | None:
    """The current version among ``versions`` of a recipient key (any order): the newest ENABLED."""
    enabled = [v for v in versions if v.state == VersionState.ENABLED]
    return max(enabled, key=lambda v: version_number(v.name)) if enabled else None


def current_version(client: kms_v1.KeyManagementServiceClient, key_name: str) -> CryptoKeyVersion:
    """The newest ENABLED version of the recipient key ``key_name`` (one ListCryptoKeyVersions)."""
    current = newest_enabled(list_versions(client, key_name, states=[VersionState.ENABLED]))
    if current is None:
        raise NoCurrentVersionError(
            f"{key_name} has no ENABLED version to wrap for (a new version may still be "
            "PENDING_GENERATION; retry shortly)"
        )
    return current


def add_version(client: kms_v1.KeyManagementServiceClient, key_name: str) -> CryptoKeyVersion:
    """Create a new version of a recipient key (its rotation: there is no primary to set).

    Cloud KMS generates it asynchronously (PENDING_GENERATION, then ENABLED); it becomes current
    once ENABLED, and older versions stay ENABLED, so every envelope still opens.
    """
    try:
        return client.create_crypto_key_version(
            request={"parent": key_name, "crypto_key_version": {}}, retry=default_retry()
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"create a version of {key_name}") from exc


def asymmetric_decrypt(
    client: CryptoClient,
    version_name: str,
    ciphertext: bytes,
    *,
    retry: gretry.Retry | None = None,
) -> bytes:
    """RSA-OAEP decryption of ``ciphertext`` by the KMS-held private key of ``version_name``."""
    action = f"asymmetric-decrypt with {version_name}"
    response = _unwrap_call(client, "asymmetric_decrypt", action, version_name, ciphertext, retry)
    if not crc_matches(response, "plaintext"):
        raise KmsIntegrityError(f"{action}: the plaintext was corrupted in transit")
    return bytes(response.plaintext)


def decapsulate(
    client: CryptoClient,
    version_name: str,
    ciphertext: bytes,
    *,
    retry: gretry.Retry | None = None,
) -> bytes:
    """The shared secret KMS decapsulates from ``ciphertext`` with the private key of ``version_name``."""
    action = f"decapsulate with {version_name}"
    response = _unwrap_call(client, "decapsulate", action, version_name, ciphertext, retry)
    if response.name and response.name != version_name:
        raise KmsIntegrityError(f"{action}: KMS answered for {response.name!r}")
    # DecapsulateResponse's checksum is a proto3 optional int64, not an Int64Value wrapper.
    secret_crc = response.shared_secret_crc32c
    if not response.HasField("shared_secret_crc32c") or secret_crc != crc32c(response.shared_secret):
        raise KmsIntegrityError(f"{action}: the shared secret was corrupted in transit")
    return bytes(response.shared_secret)


def _unwrap_call(
    client: CryptoClient,
    method: str,
    action: str,
    version_name: str,
    ciphertext: bytes,
    retry: gretry.Retry | None,
) -> Any:
    """One AsymmetricDecrypt or Decapsulate through the lean data path, its request checksummed and
    KMS's verification of it required; the raw response, for the caller's own checks."""
    request = {
        "name": version_name,
        "ciphertext": ciphertext,
        "ciphertext_crc32c": Int64Value(value=crc32c(ciphertext)),
    }
    try:
        response = getattr(data_client(client), method)(request, retry=retry)
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if not response.verified_ciphertext_crc32c:
        raise KmsIntegrityError(f"{action}: KMS did not verify the request checksum")
    return response
