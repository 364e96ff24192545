"""Adversarial fixtures (``kms`` and ``key`` come from tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def cli_env(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kmsflow`` commands run in-process (``kmsflow.cli.main``) talk to the shared emulator."""
    monkeypatch.setenv("KMS_EMULATOR_HOST", emulator.endpoint)
