"""Signed envelopes: a Cloud KMS signing key vouches for an envelope, anyone verifies it offline.

The signature record (docs/FORMAT.md §10) sits beside the envelope record
(``layout.signature_location``) and holds two things: the exact bytes of the signed
:class:`~kmsflow.envelope.statement.Statement` and the signature over
``statement.signed_message(those bytes)``. Everything a verifier relies on is inside the signed
bytes (the signer's version and algorithm too); nothing outside them is trusted.

Signing needs the data key (for the key commitment) and the ciphertext digests:
:func:`sign_envelope` unwraps the key and authenticates every byte of an existing envelope while
hashing it (one read); ``encrypt --sign-with`` hashes the ciphertext as it writes it
(``kmsflow.envelope.encrypt``). Either way the signature KMS returns is verified with the public
key before it is written, and the signature record is published atomically.

Verifying (:func:`verify_signature`) needs only the public key (a public key file: no KMS call at
all) and read access to the files: the signature, then the statement against the record (what a
rewrap keeps), then the listing and each ciphertext's size and SHA-256 against the statement. With
the data key at hand (``key=``, after a KMS unwrap), the key commitment is checked too.

Algorithms: EC P-256/SHA-256, EC P-384/SHA-384, RSA-PSS 2048/3072/4096 with SHA-256 (the message
digest sent to KMS, as it requires for these), and ML-DSA-44/65/87 (the message itself sent, as
Cloud KMS signs data for ML-DSA).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmsflow.envelope.aad import commitment_info
from kmsflow.envelope.errors import (
    DestinationExistsError,
    EnvelopeIOError,
    RecordInvalidError,
    SignatureError,
    SignatureNotFoundError,
    TamperedError,
    UnsupportedSignerError,
    os_reason,
)
from kmsflow.envelope.layout import signature_location
from kmsflow.envelope.record import EnvelopeRecord, decode_b64, encode_b64
from kmsflow.envelope.statement import SignedFile, Signer, Statement, parse, signed_message
from kmsflow.envelope.storage import CHUNK_SIZE
from kmsflow.kms.public_key import PublicKey, fetch_public_key, is_crypto_key_name, is_version_name, load

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import kms_v1

    from kmsflow.envelope.envelope import Envelope
    from kmsflow.envelope.keyset import DataKey
    from kmsflow.envelope.progress import Progress
    from kmsflow.kms.crypto import CryptoClient

SIGNATURE_FORMAT = "kmsflow.signature"
MAX_SIGNATURE_RECORD_SIZE = 256 << 20
"""The largest signature record a reader accepts: the statement of a dataset at the format's file
limit, base64-encoded, and a signature of a few KiB (ML-DSA-87: 4,627 bytes)."""

DIGESTS: dict[str, str | None] = {
    "EC_SIGN_P256_SHA256": "sha256",
    "EC_SIGN_P384_SHA384": "sha384",
    "RSA_SIGN_PSS_2048_SHA256": "sha256",
    "RSA_SIGN_PSS_3072_SHA256": "sha256",
    "RSA_SIGN_PSS_4096_SHA256": "sha256",
    "PQ_SIGN_ML_DSA_44": None,
    "PQ_SIGN_ML_DSA_65": None,
    "PQ_SIGN_ML_DSA_87": None,
}
"""The Cloud KMS algorithms kmsflow signs with, and the digest KMS is sent (None: the message)."""


@dataclass(frozen=True)
class SignatureRecord:
    """The signed statement's exact bytes and the signature over their signed message."""

    statement: bytes
    signature: bytes

    def to_json(self) -> bytes:
        body = {
            "format": SIGNATURE_FORMAT,
            "version": 1,
            "statement": encode_b64(self.statement),
            "signature": encode_b64(self.signature),
        }
        return json.dumps(body, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> SignatureRecord:
        """Parse; :class:`RecordInvalidError` naming ``where`` for anything but a signature record."""
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RecordInvalidError(f"{where}: not a kmsflow signature record (not JSON)") from None
        if not isinstance(body, dict) or body.get("format") != SIGNATURE_FORMAT:
            raise RecordInvalidError(f"{where}: not a kmsflow signature record")
        if body.get("version") != 1:
            version = body.get("version")
            raise RecordInvalidError(f"{where}: signature record version {version!r} is not supported")
        if set(body) != {"format", "version", "statement", "signature"}:
            fields = "format, version, statement, signature"
            raise RecordInvalidError(f"{where}: signature record fields must be exactly {fields}")
        statement, signature = body["statement"], body["signature"]
        try:
            if not isinstance(statement, str) or not isinstance(signature, str):
                raise ValueError("not text")
            return cls(decode_b64(statement), decode_b64(signature))
        except ValueError:
            raise RecordInvalidError(f"{where}: statement and signature must be canonical base64") from None


# ----------------------------------------------------------------------------- signing


def signing_client(client: CryptoClient) -> kms_v1.KeyManagementServiceClient:
    """``client`` as google-cloud-kms's: signing lists a key's versions and signs through it. The
    lean data client (:mod:`kmsflow.kms.dataplane`) serves only the data calls of encrypt/decrypt."""
    from kmsflow.kms.dataplane import KmsDataClient

    if isinstance(client, KmsDataClient):
        raise TypeError("signing needs a google-cloud-kms client (kmsflow.kms.client.new_kms_client)")
    return client


def signing_key(client: kms_v1.KeyManagementServiceClient, key: str) -> PublicKey:
    """The public key of the version that signs for ``key``, checked to be one kmsflow signs with.

    ``key`` is a CryptoKeyVersion, or a CryptoKey: then its newest ENABLED version signs (signing
    keys have no primary; rotating one is creating a new version, which signs from then on).
    IAM: ``roles/cloudkms.publicKeyViewer`` for the public key (every signature is checked with it
    before it is written) besides ``roles/cloudkms.signer``; a CryptoKey name also needs
    ``cloudkms.cryptoKeyVersions.list`` (``roles/cloudkms.viewer``) to find its versions.
    """
    version = key if is_version_name(key) else _newest_enabled(client, key)
    public = fetch_public_key(client, version)
    if public.algorithm not in DIGESTS:
        raise UnsupportedSignerError(
            f"{version}: {public.algorithm} is not an algorithm kmsflow signs with "
            f"(one of {', '.join(DIGESTS)})"
        )
    return public


def _newest_enabled(client: kms_v1.KeyManagementServiceClient, key: str) -> str:
    from google.api_core import exceptions as gexc
    from google.cloud import kms_v1

    from kmsflow.kms.crypto import default_retry
    from kmsflow.kms.errors import translate

    if not is_crypto_key_name(key):
        raise UnsupportedSignerError(f"{key!r}: not a CryptoKey or CryptoKeyVersion resource name")
    enabled = kms_v1.CryptoKeyVersion.CryptoKeyVersionState.ENABLED
    try:
        versions = [
            v.name
            for v in client.list_crypto_key_versions(request={"parent": key}, retry=default_retry())
            if v.state == enabled
        ]
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"list the versions of {key}") from exc
    if not versions:
        raise UnsupportedSignerError(f"{key}: no ENABLED version to sign with")
    return max(versions, key=lambda name: int(name.rsplit("/", 1)[-1]))


def make_statement(
    record: EnvelopeRecord, sha256: dict[str, str], key: DataKey, signer: PublicKey
) -> Statement:
    """The statement for ``record``, whose files' ciphertexts hash to ``sha256`` (path -> hex)."""
    return Statement(
        envelope_id=record.envelope_id,
        kind=record.kind,
        created=record.created,
        files=tuple(
            SignedFile(
                path=f.path, size=f.size, ciphertext_size=f.ciphertext_size, ciphertext_sha256=sha256[f.path]
            )
            for f in record.files
        ),
        data_key_commitment=encode_b64(key.commitment(commitment_info(record.envelope_id))),
        signer=Signer(crypto_key_version=signer.version_name, algorithm=signer.algorithm),
    )


def sign_statement(
    client: kms_v1.KeyManagementServiceClient,
    signer: PublicKey,
    statement: Statement,
    *,
    retry: Retry | None = None,
) -> SignatureRecord:
    """One ``AsymmetricSign`` (CRC32C both ways), the result verified with the public key."""
    from google.api_core import exceptions as gexc

    from kmsflow.kms.crc import crc32c
    from kmsflow.kms.crypto import default_retry
    from kmsflow.kms.errors import KmsIntegrityError, translate

    encoded = statement.encode()
    message = signed_message(encoded)
    digest_name = DIGESTS[signer.algorithm]
    if digest_name is None:
        request: dict[str, Any] = {"data": message, "data_crc32c": crc32c(message)}
    else:
        digest = hashlib.new(digest_name, message).digest()
        request = {"digest": {digest_name: digest}, "digest_crc32c": crc32c(digest)}
    action = f"sign with {signer.version_name}"
    try:
        response = client.asymmetric_sign(
            request={"name": signer.version_name, **request}, retry=retry or default_retry()
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, action) from exc
    verified = response.verified_data_crc32c if digest_name is None else response.verified_digest_crc32c
    if response.name != signer.version_name or not verified:
        raise KmsIntegrityError(f"{action}: KMS did not verify the request checksum")
    if response.signature_crc32c != crc32c(response.signature):
        raise KmsIntegrityError(f"{action}: the signature was corrupted in transit")
    signature = bytes(response.signature)
    if not signature_valid(signer, signature, message):
        raise KmsIntegrityError(f"{action}: the signature KMS returned does not verify with its public key")
    return SignatureRecord(encoded, signature)


def sign_envelope(
    client: kms_v1.KeyManagementServiceClient,
    envelope: Envelope,
    key: str,
    *,
    replace: bool = False,
    progress: Progress | None = None,
    retry: Retry | None = None,
) -> Statement:
    """Sign an existing envelope with ``key`` (see :func:`signing_key`); write its signature record.

    Nothing unauthenticated is signed: the data key is unwrapped (one KMS Decrypt) and every byte
    verified, its ciphertext hashed on the same read. An existing signature record is kept unless
    ``replace`` (then it is removed just before the new one is published).
    """
    from kmsflow.envelope.staging import stage

    where = signature_location(envelope.root, envelope.record.kind)
    if where.exists() and not replace:
        raise DestinationExistsError(f"{where.url}: the envelope is signed already; re-sign with --replace")
    signer = signing_key(client, key)
    sha256: dict[str, str] = {}
    envelope.verify(client, progress=progress, retry=retry, digests=sha256)
    statement = make_statement(envelope.record, sha256, envelope.unlock(client, retry=retry), signer)
    signed = sign_statement(client, signer, statement, retry=retry)
    if replace:
        where.remove()
    with stage(where, tree=False) as staging, staging.writer(where) as out:
        out.write(signed.to_json())
    return statement


# ----------------------------------------------------------------------------- verifying


def read_signature(envelope: Envelope) -> SignatureRecord:
    """The envelope's signature record; :class:`SignatureNotFoundError` if it has none."""
    where = signature_location(envelope.root, envelope.record.kind)
    try:
        if not where.isfile():
            raise SignatureNotFoundError(f"{envelope.url}: not signed (no {where.name})")
        with where.open_read() as f:
            data = f.read(MAX_SIGNATURE_RECORD_SIZE + 1)
    except OSError as exc:
        raise EnvelopeIOError(f"{where.url}: cannot read signature record ({os_reason(exc)})") from None
    if len(data) > MAX_SIGNATURE_RECORD_SIZE:
        raise RecordInvalidError(f"{where.url}: larger than any signature record; not read")
    return SignatureRecord.from_json(data, where.url)


def claimed_signer(envelope: Envelope) -> dict[str, Any] | None:
    """What the envelope's signature record says about who signed it, **unverified** (for
    ``inspect``: presence only; a verdict needs the signer's public key, :func:`verify_signature`).

    None when there is no signature record. A record that is not one (or whose statement is not
    canonical) is described, not raised: ``inspect`` shows an envelope, whatever lies beside it.
    """
    try:
        signed = read_signature(envelope)
        claimed = parse(signed.statement, signature_location(envelope.root, envelope.record.kind).url).signer
    except SignatureNotFoundError:
        return None
    except RecordInvalidError as exc:
        return {
            "signed_by": None,
            "algorithm": None,
            "verified": False,
            "note": f"signature record invalid: {exc}",
        }
    version = claimed.crypto_key_version
    return {
        "signed_by": version,
        "algorithm": claimed.algorithm,
        "verified": False,
        "note": f"signed by {version} (not verified; use kmsflow verify --signer)",
    }


def verify_signature(
    envelope: Envelope,
    signer: str | PublicKey,
    *,
    client: kms_v1.KeyManagementServiceClient | None = None,
    key: DataKey | None = None,
) -> Statement:
    """Check that ``signer`` signed exactly this envelope; return the statement.

    ``signer``: a :class:`PublicKey`, a public key file (no KMS call), a CryptoKeyVersion name, or
    a CryptoKey name (any of its versions; the one the statement names is fetched with
    ``client``). ``key``: the unwrapped data key, to check the key commitment too. Raises
    :class:`SignatureError` (exit 5) when anything differs, :class:`SignatureNotFoundError` when
    there is no signature, :class:`RecordInvalidError` when it is not a signature record.
    """
    signed = read_signature(envelope)
    where = signature_location(envelope.root, envelope.record.kind).url
    statement = parse(signed.statement, where)
    public = _public_key(envelope.url, signer, statement, client)
    claimed = statement.signer
    if (claimed.crypto_key_version, claimed.algorithm) != (public.version_name, public.algorithm):
        raise SignatureError(
            f"{envelope.url}: signed by {claimed.crypto_key_version} ({claimed.algorithm}), "
            f"not by {public.version_name} ({public.algorithm})"
        )
    message = signed_message(signed.statement)
    if public.algorithm not in DIGESTS or not signature_valid(public, signed.signature, message):
        raise SignatureError(f"{envelope.url}: the signature does not verify with {public.version_name}")
    problem = statement.differences(envelope.record)
    if problem is not None:
        raise SignatureError(f"{envelope.url}: signature not for this envelope: {problem}")
    if key is not None and statement.data_key_commitment != encode_b64(
        key.commitment(commitment_info(envelope.record.envelope_id))
    ):
        raise SignatureError(
            f"{envelope.url}: the data key is not the one that was signed (wrapped key replaced)"
        )
    try:
        envelope.check_listing()
    except TamperedError as exc:
        raise SignatureError(str(exc)) from None
    for entry in statement.files:
        _check_ciphertext(envelope, entry)
    return statement


def _public_key(
    where: str,
    signer: str | PublicKey,
    statement: Statement,
    client: kms_v1.KeyManagementServiceClient | None,
) -> PublicKey:
    """The public key ``signer`` names; for a CryptoKey, that of its version the statement names."""
    if isinstance(signer, PublicKey):
        return signer
    if is_crypto_key_name(signer):
        version = statement.signer.crypto_key_version
        if version.rsplit("/cryptoKeyVersions/", 1)[0] != signer:
            raise SignatureError(f"{where}: signed by {version}, which is not a version of {signer}")
        if client is None:
            raise UnsupportedSignerError(f"{signer}: a key name needs a KMS client; give a public key file")
        return fetch_public_key(client, version)
    return load(signer, client)


def _check_ciphertext(envelope: Envelope, entry: SignedFile) -> None:
    """Hash one ciphertext file in one sequential pass (ranged GETs ahead of the hash on object
    stores), stopping as soon as it is longer than what was signed."""
    from kmsflow.envelope.layout import data_location
    from kmsflow.envelope.streams import ChecksumReader

    loc = data_location(envelope.root, entry.path)
    try:
        with loc.open_sequential() as raw:
            reader = ChecksumReader(raw, checksum=False, digest=True)
            while reader.read(CHUNK_SIZE) and reader.count <= entry.ciphertext_size:
                pass
    except FileNotFoundError:
        raise SignatureError(f"{loc.url}: file of the envelope is missing") from None
    except OSError as exc:
        raise EnvelopeIOError(f"{loc.url}: cannot read ({os_reason(exc)})") from None
    if reader.count != entry.ciphertext_size or reader.sha256() != entry.ciphertext_sha256:
        raise SignatureError(f"{loc.url}: ciphertext differs from what was signed (file modified or swapped)")


def signature_valid(public: PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` over ``message`` verifies with ``public`` (``cryptography``)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa

    algorithm = public.algorithm
    try:
        if algorithm.startswith("PQ_SIGN_ML_DSA_"):
            level = algorithm.rsplit("_", 1)[-1]
            loaders: dict[str, Any] = {
                "44": mldsa.MLDSA44PublicKey,
                "65": mldsa.MLDSA65PublicKey,
                "87": mldsa.MLDSA87PublicKey,
            }
            loaders[level].from_public_bytes(public.key).verify(signature, message)
            return True
        loaded = serialization.load_der_public_key(public.key)
        digest = hashes.SHA384() if DIGESTS[algorithm] == "sha384" else hashes.SHA256()
        if algorithm.startswith("EC_SIGN_"):
            curve = ec.SECP384R1 if algorithm == "EC_SIGN_P384_SHA384" else ec.SECP256R1
            if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, curve):
                return False
            loaded.verify(signature, message, ec.ECDSA(digest))
            return True
        bits = int(algorithm.split("_")[3])
        if not isinstance(loaded, rsa.RSAPublicKey) or loaded.key_size != bits:
            return False
        loaded.verify(signature, message, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        return True
    except (InvalidSignature, ValueError, KeyError):
        return False
