"""Envelope test fixtures: KMS keys on the emulator, a call-counting KMS client, a GCS emulator."""

from __future__ import annotations

import subprocess
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from inventory.builders import make_key

from kmsflow.kms.client import emulator_channel
from kmsflow_emulator import gcs

__all__ = ["make_key"]  # the envelope tests import it from here


class CallCounter(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts unary RPCs by method name (e.g. 'Encrypt', 'Decrypt') as they leave the client."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self.calls[details.method.rsplit("/", 1)[-1]] += 1
        return continuation(details, request)


def counting_client(endpoint: str) -> tuple[kms_v1.KeyManagementServiceClient, CallCounter]:
    """A real KMS client over gRPC to the emulator, with a counter on its channel."""
    counter = CallCounter()
    channel = grpc.intercept_channel(emulator_channel(endpoint), counter)
    transport = KeyManagementServiceGrpcTransport(
        host=endpoint, channel=channel, credentials=AnonymousCredentials()
    )
    client = kms_v1.KeyManagementServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
    )
    return client, counter


@pytest.fixture(autouse=True)
def _no_ambient_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their endpoints and identities explicitly; nothing leaks in from the shell."""
    for name in ("KMS_EMULATOR_HOST", "KMSFLOW_PRINCIPAL", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """``gcp-storage-emulator`` (in memory) on a free loopback port, enforcing GCS preconditions
    (:mod:`kmsflow_emulator.gcs`); yields ``host:port``."""
    proc, host = gcs.spawn()
    yield host
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the GCS emulator, with STORAGE_EMULATOR_HOST set for this test; yields its name."""
    import uuid

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = f"b-{uuid.uuid4().hex[:12]}"
    req = urllib.request.Request(
        f"http://{gcs_emulator}/storage/v1/b?project=test",
        data=f'{{"name": "{name}"}}'.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()
    return name


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    """A file of ``size`` pseudo-random bytes; returns its content (small files only)."""
    import random

    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def listing(root: Path) -> list[str]:
    """Every entry under ``root`` (files and directories), relative; [] if ``root`` is absent."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def no_plaintext_left(parent: Path, dst_name: str) -> bool:
    """True when neither the destination nor any kmsflow temp file for it exists in ``parent``."""
    return not any(p.name == dst_name or p.name.startswith(f".{dst_name}.kmsflow-") for p in parent.iterdir())
