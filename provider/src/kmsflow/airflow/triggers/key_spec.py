"""Watcher trigger: fire when the key spec's content changes.

``kmsflow_provision`` is scheduled on an asset watched by this trigger (and on its drift-repair
timetable), so a key or tenant added to the spec is created within one poll interval.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from kmsflow.airflow.triggers.watch_state import WatchState, trigger_event
from kmsflow.envelope.storage import resolve

DIGEST_STATE = "spec_sha256"
"""The name under which the last seen content digest is kept (:class:`WatchState`)."""


def spec_digest(spec_path: str) -> str:
    """SHA-256 of the spec's bytes (a local path, ``file://`` or ``gs://`` URL), hex."""
    return hashlib.sha256(resolve(spec_path).read_bytes()).hexdigest()


class KeySpecChangeTrigger(BaseEventTrigger):
    """Fire ``{"spec_path", "previous_sha256", "sha256"}`` each time the spec's content changes.

    The content is compared by SHA-256, not by modification time: a touch, a copy with the same
    bytes or an object re-uploaded unchanged does not fire, an edit within the same second does.
    As :class:`~kmsflow.airflow.triggers.key_rotation.KeyRotationTrigger`, the first digest ever
    seen is recorded without firing, the record lives in the asset's state store (an edit made
    while the triggerer was down fires after its restart), and a spec that cannot be read
    (missing, mid-upload, denied) is logged and read again at the next poll -- it does not fire:
    the scheduled run reports the problem.
    """

    def __init__(self, *, spec_path: str, poll_interval: float = 60.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.spec_path = spec_path
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"spec_path": self.spec_path, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = WatchState(self)
        while True:
            try:
                digest = await asyncio.to_thread(spec_digest, self.spec_path)
                previous = await state.get(DIGEST_STATE)
                if digest != previous:
                    if previous is None:
                        self.log.info("Watching %s: sha256 %s", self.spec_path, digest)
                    else:
                        self.log.info("%s changed: sha256 %s -> %s", self.spec_path, previous, digest)
                        yield trigger_event(
                            {"spec_path": self.spec_path, "previous_sha256": previous, "sha256": digest}
                        )
                    await state.set(DIGEST_STATE, digest)
            except Exception as exc:  # logged; the next poll tries again
                self.log.warning(
                    "Reading %s failed (%s: %s); will read again", self.spec_path, type(exc).__name__, exc
                )
            await asyncio.sleep(self.poll_interval)
