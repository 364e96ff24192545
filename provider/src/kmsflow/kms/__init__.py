"""Typed access to Cloud KMS over the real ``google-cloud-kms`` client (no Airflow)."""

from kmsflow.kms.client import (
    EMULATOR_HOST_ENV,
    PRINCIPAL_ENV,
    PRINCIPAL_METADATA_KEY,
    emulator_host,
    new_kms_client,
)
from kmsflow.kms.crc import crc32c

__all__ = [
    "EMULATOR_HOST_ENV",
    "PRINCIPAL_ENV",
    "PRINCIPAL_METADATA_KEY",
    "crc32c",
    "emulator_host",
    "new_kms_client",
]
