"""Typed access to Cloud KMS over the real ``google-cloud-kms`` client (no Airflow)."""

from kmsflow.kms.client import (
    EMULATOR_HOST_ENV,
    PRINCIPAL_ENV,
    PRINCIPAL_METADATA_KEY,
    emulator_host,
    new_kms_client,
)
from kmsflow.kms.clock import emulator_now
from kmsflow.kms.crc import crc32c
from kmsflow.kms.crypto import Wrapped, decrypt, default_retry, encrypt, key_of
from kmsflow.kms.errors import (
    ConfirmationError,
    ErasureRefusedError,
    FieldConflict,
    ImmutableFieldError,
    KeyVersionUnavailableError,
    KmsAlreadyExistsError,
    KmsConflictError,
    KmsCredentialsError,
    KmsError,
    KmsGuardError,
    KmsIntegrityError,
    KmsInvalidArgumentError,
    KmsNotFoundError,
    KmsPermissionError,
    KmsTransientError,
)

__all__ = [
    "EMULATOR_HOST_ENV",
    "PRINCIPAL_ENV",
    "PRINCIPAL_METADATA_KEY",
    "ConfirmationError",
    "ErasureRefusedError",
    "FieldConflict",
    "ImmutableFieldError",
    "KeyVersionUnavailableError",
    "KmsAlreadyExistsError",
    "KmsConflictError",
    "KmsCredentialsError",
    "KmsError",
    "KmsGuardError",
    "KmsIntegrityError",
    "KmsInvalidArgumentError",
    "KmsNotFoundError",
    "KmsPermissionError",
    "KmsTransientError",
    "Wrapped",
    "crc32c",
    "decrypt",
    "default_retry",
    "emulator_host",
    "emulator_now",
    "encrypt",
    "key_of",
    "new_kms_client",
]
