"""What every kmsflow operator shares: the connection arguments, the hook, error mapping, the link."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.links import KmsConsoleLink
from kmsflow.audit import AuditLog
from kmsflow.kms.errors import KmsError, KmsTransientError

AUDIT_FIELDS = ("audit_log", "reason")
"""Templated on every state-changing operator (e.g. ``reason="ticket {{ params.ticket }}"``)."""


@contextmanager
def airflow_errors() -> Iterator[None]:
    """Re-raise kmsflow errors as Airflow ones, deciding whether a retry could help.

    Transient KMS errors that outlived the retry deadline become ``AirflowException`` (the task's own
    ``retries`` may still succeed later). Everything else — permission denied, not found, a guard
    refusing to disable the primary, an immutable field — becomes ``AirflowFailException``: retrying
    the same request cannot change the answer, so the task fails at once with the actionable message.
    """
    try:
        yield
    except KmsTransientError as exc:
        raise AirflowException(str(exc)) from exc
    except (KmsError, ValueError) as exc:
        raise AirflowFailException(str(exc)) from exc


class KmsBaseOperator(BaseOperator):
    """Base for kmsflow operators.

    :param kmsflow_conn_id: the ``kmsflow`` connection (emulator endpoint/principal or GCP credentials).
    :param impersonation_chain: service account(s) to impersonate.
    :param deadline: total retry deadline (seconds) for transient KMS errors; default from the connection.
    :param audit_log: audit log location (path or ``gs://``); default: the connection's ``audit_log``.
    :param reason: why this change is made, recorded in the audit event (default names the task).

    Subclasses set ``console_resource`` (the key ring, key or version acted on) so the
    "Cloud KMS console" extra link points at it, and call :meth:`audit` for every change that landed
    (invariant 5); XCom values carry names and states only.
    """

    operator_extra_links: Collection[BaseOperatorLink] = (KmsConsoleLink(),)
    template_fields: Sequence[str] = ()
    ui_color = "#d6e9ff"

    def __init__(
        self,
        *,
        kmsflow_conn_id: str = KmsHook.default_conn_name,
        impersonation_chain: str | Sequence[str] | None = None,
        deadline: float | None = None,
        audit_log: str | None = None,
        reason: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kmsflow_conn_id = kmsflow_conn_id
        self.impersonation_chain = impersonation_chain
        self.deadline = deadline
        self.audit_log = audit_log
        self.reason = reason
        self.console_resource: str | None = None

    @cached_property
    def hook(self) -> KmsHook:
        """The hook, built on first use (at execute time, never at DAG parse time)."""
        return KmsHook(
            kmsflow_conn_id=self.kmsflow_conn_id,
            impersonation_chain=self.impersonation_chain,
            deadline=self.deadline,
        )

    def audit(
        self, context: Context, action: str, resource: str, evidence: Mapping[str, Any] | None = None
    ) -> None:
        """Record one landed state change in the audit log (or warn that none is configured)."""
        location = self.audit_log or self.hook.audit_log
        if not location:
            self.log.warning(
                "No audit log configured (connection extra 'audit_log' or audit_log=): "
                "%s of %s is only in this task log",
                action,
                resource,
            )
            return
        log = AuditLog(location, actor=self.hook.actor(), run=run_label(context, self.task_id))
        log.append(action, resource, reason=self.reason or f"Airflow task {self.task_id}", evidence=evidence)


def run_label(context: Context, task_id: str) -> str:
    """``dag_id/run_id/task_id`` of the running task instance (``airflow/<task_id>`` outside one)."""
    ti: Any = context.get("ti")
    if ti is None:
        return f"airflow/{task_id}"
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
