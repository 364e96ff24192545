"""What the kmsflow DAGs' tasks share.

The spec path param (default, resolution), spec loading with Airflow-shaped errors, the hook scope,
the run label, the audit log location, the run's clock and the run type. Kept Airflow-light (only
exceptions) so the task modules stay plain, testable functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors
from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.audit import AuditLog
from kmsflow.clock import utc_now
from kmsflow.kms.clock import emulator_now
from kmsflow.spec import KeySpec, SpecError, load_spec

log = logging.getLogger(__name__)

MANUAL_RUN_TYPE = "manual"
"""``DagRunType.MANUAL``'s value: a person (UI form, CLI) or an API/CI call triggered the run."""
SPEC_ENV = "KMSFLOW_SPEC"
SINGLE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})
"""Executors whose tasks all run on the scheduler's machine; any other (Celery, Kubernetes, Edge, a
custom one) may run each task on a different machine."""


def default_spec_path(repo_root: Path) -> str:
    """``KMSFLOW_SPEC`` if set, else the example spec shipped in the repository."""
    return os.environ.get(SPEC_ENV) or str(repo_root / "examples" / "specs" / "seed.yaml")


def spec_path_param(repo_root: Path) -> Param:
    """The ``spec_path`` param every kmsflow DAG takes (one form field, one meaning)."""
    return Param(
        default_spec_path(repo_root),
        type="string",
        title="Key spec",
        description="YAML key spec; relative paths are resolved against the repository root "
        f"(default: ${SPEC_ENV}, else examples/specs/seed.yaml).",
    )


def resolve_spec_path(value: str, repo_root: Path) -> Path:
    """An absolute path; a relative one is taken relative to the repository root (not the cwd,
    which differs between workers, ``airflow dags test`` and the scheduler)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (repo_root / path).resolve()


@contextmanager
def hook_scope(kmsflow_conn_id: str) -> Iterator[KmsHook]:
    """A :class:`KmsHook` for one task's work, its client closed when the block ends (however)."""
    hook = KmsHook(kmsflow_conn_id=kmsflow_conn_id)
    try:
        yield hook
    finally:
        hook.close()


def run_label(dag_id: str, run_id: str | None) -> str:
    """``dag_id/run_id``: the ``run`` field of audit events, so each event leads back to its run.

    (Operators label their events per task instance: ``operators.base.task_run_label``.)
    """
    return f"{dag_id}/{run_id or 'unknown'}"


def load_key_spec(spec_path: str | Path) -> KeySpec:
    """The validated spec; every problem (with its field path) becomes a non-retryable failure."""
    try:
        return load_spec(Path(spec_path))
    except SpecError as exc:
        raise AirflowFailException(str(exc)) from exc
    except OSError as exc:
        raise AirflowFailException(f"cannot read the key spec {spec_path}: {exc}") from exc


def distributed_executors() -> list[str]:
    """The configured executors (``[core] executor``: comma separated, ``alias:module.Class``
    allowed) that may run tasks on other machines, by class name; empty on one machine."""
    from airflow.sdk.configuration import conf

    found = []
    for entry in (conf.get("core", "executor", fallback="") or "").split(","):
        name = entry.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if name and name not in SINGLE_MACHINE_EXECUTORS:
            found.append(name)
    return found


def require_shared(spec: KeySpec, places: Iterable[str], *, what: str) -> None:
    """Refuse local ``places`` (roots or the audit log) that differ per machine.

    With a distributed executor each task may land on another worker, where a local directory is
    another directory: a scan would prove "no references" over whatever that worker holds, and the
    audit log (shred's soak clock) would split into one file per worker. Such places must be on an
    object store (``gs://``) or under the spec's ``shared_paths:`` (a volume mounted at the same
    path on every worker). Raised before any KMS call or write.
    """
    executors = distributed_executors()
    if not executors:
        return
    unshared = spec.unshared(places)
    if unshared:
        many = len(unshared) > 1
        raise AirflowFailException(
            f"Airflow's {', '.join(executors)} runs tasks on several machines, where a local path is "
            f"a different directory on each: the {what}{'s' if many else ''} {', '.join(unshared)} "
            f"{'are' if many else 'is'} local and not under the key spec's 'shared_paths:'. Put "
            f"{'them' if many else 'it'} on gs://, or, if a volume is mounted at that path on every "
            "worker, list its directory under 'shared_paths:' in the key spec. Nothing was changed."
        )


def audit_location(spec: KeySpec, hook: KmsHook) -> str | None:
    """The spec's ``audit_log`` first, else the connection's ``audit_log`` extra.

    The spec wins because shred reads its soak clock back from the audit log: every run over one
    spec must use the same log, whichever connection (worker identity) it runs with.
    """
    return spec.audit_log or hook.audit_log


def open_audit(spec: KeySpec, hook: KmsHook, run: str, *, required_for: str | None = None) -> AuditLog | None:
    """An :class:`AuditLog` stamped with the hook's identity, ``run`` and the run's clock.

    The clock is :func:`kms_now` read once (one emulator RPC) and then advanced by the wall clock,
    so every event of the run -- rotate, rewrap, re-encrypt, shred -- carries KMS time.

    ``required_for`` names an action that changes KMS state: without a configured location it is
    refused before anything happens (invariant 5); otherwise None is returned and the caller warns.
    """
    location = audit_location(spec, hook)
    if not location:
        if required_for:
            raise AirflowFailException(
                f"{required_for} changes Cloud KMS state and must be audited: set 'audit_log:' in the "
                "key spec or the 'audit_log' extra of the kmsflow connection. Nothing was changed."
            )
        return None
    require_shared(spec, [location], what="audit log")
    offset = kms_now(hook) - utc_now()
    with airflow_errors():
        return AuditLog(location, actor=hook.actor(), run=run, clock=lambda: utc_now() + offset)


def audit_and_clock(spec: KeySpec, hook: KmsHook, run: str, *, action: str) -> tuple[AuditLog, datetime]:
    """For a step that changes KMS state (``action`` names it): the required audit log and the
    run's clock (:func:`kms_now`); fails before anything happens when no audit log is configured."""
    audit = open_audit(spec, hook, run, required_for=action)
    assert audit is not None
    return audit, kms_now(hook)


def kms_now(hook: KmsHook) -> datetime:
    """The run's clock: Cloud KMS time (UTC now), or the kmsflow emulator's clock.

    Shred and erasure compare audit-event times with KMS timestamps (``create_time``,
    ``destroy_time``); against the emulator (whose clock tests move) the wall clock would be wrong.
    """
    endpoint = hook.endpoint
    if endpoint:
        try:
            return emulator_now(endpoint, timeout=5.0)
        except Exception as exc:  # an endpoint without the Admin service: a proxy to real KMS
            log.warning("cannot read the emulator clock at %s (%s); using UTC now", endpoint, exc)
    return utc_now()


def is_manual(run_type: object) -> bool:
    """True for a run a person or an API call triggered; scheduled, backfill and asset runs are not."""
    value = getattr(run_type, "value", run_type)
    return str(value) == MANUAL_RUN_TYPE
