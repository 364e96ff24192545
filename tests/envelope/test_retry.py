"""The caller's ``retry=`` reaches the envelope's one KMS call (wrap on encrypt, unwrap on read).

Airflow connections (and any other caller) set their own deadline for transient KMS errors; if the
envelope library dropped ``retry=`` on the way to ``kmsflow.kms.crypto``, an unavailable KMS would
hold every task for the 60 s default instead. The emulator's fault injection makes KMS unavailable
for real, over gRPC, so these tests see exactly what a worker would.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.api_core.retry import Retry

from kmsflow import envelope
from kmsflow.envelope import Envelope
from kmsflow.kms import KmsTransientError, default_retry

from .conftest import counting_client, make_key, no_plaintext_left, write_random

SHORT = 1.0
"""The caller's deadline (seconds): far below the 60 s default, so waiting that long fails a test."""
FAST_ENOUGH = 10.0
"""Seconds a call may take to give up under ``SHORT`` (process start and gRPC set-up included)."""

NO_RETRY = Retry(predicate=lambda exc: False)
"""A policy that retries nothing: with it, one injected fault must be fatal at the first call."""


@pytest.fixture
def flaky(fresh_emulator: Any, tmp_path: Path) -> tuple[Any, Any, str, str]:
    """A private emulator, a call-counting client, a key, and an envelope (``tmp_path/enc``) under it."""
    kms, counter = counting_client(fresh_emulator.endpoint)
    key = make_key(kms, f"ring-{uuid.uuid4().hex[:12]}")
    write_random(tmp_path / "in", 3000)
    envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    counter.calls.clear()
    return fresh_emulator, kms, counter, key


def test_encrypt_gives_up_at_the_callers_deadline(flaky: Any, tmp_path: Path) -> None:
    emulator, kms, counter, key = flaky
    emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Encrypt"])
    start = time.monotonic()
    with pytest.raises(KmsTransientError, match="gave up retrying"):
        envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "out"), retry=default_retry(SHORT))
    assert time.monotonic() - start < FAST_ENOUGH
    assert counter.calls["Encrypt"] > 1  # retried under the deadline, not a single attempt
    assert no_plaintext_left(tmp_path, "out") and not (tmp_path / "out.kmsflow.json").exists()


READERS: dict[str, Callable[..., object]] = {
    "decrypt": lambda kms, src, out, retry: envelope.decrypt(kms, src, out, retry=retry),
    "verify": lambda kms, src, out, retry: envelope.verify(kms, src, retry=retry),
    "Envelope.unlock": lambda kms, src, out, retry: Envelope.open(src).unlock(kms, retry=retry),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_reads_give_up_at_the_callers_deadline(flaky: Any, tmp_path: Path, reader: str) -> None:
    emulator, kms, counter, _ = flaky
    emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Decrypt"])
    start = time.monotonic()
    with pytest.raises(KmsTransientError, match="gave up retrying"):
        READERS[reader](kms, str(tmp_path / "enc"), str(tmp_path / "out"), default_retry(SHORT))
    assert time.monotonic() - start < FAST_ENOUGH
    assert counter.calls["Decrypt"] > 1
    assert no_plaintext_left(tmp_path, "out")


def test_the_callers_policy_replaces_the_default(flaky: Any, tmp_path: Path) -> None:
    """One fault the default policy would ride out is fatal under a policy that retries nothing."""
    emulator, kms, counter, key = flaky
    emulator.admin.set_faults(script=["UNAVAILABLE"], methods=["Encrypt", "Decrypt"])
    with pytest.raises(KmsTransientError):
        envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "out"), retry=NO_RETRY)
    emulator.admin.set_faults(script=["UNAVAILABLE"], methods=["Encrypt", "Decrypt"])
    with pytest.raises(KmsTransientError):
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"), retry=NO_RETRY)
    assert counter.calls["Encrypt"] == 1 and counter.calls["Decrypt"] == 1


def test_without_retry_the_default_policy_rides_out_transient_faults(flaky: Any, tmp_path: Path) -> None:
    """``retry=None`` (and the positional calls other modules make) keep retrying as before."""
    emulator, kms, counter, key = flaky
    emulator.admin.set_faults(script=["UNAVAILABLE", "DEADLINE_EXCEEDED"], methods=["Encrypt", "Decrypt"])
    envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "again"))
    emulator.admin.set_faults(script=["UNAVAILABLE", "RESOURCE_EXHAUSTED"], methods=["Encrypt", "Decrypt"])
    envelope.decrypt(kms, str(tmp_path / "again"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == (tmp_path / "in").read_bytes()
    assert counter.calls["Encrypt"] == 3 and counter.calls["Decrypt"] == 3
    assert emulator.admin.faults()["script_remaining"] == []
