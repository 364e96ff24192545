"""The steps of the ``kmsflow_provision`` DAG, as plain functions over a ``KmsHook``.

Kept out of the DAG file so they are importable, testable and reusable (e.g. in a user's own DAG),
while ``dags/kmsflow_provision.py`` stays a thin TaskFlow wiring. Each returns a JSON-safe payload
(:mod:`kmsflow.airflow.tasks.payloads`) for XCom — resource names, settings and IAM members only; a
key spec holds nothing secret — and turns kmsflow errors into Airflow failures with the actionable
message (``SpecError`` lists every field path at fault; a conflict names the immutable field; drift
after apply shows what still differs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors
from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks.common import audit_location
from kmsflow.airflow.tasks.payloads import (
    ApplyPayload,
    ConvergedPayload,
    PlanPayload,
    SpecSummary,
    report_payload,
)
from kmsflow.audit import AuditLog, provision_recorder
from kmsflow.spec import Change, KeySpec, Plan, SpecDriftError, SpecError, apply, load_spec, plan, verify


def _load(spec_path: Path) -> KeySpec:
    """The spec; its problems (each with its field path) fail the task, unretried."""
    try:
        return load_spec(spec_path)
    except SpecError as exc:
        raise AirflowFailException(str(exc)) from exc


def validate_spec(spec_path: Path) -> SpecSummary:
    """Load and validate the spec (no KMS call); a summary of what it declares."""
    spec = _load(spec_path)
    return {
        "spec_path": str(spec_path),
        "location": spec.location_name,
        "key_rings": [spec.key_ring_name(ring) for ring in spec.key_rings],
        "crypto_keys": [name for name, _ in spec.crypto_keys()],
    }


def plan_spec(hook: KmsHook, spec_path: Path) -> Plan:
    """Diff the spec against live KMS (reads only); ``plan_payload`` makes it the XCom."""
    spec = _load(spec_path)
    with airflow_errors(), hook.deadline_scope():
        return plan(spec, hook.get_conn())


def plan_payload(the_plan: Plan) -> PlanPayload:
    """The plan as XCom (``Plan.from_dict`` rebuilds it in ``apply`` and ``verify``)."""
    return report_payload(the_plan.to_dict(), PlanPayload)


def apply_plan(
    hook: KmsHook, plan_dict: PlanPayload, log: Any, *, audit_log: str | None = None, run: str = "airflow"
) -> ApplyPayload:
    """Apply the reviewed plan (from XCom); each landed change is logged and audited as it happens.

    ``audit_log`` defaults to the spec's ``audit_log:``, else the connection's ``audit_log`` extra
    (:func:`~kmsflow.airflow.tasks.common.audit_location`); without any, changes are only in the
    task log (and a warning says so).
    """
    the_plan = Plan.from_dict(dict(plan_dict))
    location = audit_log or audit_location(the_plan.spec, hook)
    record = (
        provision_recorder(AuditLog(location, actor=hook.actor(), run=run), run=run) if location else None
    )
    if record is None:
        log.warning("No audit log configured (connection extra 'audit_log'): changes are only logged here")

    def on_change(change: Change) -> None:
        log.info("applied: %s", change.render())
        if record is not None:
            record(change)

    with airflow_errors(), hook.deadline_scope():
        report = apply(the_plan, hook.get_conn(), on_change=on_change)
    log.info("%s", report.render())
    return report_payload(report.to_dict(), ApplyPayload)


def verify_plan_spec(hook: KmsHook, plan_dict: PlanPayload) -> ConvergedPayload:
    """Plan again for the same spec; fail unless nothing is left to change."""
    the_plan = Plan.from_dict(dict(plan_dict))
    try:
        with airflow_errors(), hook.deadline_scope():
            verify(the_plan, hook.get_conn())
    except SpecDriftError as exc:
        raise AirflowFailException(str(exc)) from exc
    return {"converged": True, "location": the_plan.spec.location_name}
