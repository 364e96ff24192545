"""Public keys of Cloud KMS key versions: fetched once (checked), and kept in self-describing files.

A producer that holds only a public key file encrypts without credentials or any KMS call, and a
consumer that only verifies a signature needs nothing else, so the file must say everything they
need and nothing they could get wrong silently: which exact CryptoKeyVersion it belongs to (the
record names it, and shredding counts by it), its algorithm, the key in the format kmsflow reads
it (:data:`KEY_FORMATS`: PEM for RSA recipients, DER for signing keys, NIST_PQC for ML-KEM and
ML-DSA, XWING_RAW_BYTES for X-Wing) and a CRC32C over all of these, so a truncated or corrupted
copy fails loudly instead of producing envelopes nobody can open. The file format (docs/FORMAT.md
§10, §12)::

    {"format": "kmsflow.public-key", "version": 1,
     "crypto_key_version": "projects/.../cryptoKeyVersions/3",
     "algorithm": "ML_KEM_768", "key_format": "NIST_PQC",
     "public_key": "<base64 of the key bytes; for PEM, of the PEM text>",
     "crc32c": "<base64 of CRC32C(version \\0 algorithm \\0 key_format \\0 key bytes)>"}

A CRC32C is no signature: whoever can write the file can replace the key. Keep public key files
where only their owner writes them, as you would a CA bundle; the consumer side never trusts them
(it unwraps through KMS, which holds the private half).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmsflow.kms.crc import crc32c
from kmsflow.kms.errors import KmsError, KmsIntegrityError, translate

if TYPE_CHECKING:
    from google.cloud import kms_v1

    from kmsflow.kms.public_key_cache import PublicKeyCache

FILE_FORMAT = "kmsflow.public-key"
FILE_VERSION = 1
MAX_FILE_SIZE = 64 << 10
"""Largest public key file read (bytes): an RSA-4096 PEM or an ML-KEM-1024 key is a few KiB."""

VERSION_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+/cryptoKeyVersions/[0-9]+$"
)
KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")

PEM, DER, NIST_PQC, XWING_RAW_BYTES = "PEM", "DER", "NIST_PQC", "XWING_RAW_BYTES"
"""The key formats of a public key file (``key_format``), named as ``GetPublicKey`` names them."""
RECIPIENT_FORMATS: dict[str, str] = {
    "RSA_DECRYPT_OAEP_2048_SHA256": "PEM",
    "RSA_DECRYPT_OAEP_3072_SHA256": "PEM",
    "RSA_DECRYPT_OAEP_4096_SHA256": "PEM",
    "RSA_DECRYPT_OAEP_4096_SHA512": "PEM",
    "ML_KEM_768": "NIST_PQC",
    "ML_KEM_1024": "NIST_PQC",
    "KEM_XWING": "XWING_RAW_BYTES",
}
"""The algorithms kmsflow writes recipient envelopes for, and the format their public key comes in.
RSA-OAEP with SHA-1 is left out on purpose: no new envelope should depend on SHA-1."""
SIGNING_FORMATS: dict[str, str] = {
    "EC_SIGN_P256_SHA256": "DER",
    "EC_SIGN_P384_SHA384": "DER",
    "RSA_SIGN_PSS_2048_SHA256": "DER",
    "RSA_SIGN_PSS_3072_SHA256": "DER",
    "RSA_SIGN_PSS_4096_SHA256": "DER",
    "PQ_SIGN_ML_DSA_44": "NIST_PQC",
    "PQ_SIGN_ML_DSA_65": "NIST_PQC",
    "PQ_SIGN_ML_DSA_87": "NIST_PQC",
}
"""The algorithms kmsflow signs envelopes with (``kmsflow.envelope.signature``), and their format."""
KEY_FORMATS: dict[str, str] = {**RECIPIENT_FORMATS, **SIGNING_FORMATS}

_FIELDS = ("format", "version", "crypto_key_version", "algorithm", "key_format", "public_key", "crc32c")


class PublicKeyError(KmsError):
    """A public key (file, cache entry or GetPublicKey answer) that cannot be trusted or used."""


@dataclass(frozen=True)
class PublicKey:
    """The public half of one CryptoKeyVersion, as Cloud KMS serves it.

    ``key`` holds the bytes in ``key_format``: the PEM text (UTF-8) for ``PEM``, the raw encoding
    for ``NIST_PQC`` (the FIPS 203 encapsulation key), ``pk_M || pk_X`` for ``XWING_RAW_BYTES``.
    """

    version_name: str
    algorithm: str
    key: bytes
    format: str

    def to_file_bytes(self) -> bytes:
        """The public key file (JSON, UTF-8, trailing newline)."""
        body = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "crypto_key_version": self.version_name,
            "algorithm": self.algorithm,
            "key_format": self.format,
            "public_key": base64.b64encode(self.key).decode("ascii"),
            "crc32c": base64.b64encode(self._checksum()).decode("ascii"),
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def from_file_bytes(cls, data: bytes, where: str) -> PublicKey:
        """Parse and check a public key file; ``where`` names it in errors.

        Refused (:class:`PublicKeyError`): anything but exactly the fields above, a newer format
        version, an algorithm kmsflow does not write envelopes for, a key format that does not go
        with it, non-canonical base64, or key bytes whose CRC32C differs.
        """
        if len(data) > MAX_FILE_SIZE:
            raise PublicKeyError(f"{where}: larger than {MAX_FILE_SIZE >> 10} KiB; not a public key file")
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise PublicKeyError(f"{where}: not a kmsflow public key file (not JSON)") from None
        if not isinstance(raw, dict) or raw.get("format") != FILE_FORMAT:
            raise PublicKeyError(f"{where}: not a kmsflow public key file (format is not {FILE_FORMAT!r})")
        version = raw.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FILE_VERSION:
            raise PublicKeyError(
                f"{where}: public key file version {version} is newer than this kmsflow "
                f"(supports {FILE_VERSION}); upgrade kmsflow"
            )
        if sorted(raw) != sorted(_FIELDS) or version != FILE_VERSION:
            fields = ", ".join(_FIELDS)
            raise PublicKeyError(f"{where}: public key file must hold exactly the fields {fields}")
        if not all(isinstance(raw[f], str) for f in _FIELDS if f != "version"):
            raise PublicKeyError(f"{where}: public key file fields must be strings")
        key = _b64(raw["public_key"], where, "public_key")
        public = cls(
            version_name=raw["crypto_key_version"],
            algorithm=raw["algorithm"],
            key=key,
            format=raw["key_format"],
        )
        if _b64(raw["crc32c"], where, "crc32c") != public._checksum():
            raise PublicKeyError(f"{where}: public key file CRC32C mismatch (file corrupted or edited)")
        return cls.checked(public.version_name, public.algorithm, key, public.format, where)

    def _checksum(self) -> bytes:
        """CRC32C of everything the file says, so a flipped bit in the version name (producers
        would write for a version nobody can open) fails as surely as one in the key:
        ``crypto_key_version \\0 algorithm \\0 key_format \\0 key bytes``, 4 bytes big-endian."""
        head = "\0".join((self.version_name, self.algorithm, self.format, "")).encode()
        return crc32c(head + self.key).to_bytes(4, "big")

    @classmethod
    def checked(cls, version_name: str, algorithm: str, key: bytes, key_format: str, where: str) -> PublicKey:
        """A :class:`PublicKey` whose name, algorithm and format fit together, else PublicKeyError."""
        if not VERSION_NAME.match(version_name):
            raise PublicKeyError(f"{where}: {version_name!r} is not a full CryptoKeyVersion name")
        wanted = KEY_FORMATS.get(algorithm)
        if wanted is None:
            raise PublicKeyError(
                f"{where}: kmsflow neither wraps for nor signs with {algorithm} keys (it uses: "
                f"{', '.join(KEY_FORMATS)})"
            )
        if key_format != wanted:
            raise PublicKeyError(f"{where}: a {algorithm} public key comes as {wanted}, not {key_format}")
        public = cls(version_name=version_name, algorithm=algorithm, key=key, format=key_format)
        public.load_key(where)
        return public

    def load_key(self, where: str) -> Any:
        """The key as a ``cryptography`` public key object; PublicKeyError if the bytes are not a
        key of :attr:`algorithm` (an RSA key of the size it names, for RSA recipients)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, rsa

        if self.algorithm in SIGNING_FORMATS:  # the exact checks are signature_valid's
            try:
                if self.algorithm.startswith("PQ_SIGN_ML_DSA_"):
                    level = self.algorithm.rsplit("_", 1)[-1]
                    loaders: dict[str, Any] = {
                        "44": mldsa.MLDSA44PublicKey,
                        "65": mldsa.MLDSA65PublicKey,
                        "87": mldsa.MLDSA87PublicKey,
                    }
                    return loaders[level].from_public_bytes(self.key)
                return serialization.load_der_public_key(self.key)
            except ValueError:
                raise PublicKeyError(f"{where}: not a {self.algorithm} public key") from None
        if self.algorithm == "KEM_XWING":
            from kmsflow.kms.xwing import XWingPublicKey

            try:
                return XWingPublicKey.from_public_bytes(self.key)
            except ValueError:
                raise PublicKeyError(f"{where}: not an X-Wing public key") from None
        if self.algorithm.startswith("ML_KEM_"):
            kem = mlkem.MLKEM768PublicKey if self.algorithm == "ML_KEM_768" else mlkem.MLKEM1024PublicKey
            try:
                return kem.from_public_bytes(self.key)
            except ValueError:
                raise PublicKeyError(f"{where}: not an {self.algorithm} encapsulation key") from None
        bits = int(self.algorithm.split("_")[3])
        try:
            loaded = serialization.load_pem_public_key(self.key)
        except ValueError:
            loaded = None
        if not isinstance(loaded, rsa.RSAPublicKey) or loaded.key_size != bits:
            raise PublicKeyError(f"{where}: not the RSA-{bits} PEM public key {self.algorithm} names")
        return loaded


def _b64(value: str, where: str, field: str) -> bytes:
    """Strict, canonical base64 (the same rule as envelope records: one spelling per value)."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = None
    if raw is None or base64.b64encode(raw).decode("ascii") != value:
        raise PublicKeyError(f"{where}: {field} is not canonical standard base64")
    return raw


def fetch_public_key(
    client: kms_v1.KeyManagementServiceClient, version_name: str, *, algorithm: str | None = None
) -> PublicKey:
    """One checked GetPublicKey for ``version_name`` (CRC32C of the key bytes, the name KMS answers
    for, an algorithm kmsflow uses, in the format that algorithm comes in), cached for the process
    per endpoint (a version's public key never changes; its name is unique within one KMS only).

    Post-quantum keys are served only in their own format, which must be asked for before the answer
    names the algorithm. Pass ``algorithm`` when a listing gave it already; else DER is asked first,
    then NIST_PQC and XWING_RAW_BYTES while KMS refuses the format, then once more in PEM for an RSA
    recipient key: GetPublicKey is all ``roles/cloudkms.publicKeyViewer`` allows
    (GetCryptoKeyVersion would need more).
    """
    if not VERSION_NAME.match(version_name):
        raise PublicKeyError(f"{version_name!r} is not a full CryptoKeyVersion name")
    memo = (getattr(client, "api_endpoint", None), version_name)
    with _LOCK:
        cached = _CACHE.get(memo)
    if cached is not None:
        return cached
    if algorithm is not None and algorithm not in KEY_FORMATS:
        raise PublicKeyError(
            f"{version_name}: kmsflow neither wraps for nor signs with {algorithm} keys (it uses: "
            f"{', '.join(KEY_FORMATS)})"
        )
    from google.api_core import exceptions as gexc

    action = f"get the public key of {version_name}"
    try:
        if algorithm is None:
            answered, key, key_format = _get_public_key_in_any(client, version_name)
            wanted = KEY_FORMATS.get(answered)
            if wanted is not None and wanted != key_format:  # an RSA recipient key: PEM
                answered, key, key_format = _get_public_key(client, version_name, wanted)
        else:
            answered, key, key_format = _get_public_key(client, version_name, KEY_FORMATS[algorithm])
            if answered != algorithm:
                raise KmsIntegrityError(
                    f"{action}: KMS answered with a {answered} key, the version is {algorithm}"
                )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    if answered not in KEY_FORMATS:  # asked by version alone: the caller refuses it by its algorithm
        return PublicKey(version_name=version_name, algorithm=answered, key=key, format=key_format)
    public = PublicKey.checked(version_name, answered, key, key_format, action)
    with _LOCK:
        _CACHE[memo] = public
    return public


def _get_public_key_in_any(
    client: kms_v1.KeyManagementServiceClient, version_name: str
) -> tuple[str, bytes, str]:
    """:func:`_get_public_key` in the first of DER, NIST_PQC, XWING_RAW_BYTES that KMS serves the
    version in (a wrong format is InvalidArgument; any other error is raised as it comes)."""
    from google.api_core import exceptions as gexc

    *first, last = (DER, NIST_PQC, XWING_RAW_BYTES)
    for key_format in first:
        try:
            return _get_public_key(client, version_name, key_format)
        except gexc.InvalidArgument:
            continue
    return _get_public_key(client, version_name, last)


def _get_public_key(
    client: kms_v1.KeyManagementServiceClient, version_name: str, key_format: str
) -> tuple[str, bytes, str]:
    """One GetPublicKey in ``key_format``: (algorithm KMS names, key bytes, format), its name and
    CRC32C checked (:class:`KmsIntegrityError` otherwise)."""
    from google.cloud import kms_v1

    from kmsflow.kms.crypto import default_retry

    action = f"get the public key of {version_name}"
    response = client.get_public_key(
        request={
            "name": version_name,
            "public_key_format": getattr(kms_v1.PublicKey.PublicKeyFormat, key_format),
        },
        retry=default_retry(),
    )
    if response.name != version_name:
        raise KmsIntegrityError(f"{action}: KMS answered for {response.name!r}")
    pb = type(response).pb(response)
    if key_format == "PEM":
        key = response.pem.encode()
        checksum = pb.pem_crc32c.value if pb.HasField("pem_crc32c") else None
    else:
        key = bytes(response.public_key.data)
        has = pb.HasField("public_key") and pb.public_key.HasField("crc32c_checksum")
        checksum = pb.public_key.crc32c_checksum.value if has else None
    if checksum is None or checksum != crc32c(key):
        raise KmsIntegrityError(f"{action}: the public key was corrupted in transit (CRC32C)")
    algorithm = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm(response.algorithm).name
    if algorithm.endswith("UNSPECIFIED"):
        raise KmsIntegrityError(f"{action}: KMS named no algorithm")
    return algorithm, key, key_format


def load(
    key_or_file: str,
    client: kms_v1.KeyManagementServiceClient | None = None,
    *,
    cache: PublicKeyCache | None = None,
) -> PublicKey:
    """The public key named by ``key_or_file``.

    A KMS resource name (``projects/...``) is a key: a CryptoKeyVersion, or a CryptoKey whose
    current version (:func:`kmsflow.kms.asymmetric.current_version`) is meant; its public key comes
    from ``cache`` when there, else from one checked GetPublicKey (then cached). Anything else is a
    public key file path (write ``./projects/...`` for a file under a directory named so): read and
    checked with no KMS call and no credentials.
    """
    if not names_a_key(key_or_file):
        return read_file(key_or_file)
    if not (KEY_NAME.match(key_or_file) or VERSION_NAME.match(key_or_file)):
        raise PublicKeyError(f"{key_or_file}: not a CryptoKey or CryptoKeyVersion resource name")
    if client is None:
        raise PublicKeyError(f"{key_or_file}: a KMS key name needs a KMS client (or give a public key file)")
    from kmsflow.kms.asymmetric import current_version

    algorithm: str | None = None
    if "/cryptoKeyVersions/" in key_or_file:
        version_name = key_or_file
    else:
        current = current_version(client, key_or_file)
        version_name, algorithm = current.name, current.algorithm.name
    if cache is not None:
        cached = cache.get(version_name)
        if cached is not None:
            return cached
    public = fetch_public_key(client, version_name, algorithm=algorithm)
    if cache is not None:
        cache.put(public)
    return public


def names_a_key(key_or_file: str) -> bool:
    """Whether ``key_or_file`` is a KMS resource name (``projects/...``), not a public key file."""
    return key_or_file.startswith("projects/")


def read_file(path: str) -> PublicKey:
    """Read and check the public key file at ``path`` (local; at most :data:`MAX_FILE_SIZE`)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise PublicKeyError(f"{path}: cannot read public key file ({exc.strerror or exc})") from None
    return PublicKey.from_file_bytes(data, path)


def is_crypto_key_name(name: str) -> bool:
    """True for a CryptoKey resource name (not a version, not a path)."""
    return bool(KEY_NAME.match(name)) and not os.path.exists(name)


def is_version_name(name: str) -> bool:
    """True for a full CryptoKeyVersion resource name."""
    return bool(VERSION_NAME.match(name))


_LOCK = threading.Lock()
_CACHE: dict[tuple[str | None, str], PublicKey] = {}


def clear_cache() -> None:
    """Forget every fetched key (tests; a long-lived process never needs it: keys are immutable)."""
    with _LOCK:
        _CACHE.clear()
