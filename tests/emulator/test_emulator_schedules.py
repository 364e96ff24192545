"""Schedules on the emulated clock: automatic destruction and rotation, and the ``advance`` CLI.

Each test moves the clock, so each gets its own emulator (``fresh_emulator``).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import kms_v1

State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
DAY = 86400
Cli = Callable[..., subprocess.CompletedProcess[str]]


def ids(client: kms_v1.KeyManagementServiceClient, key: str, filter_: str = "") -> list[int]:
    versions = client.list_crypto_key_versions(request={"parent": key, "filter": filter_})
    return [int(v.name.rsplit("/", 1)[1]) for v in versions]


def test_destroy_schedule_runs_when_clock_passes_destroy_time(
    fresh_emulator: Any, clients: Any, new_ring: Callable[..., str], new_key: Any
) -> None:
    kms = clients(fresh_emulator)
    ring = new_ring(kms)
    key = new_key(kms, ring, "short", destroy_scheduled_duration={"seconds": 2 * DAY})
    kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    # Version 1 is no longer primary; encrypt through it explicitly, then destroy it.
    old = kms.encrypt(name=key.primary.name, plaintext=b"before destruction")
    assert old.name == key.primary.name

    scheduled = kms.destroy_crypto_key_version(name=key.primary.name)
    destroy_time = scheduled.destroy_time.timestamp()
    # A version restored in time is never destroyed.
    kept = new_key(kms, ring, "kept")
    kept_sealed = kms.encrypt(name=kept.name, plaintext=b"kept")
    kms.destroy_crypto_key_version(name=kept.primary.name)
    kms.restore_crypto_key_version(name=kept.primary.name)

    # A minute short of destroy_time nothing happens yet (a minute: real time passes meanwhile).
    fresh_emulator.admin.advance(destroy_time - fresh_emulator.admin.now() - 60)
    assert kms.get_crypto_key_version(name=key.primary.name).state == State.DESTROY_SCHEDULED

    fresh_emulator.admin.advance(61)
    destroyed = kms.get_crypto_key_version(name=key.primary.name)
    assert destroyed.state == State.DESTROYED
    assert destroyed.destroy_event_time.timestamp() == pytest.approx(destroy_time, abs=1e-3)
    assert ids(kms, key.name, "state=DESTROYED") == [1]
    with pytest.raises(exceptions.FailedPrecondition):
        kms.decrypt(name=key.name, ciphertext=old.ciphertext)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.restore_crypto_key_version(name=key.primary.name)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(name=key.primary.name, plaintext=b"x")
    # The other version is untouched.
    assert kms.decrypt(
        name=key.name, ciphertext=kms.encrypt(name=key.name, plaintext=b"v2").ciphertext
    ).used_primary

    fresh_emulator.admin.advance(31 * DAY)
    assert kms.get_crypto_key_version(name=kept.primary.name).state == State.DISABLED
    kms.update_crypto_key_version(
        request={
            "crypto_key_version": {"name": kept.primary.name, "state": State.ENABLED},
            "update_mask": {"paths": ["state"]},
        }
    )
    assert kms.decrypt(name=kept.name, ciphertext=kept_sealed.ciphertext).plaintext == b"kept"


def test_automatic_rotation(
    fresh_emulator: Any, clients: Any, new_ring: Callable[..., str], new_key: Any
) -> None:
    kms = clients(fresh_emulator)
    period = 2 * DAY
    first_due = int(fresh_emulator.admin.now()) + period
    key = new_key(
        kms,
        new_ring(kms),
        rotation_period={"seconds": period},
        next_rotation_time={"seconds": first_due},
    )
    assert key.rotation_period == dt.timedelta(seconds=period)
    old = kms.encrypt(name=key.name, plaintext=b"v1 data")

    fresh_emulator.admin.advance(2.5 * period)
    rotated = kms.get_crypto_key(name=key.name)
    assert ids(kms, key.name) == [1, 2, 3]
    assert rotated.primary.name == f"{key.name}/cryptoKeyVersions/3"
    assert rotated.next_rotation_time.timestamp() == pytest.approx(first_due + 2 * period, abs=1e-3)
    # Each version appeared when its rotation was due, as if Cloud KMS had rotated on time.
    for version_id, due in ((2, first_due), (3, first_due + period)):
        version = kms.get_crypto_key_version(name=f"{key.name}/cryptoKeyVersions/{version_id}")
        assert version.state == State.ENABLED
        assert version.create_time.timestamp() == pytest.approx(due, abs=1e-3)

    new = kms.encrypt(name=key.name, plaintext=b"v3 data")
    assert new.name == rotated.primary.name
    opened = kms.decrypt(name=key.name, ciphertext=old.ciphertext)
    assert (opened.plaintext, opened.used_primary) == (b"v1 data", False)

    # Half a period more: still due at first_due + 2 periods, so no new version yet...
    fresh_emulator.admin.advance(0.4 * period)
    assert ids(kms, key.name) == [1, 2, 3]
    # ...then one more.
    fresh_emulator.admin.advance(0.2 * period)
    assert ids(kms, key.name) == [1, 2, 3, 4]

    # Turning rotation off stops it.
    kms.update_crypto_key(
        request={
            "crypto_key": {"name": key.name},
            "update_mask": {"paths": ["rotation_period", "next_rotation_time"]},
        }
    )
    fresh_emulator.admin.advance(10 * period)
    assert ids(kms, key.name) == [1, 2, 3, 4]


def test_advance_cli(
    fresh_emulator: Any, cli: Cli, clients: Any, new_ring: Callable[..., str], new_key: Any
) -> None:
    kms = clients(fresh_emulator)
    key = new_key(kms, new_ring(kms))
    scheduled = kms.destroy_crypto_key_version(name=key.primary.name)
    before = fresh_emulator.admin.now()

    result = cli("advance", "--endpoint", fresh_emulator.endpoint, "--seconds", str(31 * DAY))
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)["now"]
    assert reported >= before + 31 * DAY
    assert fresh_emulator.admin.now() >= reported
    assert reported > scheduled.destroy_time.timestamp()
    assert kms.get_crypto_key_version(name=key.primary.name).state == State.DESTROYED

    # The clock only moves forward, through the CLI or the Admin service.
    refused = cli("advance", "--endpoint", fresh_emulator.endpoint, "--seconds", "-5")
    assert refused.returncode == 1
    assert "INVALID_ARGUMENT" in refused.stderr
    with pytest.raises(grpc.RpcError) as admin_refused:
        fresh_emulator.admin.advance(-1)
    assert admin_refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fresh_emulator.admin.now() < reported + 60
    assert fresh_emulator.admin.advance(3600) >= reported + 3600
