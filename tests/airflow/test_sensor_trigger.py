"""KeyVersionStateSensor (poke and deferrable) and KeyVersionStateTrigger (run, serialize)."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from airflow.triggers.base import TriggerEvent

from kmsflow.airflow.hooks import KmsHook
from kmsflow.airflow.sensors import KeyVersionStateSensor
from kmsflow.airflow.triggers import KeyVersionStateTrigger

INTRUDER = "user:mallory@example.com"


def first_event(trigger: KeyVersionStateTrigger, timeout: float = 20) -> TriggerEvent:
    async def collect() -> TriggerEvent:
        async for event in trigger.run():
            return event
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(collect(), timeout))


def later(seconds: float, action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def rotated(hook: KmsHook, key: str) -> tuple[str, str]:
    """(old version, new primary) after one rotation."""
    new = hook.rotate(key).name
    return f"{key}/cryptoKeyVersions/1", new


# ----------------------------------------------------------------------------- trigger


def test_trigger_serialize_round_trip() -> None:
    trigger = KeyVersionStateTrigger(
        "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3",
        ["destroyed", "DESTROY_SCHEDULED"],
        kmsflow_conn_id="kms_prod",
        impersonation_chain=["a@p.iam.gserviceaccount.com"],
        poll_interval=5.0,
        deadline=12.0,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "kmsflow.airflow.triggers.key_version.KeyVersionStateTrigger"
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["target_states"] == ["DESTROYED", "DESTROY_SCHEDULED"]


def test_trigger_rejects_unknown_states() -> None:
    with pytest.raises(ValueError, match="target states"):
        KeyVersionStateTrigger("v", ["GONE"])


def test_trigger_fires_when_state_reached_later(hook: KmsHook, key: str) -> None:
    old, _ = rotated(hook, key)
    trigger = KeyVersionStateTrigger(old, ["DISABLED"], poll_interval=0.2)
    timer = later(0.6, lambda: KmsHook().disable_version(old))
    event = first_event(trigger)
    timer.join()
    assert event.payload == {"status": "success", "name": old, "state": "DISABLED"}


def test_trigger_reports_errors_as_events(
    hook: KmsHook, key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    missing = f"{key}/cryptoKeyVersions/99"
    event = first_event(KeyVersionStateTrigger(missing, ["ENABLED"], poll_interval=0.1))
    assert event.payload["status"] == "error" and "99" in event.payload["message"]

    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    denied = KeyVersionStateTrigger(
        f"{key}/cryptoKeyVersions/1", ["ENABLED"], kmsflow_conn_id="kmsflow_intruder", poll_interval=0.1
    )
    event = first_event(denied)
    assert event.payload["status"] == "error"
    assert "permission" in event.payload["message"].lower()


def test_trigger_gives_up_on_a_destroyed_version(fresh_emulator: Any, set_conn: Callable[..., str]) -> None:
    set_conn(endpoint=fresh_emulator.endpoint)
    hook = KmsHook()
    ring, _ = hook.ensure_key_ring("projects/p/locations/us-central1", "r")
    key, _ = hook.ensure_crypto_key(
        ring.name,
        "k",
        purpose="ENCRYPT_DECRYPT",
        algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level="SOFTWARE",
        destroy_scheduled_duration=None,
    )
    old, _ = rotated(hook, key.name)
    hook.destroy_version(old)
    fresh_emulator.admin.advance(31 * 86400)  # past the (default 30 day) destroy window
    event = first_event(KeyVersionStateTrigger(old, ["ENABLED"], poll_interval=0.1))
    assert event.payload["status"] == "error" and event.payload["state"] == "DESTROYED"
    assert "can never become ENABLED" in event.payload["message"]
    event = first_event(KeyVersionStateTrigger(old, ["DESTROYED"], poll_interval=0.1))
    assert event.payload == {"status": "success", "name": old, "state": "DESTROYED"}
    hook.close()


# ----------------------------------------------------------------------------- sensor


def test_sensor_poke_mode_waits_for_the_state(hook: KmsHook, key: str) -> None:
    old, _ = rotated(hook, key)
    sensor = KeyVersionStateSensor(
        task_id="wait",
        version_name=old,
        target_state="DISABLED",
        deferrable=False,
        poke_interval=0.2,
        timeout=20,
    )
    timer = later(0.6, lambda: KmsHook().disable_version(old))
    result = sensor.execute(context={})
    timer.join()
    assert result == {"name": old, "state": "DISABLED"}


def test_sensor_poke_mode_fails_fast_when_refused(
    key: str, iam_emulator: Any, set_conn: Callable[..., str]
) -> None:
    set_conn("kmsflow_intruder", endpoint=iam_emulator.endpoint, principal=INTRUDER)
    sensor = KeyVersionStateSensor(
        task_id="wait",
        version_name=f"{key}/cryptoKeyVersions/1",
        deferrable=False,
        kmsflow_conn_id="kmsflow_intruder",
        poke_interval=0.1,
        timeout=5,
    )
    with pytest.raises(AirflowFailException, match=r"(?i)permission"):
        sensor.execute(context={})


def test_deferrable_sensor_returns_at_once_when_already_there(key: str) -> None:
    sensor = KeyVersionStateSensor(task_id="wait", version_name=f"{key}/cryptoKeyVersions/1")
    assert sensor.deferrable is True
    assert sensor.execute(context={}) == {"name": f"{key}/cryptoKeyVersions/1", "state": "ENABLED"}


def test_deferrable_sensor_defers_to_the_trigger_and_resumes(hook: KmsHook, key: str) -> None:
    old, _ = rotated(hook, key)
    sensor = KeyVersionStateSensor(
        task_id="wait", version_name=old, target_state=["DISABLED"], poke_interval=0.2, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, KeyVersionStateTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert (trigger.version_name, trigger.target_states, trigger.poll_interval) == (old, ("DISABLED",), 0.2)

    timer = later(0.4, lambda: KmsHook().disable_version(old))
    event = first_event(trigger)
    timer.join()
    assert sensor.execute_complete({}, event.payload) == {"name": old, "state": "DISABLED"}
    with pytest.raises(AirflowFailException, match="boom"):
        sensor.execute_complete({}, {"status": "error", "name": old, "state": None, "message": "boom"})
