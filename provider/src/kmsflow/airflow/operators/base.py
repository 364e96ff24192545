"""What every kmsflow operator shares: the connection arguments, the hook, error mapping, the link."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context

from kmsflow.airflow.errors import airflow_errors
from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.links import KmsConsoleLink
from kmsflow.audit import AuditLog

AUDIT_FIELDS = ("audit_log", "reason")
"""Templated on every state-changing operator (e.g. ``reason="ticket {{ params.ticket }}"``)."""

__all__ = ["AUDIT_FIELDS", "KmsBaseOperator", "airflow_errors", "task_run_label"]


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
        log = AuditLog(location, actor=self.hook.actor(), run=task_run_label(context, self.task_id))
        log.append(action, resource, reason=self.reason or f"Airflow task {self.task_id}", evidence=evidence)


def task_run_label(context: Context, task_id: str) -> str:
    """``dag_id/run_id/task_id`` of the running task instance (``airflow/<task_id>`` outside one)."""
    ti: Any = context.get("ti")
    if ti is None:
        return f"airflow/{task_id}"
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
