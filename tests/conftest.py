"""Shared fixtures: real ``kmsflow-emulator`` processes on loopback, and clients for them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.cloud import kms_v1
from inventory.builders import make_key

from kmsflow.kms import new_kms_client
from kmsflow_emulator.admin import AdminClient
from kmsflow_emulator.process import spawn

OWNER = "user:owner@example.com"
LOCATION = "projects/kmsflow-test/locations/us-central1"

# pytest imports every conftest.py without a package as the module "conftest", so the later ones
# replace this one in sys.modules: keep a handle on this module while it is being imported.
_THIS_MODULE = sys.modules[__name__]


@dataclass
class RunningEmulator:
    endpoint: str
    process: subprocess.Popen[str]
    admin: AdminClient

    def client(self, principal: str | None = None):  # type: ignore[no-untyped-def]
        return new_kms_client(endpoint=self.endpoint, principal=principal)


def start_emulator(*extra: str) -> RunningEmulator:
    """Start ``kmsflow-emulator serve --port 0`` and wait until it listens."""
    process, endpoint = spawn(*extra)
    return RunningEmulator(endpoint=endpoint, process=process, admin=AdminClient(endpoint))


def stop_emulator(emulator: RunningEmulator) -> int:
    emulator.admin.close()
    emulator.process.terminate()
    try:
        return emulator.process.wait(timeout=10)
    finally:
        if emulator.process.poll() is None:
            emulator.process.kill()


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """One shared emulator without IAM enforcement; tests use unique key ring ids."""
    running = start_emulator()
    yield running
    stop_emulator(running)


@pytest.fixture(scope="session")
def iam_emulator() -> Iterator[RunningEmulator]:
    """One shared emulator enforcing IAM, with ``OWNER`` holding every permission."""
    running = start_emulator("--enforce-iam", "--owner", OWNER)
    yield running
    stop_emulator(running)


@pytest.fixture
def fresh_emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A private emulator (persisting to tmp_path/kms) for tests that move the clock or inject faults."""
    running = start_emulator("--data-dir", str(tmp_path / "kms"))
    yield running
    stop_emulator(running)


@pytest.fixture
def ring_id() -> str:
    return f"ring-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def shared() -> ModuleType:
    """This module (``OWNER``, ``LOCATION``, ``start_emulator``...), for subdirectory conftests:
    they cannot ``from conftest import`` it, since every conftest is imported as ``conftest``."""
    return _THIS_MODULE


@pytest.fixture(scope="session")
def owner() -> str:
    return OWNER


@pytest.fixture(scope="session")
def location() -> str:
    return LOCATION


@pytest.fixture
def kms(emulator: Any) -> kms_v1.KeyManagementServiceClient:
    return emulator.client()


@pytest.fixture
def key(kms: kms_v1.KeyManagementServiceClient, ring_id: str) -> str:
    """A fresh ENCRYPT_DECRYPT CryptoKey (version 1 primary) on the shared emulator."""
    return make_key(kms, ring_id)
