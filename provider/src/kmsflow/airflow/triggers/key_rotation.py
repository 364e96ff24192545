"""Watcher trigger: fire when a crypto key's primary version changes (a rotation).

``kmsflow_rotate_rewrap`` is scheduled on an asset watched by this trigger (and on its daily
timetable), so a rotation -- by Cloud KMS's schedule, by kmsflow, or by hand -- starts the re-wrap
within one poll interval.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from kmsflow.airflow.hooks.kms import KmsAsyncHook, KmsHook
from kmsflow.airflow.triggers.watch_state import WatchState, trigger_event
from kmsflow.kms.errors import KmsNotFoundError
from kmsflow.spec import load_spec

CRYPTO_KEY_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")


def key_ring_of(crypto_key: str) -> str:
    """The key ring holding ``crypto_key`` (a CryptoKey resource name)."""
    return crypto_key.rsplit("/cryptoKeys/", 1)[0]


def spec_keys(spec_path: str) -> list[str]:
    """The crypto key names a key spec declares (the spec read and validated afresh)."""
    return [name for name, _ in load_spec(Path(spec_path)).crypto_keys()]


async def read_primaries(hook: KmsAsyncHook, keys: Iterable[str]) -> dict[str, str]:
    """``{crypto key: primary version}`` for those of ``keys`` that exist and have a primary.

    One ListCryptoKeys call per key ring (per 1000 keys in it), never one call per key: a CryptoKey
    carries its primary version. A key ring that does not exist yet holds no key to watch.
    """
    wanted = set(keys)
    found: dict[str, str] = {}
    for ring in sorted({key_ring_of(k) for k in wanted}):
        try:
            listed = await hook.list_crypto_keys(ring)
        except KmsNotFoundError:
            continue
        found.update({k.name: k.primary.name for k in listed if k.name in wanted and k.primary.name})
    return found


class KeyRotationTrigger(BaseEventTrigger):
    """Fire one event per observed rotation of a watched key: ``{"key", "previous_primary", "primary"}``.

    Watches the keys of the key spec at ``spec_path`` (read again at each poll, so a key added to the
    spec is watched from its next poll) or the crypto key names in ``keys``. Each poll costs one
    ListCryptoKeys per key ring holding a watched key, whatever the number of keys
    (``docs/AIRFLOW.md``, "Rotation events").

    Memory (:class:`~kmsflow.airflow.triggers.watch_state.WatchState`: the watched asset's state
    store, so it survives a restart of the triggerer): the first time a key is seen its primary is
    recorded *without* firing -- there is nothing to compare it with, and envelopes left stale
    before the watcher started are the daily scheduled run's to find. From then on, a primary
    differing from the recorded one fires, including one that changed while the triggerer was down
    (the first poll after the restart compares with the stored value). The new primary is recorded
    right after the event is handed to the triggerer: a crash in between fires it again after the
    restart (at least once; re-wrapping twice converges) instead of losing it. Several rotations
    between two polls are one event (oldest recorded -> newest primary).

    Errors never end the watch (a watcher that stops, stops scheduling): an unreadable spec, a
    denied or failing KMS call (transient ones are retried by the hook under its deadline first)
    are logged and polled again.
    """

    def __init__(
        self,
        *,
        spec_path: str | None = None,
        keys: Sequence[str] | None = None,
        kmsflow_conn_id: str = KmsHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if (spec_path is None) == (keys is None):
            raise ValueError("KeyRotationTrigger watches either a key spec (spec_path) or keys, not both")
        bad = [k for k in keys or () if not CRYPTO_KEY_NAME.match(k)]
        if bad:
            raise ValueError(f"not crypto key names (projects/.../cryptoKeys/KEY): {bad}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.spec_path = spec_path
        self.keys = list(keys) if keys is not None else None
        self.kmsflow_conn_id = kmsflow_conn_id
        self.impersonation_chain = impersonation_chain
        self.poll_interval = float(poll_interval)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "spec_path": self.spec_path,
                "keys": self.keys,
                "kmsflow_conn_id": self.kmsflow_conn_id,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def watched_keys(self) -> list[str]:
        """The keys to watch now (the spec is read in a thread: the event loop never blocks)."""
        if self.keys is not None:
            return self.keys
        assert self.spec_path is not None
        return await asyncio.to_thread(spec_keys, self.spec_path)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = WatchState(self)
        if not state.persistent:
            self.log.warning("No asset state store: rotations are remembered only while this trigger runs")
        async with KmsAsyncHook(
            kmsflow_conn_id=self.kmsflow_conn_id,
            impersonation_chain=self.impersonation_chain,
            deadline=self.deadline,
        ) as hook:
            while True:
                try:
                    keys = await self.watched_keys()
                    primaries = await read_primaries(hook, keys)
                    for key in keys:
                        primary = primaries.get(key)
                        previous = await state.get(key)
                        if primary is None or primary == previous:
                            continue
                        if previous is None:
                            self.log.info("Watching %s: primary %s", key, primary)
                        else:
                            self.log.info("%s rotated: %s -> %s", key, previous, primary)
                            yield trigger_event(
                                {"key": key, "previous_primary": previous, "primary": primary}
                            )
                        await state.set(key, primary)
                except Exception as exc:  # logged; the next poll tries again
                    self.log.warning(
                        "Polling for rotations failed (%s: %s); will poll again", type(exc).__name__, exc
                    )
                await asyncio.sleep(self.poll_interval)
