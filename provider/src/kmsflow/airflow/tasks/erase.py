"""The steps of the ``kmsflow_erase`` DAG: tenant erasure (``lifecycle.erase_tenant``) and its proof.

Erasure is the one kmsflow action allowed to make artifacts undecryptable, so every guard is the
library's (only ``tenant:`` keys; the typed tenant name and key id; a reason) and runs before any
KMS call. The Airflow side adds: an audit log is required, the run's clock, and a task that fails
whenever the proof does not hold -- the report (XCom + log) says which envelope is the problem.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors, audit_errors
from kmsflow.airflow.hooks.kms import KmsHook, within_deadline
from kmsflow.airflow.tasks.common import audit_and_clock, load_key_spec, require_shared
from kmsflow.airflow.tasks.payloads import ErasureReportPayload, report_payload
from kmsflow.lifecycle import ErasureReport, erase_tenant, prove_erasure

log = logging.getLogger(__name__)


@within_deadline
def erase(
    hook: KmsHook,
    spec_path: str,
    key: str,
    *,
    confirm_tenant: str,
    confirm_key: str,
    reason: str,
    run: str,
) -> ErasureReport:
    """Schedule every version of the tenant key for destruction (primary included), then prove it.

    Right after erasure the versions are DESTROY_SCHEDULED (restorable until ``destroy_time``);
    the proof already requires every tenant envelope to refuse to unwrap and every other envelope
    to be byte-identical and to unwrap.
    """
    spec = load_key_spec(spec_path)
    require_shared(spec, spec.roots(), what="root")
    audit, now = audit_and_clock(spec, hook, run, action="erasure")
    with airflow_errors(), audit_errors():
        report = erase_tenant(
            hook.get_conn(),
            spec,
            key,
            confirm_tenant=confirm_tenant,
            confirm_key=confirm_key,
            audit=audit,
            run_id=run,
            reason=reason,
            now=now,
        )
    log.warning("%s", report.render())
    return report


@within_deadline
def prove(hook: KmsHook, spec_path: str, key: str, *, run: str) -> ErasureReport:
    """Re-run the proof (reads only, plus an ``erase-proved`` event once every version is DESTROYED)."""
    spec = load_key_spec(spec_path)
    require_shared(spec, spec.roots(), what="root")
    audit, now = audit_and_clock(spec, hook, run, action="erasure proof")
    with airflow_errors(), audit_errors():
        report = prove_erasure(hook.get_conn(), spec, key, audit=audit, run_id=run, now=now)
    log.info("%s", report.render())
    return report


def failure(report: ErasureReport, *, require_destroyed: bool) -> str | None:
    """Why the task must fail (None: it holds).

    ``require_destroyed`` is for the later proof run: it exists to confirm DESTROYED, so a version
    still in its grace period is a failure that says when to run it again.
    """
    if not report.ok:
        first = "; ".join(f"{c.url}: {c.detail}" for c in report.problems[:5])
        scan = "" if report.scan_complete else f" scan {report.scan_id} incomplete;"
        return f"erasure of {report.key} NOT PROVED:{scan} {len(report.problems)} problem(s) {first}".strip()
    if require_destroyed and not report.all_destroyed:
        pending = [v for v in report.versions if v.state_after != "DESTROYED"]
        when = max((v.destroy_time or "" for v in pending), default="") or "unknown"
        return (
            f"erasure of {report.key} proved, but {len(pending)} version(s) are not DESTROYED yet "
            f"(grace period; Cloud KMS destroys them by {when}); run the proof again after that"
        )
    return None


def publish(report: ErasureReport, ti: Any, *, require_destroyed: bool) -> ErasureReportPayload:
    """The report to XCom (always, also when failing), then fail if the proof does not hold."""
    data = report_payload(report.to_dict(), ErasureReportPayload)
    reason = failure(report, require_destroyed=require_destroyed)
    if reason:
        ti.xcom_push(key="report", value=data)
        raise AirflowFailException(reason)
    return data
