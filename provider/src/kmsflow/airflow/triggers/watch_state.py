"""What a watcher trigger saw last, kept where a restarted triggerer finds it.

A watcher (an ``AssetWatcher``'s ``BaseEventTrigger``) fires when what it watches *changes*, so it
must compare each poll with the previous one -- also across a restart of the triggerer, or a
rotation made while it was down would be missed. Airflow 3.3 injects the watched asset's state store
(``asset_state_store``: rows in the metadata database, scoped to the asset, written through the
execution API) into an event trigger before ``run``; :class:`WatchState` keeps each value there.
Outside a triggerer (a trigger run by hand, a test) there is no store: the values then live in
memory for as long as the trigger runs.
"""

from __future__ import annotations

from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


def trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    """A TriggerEvent (typed: Airflow's constructor is not annotated)."""
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


class WatchState:
    """String values by name: the watched asset's state store, else an in-memory dict."""

    def __init__(self, trigger: BaseEventTrigger) -> None:
        self._store: Any = trigger.asset_state_store
        self._memory: dict[str, str] = {}

    @property
    def persistent(self) -> bool:
        """True when the values survive a restart of the triggerer."""
        return self._store is not None

    async def get(self, name: str) -> str | None:
        if self._store is None:
            return self._memory.get(name)
        value = await self._store.aget(name)
        return None if value is None else str(value)

    async def set(self, name: str, value: str) -> None:
        if self._store is None:
            self._memory[name] = value
        else:
            await self._store.aset(name, value)
