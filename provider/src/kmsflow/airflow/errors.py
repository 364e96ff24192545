"""How kmsflow errors become Airflow ones: the one mapping the operators and the DAG tasks share.

Retryable (``AirflowException``: the task's ``retries`` apply) only when waiting could help;
everything a retry cannot fix is ``AirflowFailException`` with the actionable message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from kmsflow.audit import AuditLogError
from kmsflow.kms.errors import KmsError, KmsTransientError


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


@contextmanager
def audit_errors() -> Iterator[None]:
    """An unreadable or unwritable audit log stops the task (never retried blindly: a human looks)."""
    try:
        yield
    except AuditLogError as exc:
        raise AirflowFailException(f"audit log: {exc}") from exc
