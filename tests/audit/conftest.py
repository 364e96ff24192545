"""Audit tests reuse the GCS emulator fixtures of tests/envelope."""

from __future__ import annotations

from envelope.conftest import gcs_bucket, gcs_emulator

__all__ = ["gcs_bucket", "gcs_emulator"]
