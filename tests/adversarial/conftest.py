"""Adversarial fixtures: a KMS client on the shared emulator and a fresh key per test."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import kms_v1
from inventory.builders import make_key


@pytest.fixture
def kms(emulator: Any) -> kms_v1.KeyManagementServiceClient:
    return emulator.client()


@pytest.fixture
def key(kms: kms_v1.KeyManagementServiceClient, ring_id: str) -> str:
    return make_key(kms, ring_id)


@pytest.fixture
def cli_env(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kmsflow`` commands run in-process (``kmsflow.cli.main``) talk to the shared emulator."""
    monkeypatch.setenv("KMS_EMULATOR_HOST", emulator.endpoint)
