"""Lifecycle fixtures: KMS keys on the emulator; the GCS emulator fixtures are reused from tests/envelope."""

from __future__ import annotations

from envelope.conftest import counting_client, gcs_bucket, gcs_emulator

__all__ = ["counting_client", "gcs_bucket", "gcs_emulator"]
