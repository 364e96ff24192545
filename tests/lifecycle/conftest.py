"""Lifecycle fixtures: KMS keys on the emulator; the GCS emulator fixtures are reused from tests/envelope."""

from __future__ import annotations

from typing import Any

import pytest
from envelope.conftest import counting_client, gcs_bucket, gcs_emulator
from google.cloud import kms_v1
from inventory.builders import make_key

__all__ = ["counting_client", "gcs_bucket", "gcs_emulator"]


@pytest.fixture
def kms(emulator: Any) -> kms_v1.KeyManagementServiceClient:
    return emulator.client()


@pytest.fixture
def key(kms: kms_v1.KeyManagementServiceClient, ring_id: str) -> str:
    """A fresh ENCRYPT_DECRYPT CryptoKey (version 1 primary) on the shared emulator."""
    return make_key(kms, ring_id)
