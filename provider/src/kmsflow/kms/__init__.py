"""Typed access to Cloud KMS (no Airflow): ``google-cloud-kms``'s client for every call, and the lean
:class:`KmsDataClient` for the data-plane calls on the hot path (``new_data_client``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kmsflow.kms.client import (
        EMULATOR_HOST_ENV,
        PRINCIPAL_ENV,
        PRINCIPAL_METADATA_KEY,
        emulator_host,
        new_data_client,
        new_kms_client,
    )
    from kmsflow.kms.clock import emulator_now
    from kmsflow.kms.crc import crc32c
    from kmsflow.kms.crypto import Wrapped, decrypt, default_retry, encrypt, key_of
    from kmsflow.kms.dataplane import KmsDataClient
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
else:  # each name is imported on first use (kmsflow.lazy): importing the package loads no module
    from kmsflow.lazy import lazy_names

    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "kmsflow.kms.client": (
                "EMULATOR_HOST_ENV",
                "PRINCIPAL_ENV",
                "PRINCIPAL_METADATA_KEY",
                "emulator_host",
                "new_data_client",
                "new_kms_client",
            ),
            "kmsflow.kms.clock": ("emulator_now",),
            "kmsflow.kms.crc": ("crc32c",),
            "kmsflow.kms.crypto": ("Wrapped", "decrypt", "default_retry", "encrypt", "key_of"),
            "kmsflow.kms.dataplane": ("KmsDataClient",),
            "kmsflow.kms.errors": (
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
            ),
        },
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
    "KmsDataClient",
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
    "new_data_client",
    "new_kms_client",
]
