"""Public keys of asymmetric Cloud KMS versions: fetched and checked once, or read from a file.

A producer that only encrypts to a recipient, and a consumer that only verifies a signature, need
nothing from Cloud KMS but a version's public key, which never changes for the life of the
version. So it is fetched with one ``GetPublicKey``, checked (CRC32C of the bytes, the version name
and the algorithm the service answered), cached per version for the process, and can be written to
a self-describing **public key file** that works offline: JSON naming the version, the algorithm,
the key format, the key bytes and their CRC32C (docs/FORMAT.md §10).

Key bytes are DER ``SubjectPublicKeyInfo`` for RSA and EC keys and the raw NIST encoding
(``NIST_PQC``) for post-quantum ones, exactly what ``cryptography`` loads
(``load_der_public_key``, ``MLDSA65PublicKey.from_public_bytes``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kmsflow.kms.crc import crc32c
from kmsflow.kms.errors import KmsIntegrityError

if TYPE_CHECKING:
    from google.cloud import kms_v1

FILE_FORMAT = "kmsflow.public-key"
FILE_VERSION = 1
DER = "DER"
NIST_PQC = "NIST_PQC"
MAX_FILE_SIZE = 64 << 10
"""A public key file is a few KiB at most (an ML-DSA-87 key is 2,592 bytes); larger is not one."""
_VERSION_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+/cryptoKeyVersions/[^/]+$"
)
_KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")


class PublicKeyError(ValueError):
    """A public key file that is not one, or a key that is not what it claims (one-line reason)."""


@dataclass(frozen=True)
class PublicKey:
    """The public half of one CryptoKeyVersion: ``key`` in ``format`` (``DER`` or ``NIST_PQC``)."""

    version_name: str
    algorithm: str
    key: bytes
    format: str

    def to_file_bytes(self) -> bytes:
        """The public key file: JSON, UTF-8, a trailing newline."""
        body = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "crypto_key_version": self.version_name,
            "algorithm": self.algorithm,
            "key_format": self.format,
            "public_key": base64.b64encode(self.key).decode("ascii"),
            "crc32c": _crc32c_b64(self.key),
        }
        return json.dumps(body, indent=2).encode() + b"\n"

    @classmethod
    def from_file_bytes(cls, data: bytes, where: str) -> PublicKey:
        """Parse a public key file; :class:`PublicKeyError` naming ``where`` for anything else."""
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise PublicKeyError(f"{where}: not a kmsflow public key file (not JSON)") from None
        if not isinstance(body, dict) or body.get("format") != FILE_FORMAT:
            raise PublicKeyError(f"{where}: not a kmsflow public key file (format is not {FILE_FORMAT!r})")
        if body.get("version") != FILE_VERSION:
            raise PublicKeyError(f"{where}: public key file version {body.get('version')!r} is not supported")
        fields = ("crypto_key_version", "algorithm", "key_format", "public_key", "crc32c")
        if set(body) != {"format", "version", *fields} or not all(isinstance(body[f], str) for f in fields):
            names = ", ".join(fields)
            raise PublicKeyError(f"{where}: public key file fields must be exactly {names} (text)")
        if not _VERSION_NAME.match(body["crypto_key_version"]):
            raise PublicKeyError(f"{where}: crypto_key_version is not a full CryptoKeyVersion name")
        if body["key_format"] not in (DER, NIST_PQC):
            raise PublicKeyError(f"{where}: key_format must be {DER} or {NIST_PQC}")
        try:
            key = base64.b64decode(body["public_key"], validate=True)
        except (binascii.Error, ValueError):
            raise PublicKeyError(f"{where}: public_key is not base64") from None
        if body["crc32c"] != _crc32c_b64(key):
            raise PublicKeyError(f"{where}: public key CRC32C mismatch (file corrupted)")
        return cls(body["crypto_key_version"], body["algorithm"], key, body["key_format"])


def fetch_public_key(client: kms_v1.KeyManagementServiceClient, version_name: str) -> PublicKey:
    """One ``GetPublicKey`` of ``version_name``, checked, then cached for this process.

    Checked: the name the service answered equals the one asked, the algorithm is a known one, and
    the key bytes match the CRC32C sent with them (else :class:`KmsIntegrityError`). KMS errors
    (permission, version disabled, not found) come through ``kmsflow.kms.errors`` types.
    """
    with _LOCK:
        cached = _CACHE.get(version_name)
    if cached is not None:
        return cached
    from google.api_core import exceptions as gexc
    from google.cloud import kms_v1

    from kmsflow.kms.crypto import default_retry
    from kmsflow.kms.errors import translate

    algorithms = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
    formats = kms_v1.PublicKey.PublicKeyFormat
    action = f"get the public key of {version_name}"
    # RSA and EC keys are served as DER, post-quantum ones only as NIST_PQC, and the format must be
    # chosen before the answer names the algorithm: DER first, NIST_PQC if KMS refuses it (one
    # extra call, once per version). Asking GetCryptoKeyVersion would need more than publicKeyViewer.
    for key_format, wanted in ((DER, formats.DER), (NIST_PQC, formats.NIST_PQC)):
        try:
            response = client.get_public_key(
                request={"name": version_name, "public_key_format": wanted},
                retry=default_retry(),
            )
            break
        except gexc.InvalidArgument as exc:
            if key_format == NIST_PQC:
                raise translate(exc, action) from exc
        except gexc.GoogleAPIError as exc:
            raise translate(exc, action) from exc
    data = bytes(response.public_key.data)
    if response.name != version_name:
        raise KmsIntegrityError(f"{action}: KMS answered for {response.name!r}")
    if response.public_key.crc32c_checksum != crc32c(data):  # None (absent) differs too
        raise KmsIntegrityError(f"{action}: the public key was corrupted in transit (CRC32C)")
    algorithm = algorithms(response.algorithm).name
    if algorithm.endswith("UNSPECIFIED"):
        raise KmsIntegrityError(f"{action}: KMS named no algorithm")
    public = PublicKey(version_name, algorithm, data, key_format)
    with _LOCK:
        _CACHE[version_name] = public
    return public


def load(key_or_file: str, client: kms_v1.KeyManagementServiceClient | None = None) -> PublicKey:
    """The public key named by ``key_or_file``: a public key file (read, no KMS call), or a
    CryptoKeyVersion name (fetched with ``client``, see :func:`fetch_public_key`).

    A CryptoKey name is refused here: which of its versions applies depends on the caller (see
    :func:`is_crypto_key_name`).
    """
    if _VERSION_NAME.match(key_or_file):
        if client is None:
            raise PublicKeyError(f"{key_or_file}: a key version needs a KMS client; give a public key file")
        return fetch_public_key(client, key_or_file)
    if _KEY_NAME.match(key_or_file):
        raise PublicKeyError(f"{key_or_file}: a CryptoKey, not a version; name the CryptoKeyVersion")
    try:
        with open(key_or_file, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise PublicKeyError(
            f"{key_or_file}: cannot read public key file ({exc.strerror or type(exc).__name__}); "
            "give a file written by `kmsflow pubkey export` or a CryptoKeyVersion name"
        ) from None
    if len(data) > MAX_FILE_SIZE:
        raise PublicKeyError(f"{key_or_file}: larger than any public key file ({MAX_FILE_SIZE >> 10} KiB)")
    return PublicKey.from_file_bytes(data, key_or_file)


def is_crypto_key_name(name: str) -> bool:
    """True for a CryptoKey resource name (not a version, not a path)."""
    return bool(_KEY_NAME.match(name)) and not os.path.exists(name)


def is_version_name(name: str) -> bool:
    """True for a full CryptoKeyVersion resource name."""
    return bool(_VERSION_NAME.match(name))


def _crc32c_b64(data: bytes) -> str:
    """The CRC32C of ``data`` as GCS and the envelope record spell one: base64 of 4 big-endian bytes."""
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode("ascii")


_LOCK = threading.Lock()
_CACHE: dict[str, PublicKey] = {}


def clear_cache() -> None:
    """Forget every fetched key (tests; a long-lived process never needs it: keys are immutable)."""
    with _LOCK:
        _CACHE.clear()
