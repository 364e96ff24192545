"""Trigger that waits, in the triggerer, for a CryptoKeyVersion to reach a state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from kmsflow.airflow.hooks.kms import KmsAsyncHook, KmsHook
from kmsflow.kms.errors import KmsError, KmsTransientError

STATES = ("ENABLED", "DISABLED", "DESTROY_SCHEDULED", "DESTROYED")
"""The states a sensor may wait for."""

_REACHABLE = {
    "ENABLED": {"ENABLED", "DISABLED", "DESTROY_SCHEDULED", "DESTROYED"},
    "DISABLED": {"ENABLED", "DISABLED", "DESTROY_SCHEDULED", "DESTROYED"},
    "DESTROY_SCHEDULED": {"ENABLED", "DISABLED", "DESTROY_SCHEDULED", "DESTROYED"},
    "DESTROYED": {"DESTROYED"},
}
"""From each state, the states a version can still reach (DESTROYED is final)."""


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def normalize_states(states: str | Iterable[str]) -> tuple[str, ...]:
    """Target states upper-cased, de-duplicated and checked against ``STATES``."""
    names = [states] if isinstance(states, str) else list(states)
    wanted = tuple(dict.fromkeys(s.strip().upper() for s in names))
    unknown = [s for s in wanted if s not in STATES]
    if unknown or not wanted:
        raise ValueError(f"target states must be among {', '.join(STATES)}; got {list(names)}")
    return wanted


def unreachable(state: str, targets: Sequence[str]) -> bool:
    """True when a version in ``state`` can never reach any of ``targets`` (it is DESTROYED)."""
    return not (_REACHABLE.get(state, set(STATES)) & set(targets))


class KeyVersionStateTrigger(BaseTrigger):
    """Poll a key version until its state is one of ``target_states``.

    Fires once: ``{"status": "success", "name", "state"}`` when reached, or ``{"status": "error",
    "name", "state", "message"}`` when it cannot be (the version is DESTROYED, or does not exist, or
    the caller is denied). Transient KMS errors are retried by the hook and, beyond its deadline,
    simply polled again; the sensor's ``timeout`` bounds the whole wait.
    """

    def __init__(
        self,
        version_name: str,
        target_states: Sequence[str],
        *,
        kmsflow_conn_id: str = KmsHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        poll_interval: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.version_name = version_name
        self.target_states = normalize_states(target_states)
        self.kmsflow_conn_id = kmsflow_conn_id
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "version_name": self.version_name,
                "target_states": list(self.target_states),
                "kmsflow_conn_id": self.kmsflow_conn_id,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    def _hook(self) -> KmsAsyncHook:
        return KmsAsyncHook(
            kmsflow_conn_id=self.kmsflow_conn_id,
            impersonation_chain=self.impersonation_chain,
            deadline=self.deadline,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with self._hook() as hook:
            while True:
                try:
                    version = await hook.get_crypto_key_version(self.version_name)
                except KmsTransientError as exc:
                    self.log.warning("Polling %s: %s; will poll again", self.version_name, exc)
                    await asyncio.sleep(self.poll_interval)
                    continue
                except KmsError as exc:
                    yield _event(
                        {"status": "error", "name": self.version_name, "state": None, "message": str(exc)}
                    )
                    return
                state = version.state.name
                if state in self.target_states:
                    yield _event({"status": "success", "name": version.name, "state": state})
                    return
                if unreachable(state, self.target_states):
                    message = (
                        f"{version.name} is {state} and can never become {' or '.join(self.target_states)}"
                    )
                    yield _event(
                        {"status": "error", "name": version.name, "state": state, "message": message}
                    )
                    return
                self.log.info(
                    "%s is %s; waiting for %s", version.name, state, " or ".join(self.target_states)
                )
                await asyncio.sleep(self.poll_interval)
