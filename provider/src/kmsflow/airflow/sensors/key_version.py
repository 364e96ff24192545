"""Sensor waiting for a CryptoKeyVersion to reach a state (deferrable by default)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.links import KmsConsoleLink
from kmsflow.airflow.triggers.key_version import KeyVersionStateTrigger, normalize_states, unreachable
from kmsflow.kms.errors import KmsError, KmsTransientError


class KeyVersionStateSensor(BaseSensorOperator):
    """Wait until ``version_name`` is in ``target_state`` (one state or several).

    Typical uses: after scheduling destruction, wait for ``DESTROYED`` before recording the shred as
    done; after an automatic rotation, wait for a new version to be ``ENABLED``. Deferrable by default
    so a long wait (days of DESTROY_SCHEDULED) holds no worker slot; ``deferrable=False`` pokes.
    A version that can no longer reach the target (it is DESTROYED) fails the task immediately
    instead of waiting for the timeout.

    XCom: ``{"name", "state"}``.
    """

    template_fields: Sequence[str] = ("version_name", "target_state")
    operator_extra_links = (KmsConsoleLink(),)

    def __init__(
        self,
        *,
        version_name: str,
        target_state: str | Iterable[str] = "ENABLED",
        kmsflow_conn_id: str = KmsHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        deadline: float | None = None,
        deferrable: bool = True,
        poke_interval: timedelta | float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.version_name = version_name
        self.target_state = target_state if isinstance(target_state, str) else list(target_state)
        self.kmsflow_conn_id = kmsflow_conn_id
        self.impersonation_chain = impersonation_chain
        self.deadline = deadline
        self.deferrable = deferrable
        self.console_resource: str | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        return normalize_states(self.target_state)

    def execute(self, context: Context) -> Any:
        self.console_resource = self.version_name
        if not self.deferrable:
            return super().execute(context)
        # One cheap check first: no deferral round-trip when the state is already there.
        done = self.poke(context)
        if done:
            return done.xcom_value
        self.defer(
            trigger=KeyVersionStateTrigger(
                self.version_name,
                self.targets,
                kmsflow_conn_id=self.kmsflow_conn_id,
                impersonation_chain=self.impersonation_chain,
                poll_interval=self.poke_interval,
                deadline=self.deadline,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        hook = KmsHook(
            kmsflow_conn_id=self.kmsflow_conn_id,
            impersonation_chain=self.impersonation_chain,
            deadline=self.deadline,
        )
        try:
            version = hook.get_crypto_key_version(self.version_name)
        except KmsTransientError as exc:
            self.log.warning("Poking %s: %s; will poke again", self.version_name, exc)
            return PokeReturnValue(False)
        except KmsError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            hook.close()
        state = version.state.name
        targets = self.targets
        if state in targets:
            self.log.info("%s is %s", version.name, state)
            return PokeReturnValue(True, {"name": version.name, "state": state})
        if unreachable(state, targets):
            raise AirflowFailException(
                f"{version.name} is {state} and can never become {' or '.join(targets)}"
            )
        self.log.info("%s is %s; waiting for %s", version.name, state, " or ".join(targets))
        return PokeReturnValue(False)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: success returns the state, anything else fails."""
        if event.get("status") == "success":
            self.log.info("%s is %s", event["name"], event["state"])
            return {"name": event["name"], "state": event["state"]}
        message = event.get("message") or f"unexpected trigger event {event!r}"
        if event.get("status") == "error":
            raise AirflowFailException(message)
        raise AirflowException(message)
