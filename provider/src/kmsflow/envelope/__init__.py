"""Client-side envelope encryption of files and datasets (no Airflow). Format: docs/FORMAT.md.

One envelope = one fresh Tink streaming AEAD keyset, wrapped by exactly one Cloud KMS Encrypt and
unwrapped by exactly one Decrypt, covering one file or a whole directory of shards. The record
beside the data names the exact CryptoKeyVersion, so rotation and re-wrapping never touch data.
An envelope may also be signed with a Cloud KMS signing key (``sign_envelope``, ``encrypt(...,
sign_with=)``) and the signature checked offline with the public key (``verify_signature``).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.envelope.aad import FORMAT_VERSION, data_aad, keyset_aad, manifest_aad
    from kmsflow.envelope.encrypt import encrypt
    from kmsflow.envelope.envelope import Envelope, decrypt, inspect, verify
    from kmsflow.envelope.errors import (
        DestinationExistsError,
        EnvelopeError,
        EnvelopeIOError,
        IntegrityError,
        InvalidDestinationError,
        InvalidPathError,
        RecordInvalidError,
        RecordNotFoundError,
        SignatureError,
        SignatureNotFoundError,
        SourceIncompleteError,
        SourceNotFoundError,
        StagingAbortedError,
        TamperedError,
        UnsupportedFormatError,
        UnsupportedSignerError,
    )
    from kmsflow.envelope.keyset import DataKey, SegmentLayout
    from kmsflow.envelope.layout import DATASET_RECORD, SIDECAR_SUFFIX, record_location
    from kmsflow.envelope.progress import NoProgress, Progress
    from kmsflow.envelope.record import EnvelopeRecord, FileEntry, KeyWrap
    from kmsflow.envelope.signature import sign_envelope, verify_signature
    from kmsflow.envelope.storage import Location, gcs_filesystem, resolve
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.envelope.aad": ("FORMAT_VERSION", "data_aad", "keyset_aad", "manifest_aad"),
            "kmsflow.envelope.encrypt": ("encrypt",),
            "kmsflow.envelope.envelope": ("Envelope", "decrypt", "inspect", "verify"),
            "kmsflow.envelope.errors": (
                "DestinationExistsError",
                "EnvelopeError",
                "EnvelopeIOError",
                "IntegrityError",
                "InvalidDestinationError",
                "InvalidPathError",
                "RecordInvalidError",
                "RecordNotFoundError",
                "SignatureError",
                "SignatureNotFoundError",
                "SourceIncompleteError",
                "SourceNotFoundError",
                "StagingAbortedError",
                "TamperedError",
                "UnsupportedFormatError",
                "UnsupportedSignerError",
            ),
            "kmsflow.envelope.keyset": ("DataKey", "SegmentLayout"),
            "kmsflow.envelope.layout": ("DATASET_RECORD", "SIDECAR_SUFFIX", "record_location"),
            "kmsflow.envelope.progress": ("NoProgress", "Progress"),
            "kmsflow.envelope.record": ("EnvelopeRecord", "FileEntry", "KeyWrap"),
            "kmsflow.envelope.signature": ("sign_envelope", "verify_signature"),
            "kmsflow.envelope.storage": ("Location", "gcs_filesystem", "resolve"),
        },
    )

__all__ = [
    "DATASET_RECORD",
    "FORMAT_VERSION",
    "SIDECAR_SUFFIX",
    "DataKey",
    "DestinationExistsError",
    "Envelope",
    "EnvelopeError",
    "EnvelopeIOError",
    "EnvelopeRecord",
    "FileEntry",
    "IntegrityError",
    "InvalidDestinationError",
    "InvalidPathError",
    "KeyWrap",
    "Location",
    "NoProgress",
    "Progress",
    "RecordInvalidError",
    "RecordNotFoundError",
    "SegmentLayout",
    "SignatureError",
    "SignatureNotFoundError",
    "SourceIncompleteError",
    "SourceNotFoundError",
    "StagingAbortedError",
    "TamperedError",
    "UnsupportedFormatError",
    "UnsupportedSignerError",
    "data_aad",
    "decrypt",
    "encrypt",
    "gcs_filesystem",
    "inspect",
    "keyset_aad",
    "manifest_aad",
    "record_location",
    "resolve",
    "sign_envelope",
    "verify",
    "verify_signature",
]
