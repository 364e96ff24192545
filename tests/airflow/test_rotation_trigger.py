"""KeyRotationTrigger and KeySpecChangeTrigger against a private emulator (clock, faults, call counts).

Each scenario runs the trigger's ``run()`` as the triggerer does (an asyncio task consuming its
events) while the test rotates keys -- by kmsflow, by hand with the plain client, by Cloud KMS's
schedule (the emulator's clock) -- or edits the spec. The watched asset's state store, which Airflow
injects in a triggerer, is stood in for by :class:`Store` (same ``aget``/``aset``), so a "restart"
is a new trigger over the same store; tests/e2e/test_events.py runs the real one.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger

from kmsflow.airflow.hooks.kms import KmsAsyncHook, KmsHook
from kmsflow.airflow.triggers import KeyRotationTrigger, KeySpecChangeTrigger
from kmsflow.airflow.triggers.key_rotation import read_primaries
from kmsflow.airflow.triggers.key_spec import DIGEST_STATE

LOCATION = "projects/kmsflow-test/locations/us-central1"
POLL = 0.1
DAY = 86400


class Store:
    """The asset state store's async accessors (``aget``/``aset``), in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


class Watch:
    """A trigger running as in the triggerer; its events in a queue."""

    def __init__(self, trigger: BaseEventTrigger) -> None:
        self.trigger = trigger
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _pump(self) -> None:
        async for event in self.trigger.run():
            await self.events.put(event.payload)

    async def next(self, timeout: float = 15) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def quiet(self, seconds: float = 10 * POLL) -> None:
        """No event for ``seconds`` (many polls)."""
        await asyncio.sleep(seconds)
        assert self.events.empty(), self.events.get_nowait()


@asynccontextmanager
async def watching(trigger: BaseEventTrigger, store: Store, *names: str) -> AsyncIterator[Watch]:
    """Run ``trigger`` over ``store``; enter once each of ``names`` is recorded (its baseline)."""
    trigger.asset_state_store = store  # what the triggerer injects before run()
    watch = Watch(trigger)
    task = asyncio.create_task(watch._pump())
    try:
        async with asyncio.timeout(15):
            while not all(n in store.values for n in names):
                assert not task.done(), task
                await asyncio.sleep(POLL / 2)
        yield watch
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """A blocking KMS call (the sync hook, the plain client) off the event loop."""
    return asyncio.to_thread(func, *args, **kwargs)


def make_key(hook: KmsHook, ring_id: str, key_id: str, rotation_period: timedelta | None = None) -> str:
    ring, _ = hook.ensure_key_ring(LOCATION, ring_id)
    key, _ = hook.ensure_crypto_key(
        ring.name,
        key_id,
        purpose="ENCRYPT_DECRYPT",
        algorithm="GOOGLE_SYMMETRIC_ENCRYPTION",
        protection_level="SOFTWARE",
        rotation_period=rotation_period,
    )
    return str(key.name)


@pytest.fixture
def emulator(fresh_emulator: Any, set_conn: Callable[..., str]) -> Any:
    set_conn(endpoint=fresh_emulator.endpoint)
    return fresh_emulator


@pytest.fixture
def hook(emulator: Any) -> Any:
    made = KmsHook()
    yield made
    made.close()


def trigger_for(*keys: str, deadline: float = 5.0) -> KeyRotationTrigger:
    return KeyRotationTrigger(keys=list(keys), poll_interval=POLL, deadline=deadline)


# ----------------------------------------------------------------------------- construction


def test_serialize_round_trip() -> None:
    trigger = KeyRotationTrigger(
        spec_path="/etc/kmsflow/spec.yaml",
        kmsflow_conn_id="kms_prod",
        impersonation_chain=["a@p.iam.gserviceaccount.com"],
        poll_interval=30,
        deadline=12.0,
    )
    for made in (trigger, KeySpecChangeTrigger(spec_path="gs://b/spec.yaml", poll_interval=5)):
        classpath, kwargs = made.serialize()
        module, _, name = classpath.rpartition(".")
        rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)
        # The identity Airflow gives a watcher: same arguments, same trigger.
        assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*rebuilt.serialize())
    assert trigger.serialize()[0] == "kmsflow.airflow.triggers.key_rotation.KeyRotationTrigger"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either a key spec"),
        ({"spec_path": "s.yaml", "keys": []}, "either a key spec"),
        ({"keys": ["projects/p/locations/l/keyRings/r"]}, "not crypto key names"),
        ({"keys": [f"{LOCATION}/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"]}, "not crypto key names"),
        ({"spec_path": "s.yaml", "poll_interval": 0}, "poll_interval"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyRotationTrigger(**kwargs)


# ----------------------------------------------------------------------------- events


def test_fires_once_per_rotation_whoever_rotates(hook: KmsHook, emulator: Any, ring_id: str) -> None:
    manual = make_key(hook, ring_id, "manual")
    auto = make_key(hook, ring_id, "auto", rotation_period=timedelta(days=30))
    plain = emulator.client()

    async def scenario() -> None:
        async with watching(trigger_for(manual, auto), Store(), manual, auto) as watch:
            await watch.quiet()  # the first sight of a key is a baseline, not a rotation

            new = (await sync(hook.rotate, manual)).name  # kmsflow
            assert await watch.next() == {
                "key": manual,
                "previous_primary": f"{manual}/cryptoKeyVersions/1",
                "primary": new,
            }
            await watch.quiet()

            # By hand with the plain client: a new version, then made primary.
            version = await sync(plain.create_crypto_key_version, parent=manual, crypto_key_version={})
            await watch.quiet()  # a new version that is not primary is not a rotation
            version_id = version.name.rsplit("/", 1)[1]
            await sync(plain.update_crypto_key_primary_version, name=manual, crypto_key_version_id=version_id)
            assert await watch.next() == {"key": manual, "previous_primary": new, "primary": version.name}

            await sync(emulator.admin.advance, 31 * DAY)  # Cloud KMS's own schedule
            assert await watch.next() == {
                "key": auto,
                "previous_primary": f"{auto}/cryptoKeyVersions/1",
                "primary": f"{auto}/cryptoKeyVersions/2",
            }
            await watch.quiet()

    run(scenario)


def test_rotations_between_polls_are_one_event(hook: KmsHook, emulator: Any, ring_id: str) -> None:
    key = make_key(hook, ring_id, "k", rotation_period=timedelta(days=1))
    slow = KeyRotationTrigger(keys=[key], poll_interval=2.0, deadline=5.0)

    async def scenario() -> None:
        async with watching(slow, Store(), key) as watch:
            await sync(emulator.admin.advance, 3.5 * DAY)  # three automatic rotations at once
            assert await watch.next() == {
                "key": key,
                "previous_primary": f"{key}/cryptoKeyVersions/1",
                "primary": f"{key}/cryptoKeyVersions/4",
            }
            await watch.quiet(4.5)

    run(scenario)


def test_restart_neither_refires_nor_misses(hook: KmsHook, ring_id: str) -> None:
    key = make_key(hook, ring_id, "k")
    store = Store()  # what survives the triggerer: the asset's state store

    async def scenario() -> None:
        async with watching(trigger_for(key), store, key) as watch:
            first = (await sync(hook.rotate, key)).name
            assert (await watch.next())["primary"] == first
        # Down: a rotation happens meanwhile. The first poll after the restart reports it, once.
        second = (await sync(hook.rotate, key)).name
        async with watching(trigger_for(key), store, key) as watch:
            assert await watch.next() == {"key": key, "previous_primary": first, "primary": second}
            await watch.quiet()
        # Restarted again with nothing new: no event (not re-fired forever).
        async with watching(trigger_for(key), store, key) as watch:
            await watch.quiet()
        assert store.values == {key: second}

    run(scenario)


def test_keys_come_from_the_spec_and_follow_its_edits(hook: KmsHook, ring_id: str, tmp_path: Path) -> None:
    first = make_key(hook, ring_id, "first")
    added = make_key(hook, ring_id, "added")
    spec = tmp_path / "spec.yaml"
    body = "project: kmsflow-test\nlocation: us-central1\nkey_rings:\n  - id: {ring}\n    keys:\n{keys}"
    spec.write_text(body.format(ring=ring_id, keys="      - id: first\n"))
    store = Store()

    async def scenario() -> None:
        trigger = KeyRotationTrigger(spec_path=str(spec), poll_interval=POLL, deadline=5.0)
        async with watching(trigger, store, first) as watch:
            await sync(hook.rotate, added)
            await watch.quiet()  # not in the spec (yet): not watched
            assert added not in store.values
            spec.write_text(body.format(ring=ring_id, keys="      - id: first\n      - id: added\n"))
            async with asyncio.timeout(10):
                while added not in store.values:
                    await asyncio.sleep(POLL)
            new = (await sync(hook.rotate, added)).name
            assert (await watch.next())["primary"] == new
            spec.write_text("key_rings: [")  # broken mid-edit: logged, the watch goes on
            await watch.quiet()
            spec.write_text(body.format(ring=ring_id, keys="      - id: first\n"))
            newer = (await sync(hook.rotate, first)).name
            assert await watch.next() == {
                "key": first,
                "previous_primary": f"{first}/cryptoKeyVersions/1",
                "primary": newer,
            }

    run(scenario)


# ----------------------------------------------------------------------------- cost and failures


def test_one_list_call_per_key_ring_per_poll(hook: KmsHook, emulator: Any, ring_id: str) -> None:
    keys = [make_key(hook, f"{ring_id}-{r}", f"k{i}") for r in ("a", "b") for i in range(3)]
    missing_ring = f"{LOCATION}/keyRings/{ring_id}-not-yet/cryptoKeys/k"  # a spec ahead of KMS

    async def scenario() -> None:
        async with KmsAsyncHook() as async_hook:
            await sync(emulator.admin.reset_calls)
            primaries = await read_primaries(async_hook, [*keys, missing_ring])
            assert primaries == {k: f"{k}/cryptoKeyVersions/1" for k in keys}
            assert await sync(emulator.admin.calls) == {"ListCryptoKeys": 3}  # 3 rings, 6 keys

        trigger = trigger_for(*keys)
        await sync(emulator.admin.reset_calls)
        async with watching(trigger, Store(), *keys) as watch:
            await watch.quiet(20 * POLL)
        calls = await sync(emulator.admin.calls)
        assert set(calls) == {"ListCryptoKeys"}  # never a per-key Get
        assert calls["ListCryptoKeys"] % 2 == 0 and calls["ListCryptoKeys"] >= 2 * 5  # 2 rings a poll

    run(scenario)


def test_survives_transient_and_lasting_unavailability(hook: KmsHook, emulator: Any, ring_id: str) -> None:
    key = make_key(hook, ring_id, "k")

    async def scenario() -> None:
        async with watching(trigger_for(key, deadline=0.5), Store(), key) as watch:
            # Two UNAVAILABLE answers: retried inside the poll (under the hook's deadline).
            await sync(
                emulator.admin.set_faults, script=["UNAVAILABLE", "UNAVAILABLE"], methods=["ListCryptoKeys"]
            )
            new = (await sync(hook.rotate, key)).name
            assert (await watch.next())["primary"] == new
            assert (await sync(emulator.admin.faults))["script_remaining"] == []

            # Unavailable beyond the deadline, for many polls: logged, polled again, never ends.
            await sync(emulator.admin.set_faults, rate=1.0, methods=["ListCryptoKeys"])
            newer = (await sync(hook.rotate, key)).name
            await watch.quiet(1.5)
            injected = (await sync(emulator.admin.faults))["injected"]
            assert injected > 5
            await sync(emulator.admin.set_faults, rate=0.0)
            assert await watch.next() == {"key": key, "previous_primary": new, "primary": newer}

    run(scenario)


# ----------------------------------------------------------------------------- spec changes


def test_spec_change_fires_on_content_not_on_touch(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("project: a\n")
    store = Store()

    async def scenario() -> None:
        trigger = KeySpecChangeTrigger(spec_path=str(spec), poll_interval=POLL)
        async with watching(trigger, store, DIGEST_STATE) as watch:
            before = store.values[DIGEST_STATE]
            spec.write_text("project: a\n")  # same bytes, new mtime
            spec.touch()
            await watch.quiet()
            spec.write_text("project: b\n")
            event = await watch.next()
            assert event["spec_path"] == str(spec) and event["previous_sha256"] == before
            assert event["sha256"] == store.values[DIGEST_STATE] != before
            spec.unlink()  # gone (mid-replace): no event, the watch goes on
            await watch.quiet()
            spec.write_text("project: b\n")  # back as it was: nothing changed
            await watch.quiet()
        spec.write_text("project: c\n")  # edited while the triggerer was down
        async with watching(KeySpecChangeTrigger(spec_path=str(spec), poll_interval=POLL), store) as watch:
            assert (await watch.next())["sha256"] == store.values[DIGEST_STATE]

    run(scenario)


def test_a_run_names_the_rotation_events_that_started_it() -> None:
    from types import SimpleNamespace

    from kmsflow.airflow.tasks.rotate_rewrap import rotation_events

    key = f"{LOCATION}/keyRings/r/cryptoKeys/k"
    fired = {
        "key": key,
        "previous_primary": f"{key}/cryptoKeyVersions/1",
        "primary": f"{key}/cryptoKeyVersions/2",
    }
    events = {
        "kmsflow_key_rotations": [
            SimpleNamespace(extra={"from_trigger": True, "payload": fired}),
            SimpleNamespace(extra={"from_trigger": True, "payload": {"key": key}}),  # not a rotation
            SimpleNamespace(extra=None),
        ]
    }
    assert rotation_events(events) == [fired]
    assert rotation_events(None) == [] and rotation_events({}) == []
