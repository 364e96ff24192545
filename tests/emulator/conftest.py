"""Fixtures for the emulator suite, on top of the shared ones in ``tests/conftest.py``.

Test modules here import nothing from any conftest: every ``conftest.py`` outside a package is
imported under the module name ``conftest``, so ``from conftest import ...`` would depend on which
one pytest loaded last. The shared module comes from its ``shared`` fixture instead.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from envelope.conftest import gcs_bucket, gcs_emulator
from google.cloud import kms_v1

from kmsflow_emulator.admin import AdminClient
from kmsflow_emulator.process import spawn

__all__ = ["gcs_bucket", "gcs_emulator"]  # the GCS emulator (kmsflow_emulator.gcs) of tests/envelope


@pytest.fixture(autouse=True)
def _no_ambient_principal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients here name their principal explicitly; a stray KMSFLOW_PRINCIPAL must not leak in."""
    monkeypatch.delenv("KMSFLOW_PRINCIPAL", raising=False)
    monkeypatch.delenv("KMS_EMULATOR_HOST", raising=False)


def close_client(client: kms_v1.KeyManagementServiceClient) -> None:
    client.transport.close()


@pytest.fixture(scope="session")
def kms(emulator: Any) -> Iterator[kms_v1.KeyManagementServiceClient]:
    """A real KMS client (no principal) on the shared non-IAM emulator."""
    client = emulator.client()
    yield client
    close_client(client)


@pytest.fixture
def clients() -> Iterator[Callable[[Any, str | None], kms_v1.KeyManagementServiceClient]]:
    """Make clients for any emulator as some principal; all are closed after the test."""
    made: list[kms_v1.KeyManagementServiceClient] = []

    def make(emulator: Any, principal: str | None = None) -> kms_v1.KeyManagementServiceClient:
        client = emulator.client(principal)
        made.append(client)
        return client

    yield make
    for client in made:
        close_client(client)


@pytest.fixture
def new_ring(location: str) -> Callable[..., str]:
    """Create a key ring with a unique id through ``client``; returns its name."""

    def create(client: kms_v1.KeyManagementServiceClient, ring_id: str | None = None) -> str:
        ring_id = ring_id or f"ring-{uuid.uuid4().hex[:12]}"
        return client.create_key_ring(
            request={"parent": location, "key_ring_id": ring_id, "key_ring": {}}
        ).name

    return create


@pytest.fixture
def new_key() -> Callable[..., kms_v1.CryptoKey]:
    """Create an ENCRYPT_DECRYPT key in ``ring``; extra keyword arguments become CryptoKey fields."""

    def create(
        client: kms_v1.KeyManagementServiceClient,
        ring: str,
        key_id: str = "key",
        *,
        skip_initial_version_creation: bool = False,
        **fields: Any,
    ) -> kms_v1.CryptoKey:
        return client.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": key_id,
                "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT, **fields},
                "skip_initial_version_creation": skip_initial_version_creation,
            }
        )

    return create


@pytest.fixture
def ring(kms: kms_v1.KeyManagementServiceClient, new_ring: Callable[..., str], ring_id: str) -> str:
    """A new key ring on the shared emulator."""
    return new_ring(kms, ring_id)


@pytest.fixture
def key(
    kms: kms_v1.KeyManagementServiceClient, ring: str, new_key: Callable[..., kms_v1.CryptoKey]
) -> kms_v1.CryptoKey:
    """A new ENCRYPT_DECRYPT key (version 1 primary) on the shared emulator."""
    return new_key(kms, ring)


class Launched:
    """An emulator subprocess started by ``launch``, with its output going to files."""

    def __init__(self, running: Any, stderr_path: Path) -> None:
        self.running = running
        self.stderr_path = stderr_path
        self.stdout_rest = ""
        self.returncode: int | None = None

    @property
    def endpoint(self) -> str:
        return str(self.running.endpoint)

    @property
    def admin(self) -> AdminClient:
        admin = self.running.admin
        assert isinstance(admin, AdminClient)
        return admin

    @property
    def process(self) -> subprocess.Popen[str]:
        process = self.running.process
        assert isinstance(process, subprocess.Popen)
        return process

    def client(self, principal: str | None = None) -> kms_v1.KeyManagementServiceClient:
        client = self.running.client(principal)
        assert isinstance(client, kms_v1.KeyManagementServiceClient)
        return client

    def stop(self) -> int:
        """SIGTERM, wait, and keep what the process printed after its "listening on" line."""
        if self.returncode is not None:
            return self.returncode
        self.admin.close()
        self.process.terminate()
        try:
            code = self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.stdout_rest = self.process.stdout.read()
            self.process.stdout.close()
        self.returncode = code
        return code

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def launch(shared: ModuleType, tmp_path: Path) -> Iterator[Callable[..., Launched]]:
    """Start ``kmsflow-emulator serve --port 0 *args`` with stderr captured to a file.

    Like ``start_emulator`` from ``tests/conftest.py``, but keeps stderr (the log) so tests can read
    it; every process started is stopped after the test.
    """
    started: list[Launched] = []

    def start(*args: str) -> Launched:
        stderr_path = tmp_path / f"emulator-{len(started)}.stderr"
        with stderr_path.open("w") as stderr:
            try:
                process, endpoint = spawn(*args, stderr=stderr)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; stderr: {stderr_path.read_text()}") from None
        launched = Launched(
            shared.RunningEmulator(endpoint=endpoint, process=process, admin=AdminClient(endpoint)),
            stderr_path,
        )
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kmsflow_emulator.cli ARGS`` as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "kmsflow_emulator.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli
