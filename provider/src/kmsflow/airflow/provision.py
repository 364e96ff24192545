"""The steps of the ``kmsflow_provision`` DAG, as plain functions over a ``KmsHook``.

Kept out of the DAG file so they are importable, testable and reusable (e.g. in a user's own DAG),
while ``dags/kmsflow_provision.py`` stays a thin TaskFlow wiring. Each returns JSON-safe dicts for
XCom — resource names, settings and IAM members only; a key spec holds nothing secret — and turns
kmsflow errors into Airflow failures with the actionable message (``SpecError`` lists every field
path at fault; a conflict names the immutable field; drift after apply shows what still differs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.operators.base import airflow_errors
from kmsflow.audit import AuditLog, provision_recorder
from kmsflow.spec import Change, Plan, SpecDriftError, SpecError, apply, load_spec, plan, verify

SPEC_ENV = "KMSFLOW_SPEC"


def default_spec_path(repo_root: Path) -> str:
    """``KMSFLOW_SPEC`` if set, else the example spec shipped in the repository."""
    return os.environ.get(SPEC_ENV) or str(repo_root / "examples" / "specs" / "seed.yaml")


def resolve_spec_path(value: str, repo_root: Path) -> Path:
    """An absolute path; a relative one is taken relative to the repository root (not the cwd,
    which differs between workers, ``airflow dags test`` and the scheduler)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (repo_root / path).resolve()


def validate_spec(spec_path: Path) -> dict[str, Any]:
    """Load and validate the spec (no KMS call); a summary of what it declares."""
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise AirflowFailException(str(exc)) from exc
    return {
        "spec_path": str(spec_path),
        "location": spec.location_name,
        "key_rings": [spec.key_ring_name(ring) for ring in spec.key_rings],
        "crypto_keys": [name for name, _ in spec.crypto_keys()],
    }


def plan_spec(hook: KmsHook, spec_path: Path) -> Plan:
    """Diff the spec against live KMS (reads only)."""
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        raise AirflowFailException(str(exc)) from exc
    with airflow_errors(), hook.deadline_scope():
        return plan(spec, hook.get_conn())


def apply_plan(
    hook: KmsHook, plan_dict: dict[str, Any], log: Any, *, audit_log: str | None = None, run: str = "airflow"
) -> dict[str, Any]:
    """Apply the reviewed plan (from XCom); each landed change is logged and audited as it happens.

    ``audit_log`` defaults to the connection's ``audit_log`` extra; without either, changes are only
    in the task log (and a warning says so).
    """
    location = audit_log or hook.audit_log
    record = (
        provision_recorder(AuditLog(location, actor=hook.actor(), run=run), run=run) if location else None
    )
    if record is None:
        log.warning("No audit log configured (connection extra 'audit_log'): changes are only logged here")

    def on_change(change: Change) -> None:
        log.info("applied: %s", change.render())
        if record is not None:
            record(change)

    the_plan = Plan.from_dict(plan_dict)
    with airflow_errors(), hook.deadline_scope():
        report = apply(the_plan, hook.get_conn(), on_change=on_change)
    log.info("%s", report.render())
    return report.to_dict()


def verify_plan_spec(hook: KmsHook, plan_dict: dict[str, Any]) -> dict[str, Any]:
    """Plan again for the same spec; fail unless nothing is left to change."""
    the_plan = Plan.from_dict(plan_dict)
    try:
        with airflow_errors(), hook.deadline_scope():
            verify(the_plan, hook.get_conn())
    except SpecDriftError as exc:
        raise AirflowFailException(str(exc)) from exc
    return {"converged": True, "location": the_plan.spec.location_name}
