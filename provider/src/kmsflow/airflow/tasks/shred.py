"""The steps of the ``kmsflow_shred`` DAG: one ``lifecycle.run_shred`` step per run, and restore.

``run_shred`` is a resumable state machine (disable → soak → destroy → confirm DESTROYED), so the
DAG calls it exactly once per run and lets the schedule drive it forward; every proof, guard and
audit event is the library's. What this module adds is the Airflow side: which runs are dry by
default (manual ones), the confirmation a manual live run needs, the run's clock, and turning the
report into XCom, a readable log and -- when something needs a human -- a failed task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors, audit_errors
from kmsflow.airflow.hooks.kms import KmsHook, within_deadline
from kmsflow.airflow.tasks.common import audit_and_clock, load_key_spec, require_shared
from kmsflow.airflow.tasks.payloads import RestoredPayload, ShredReportPayload, report_payload
from kmsflow.airflow.tasks.snapshot import snapshot_writer
from kmsflow.kms.errors import KmsError
from kmsflow.kms.resources import VersionState
from kmsflow.lifecycle import ShredReport, restore, run_shred

log = logging.getLogger(__name__)


def resolve_dry_run(requested: bool | None, manual: bool) -> bool:
    """``dry_run`` as given, else True for a manual run and False for a scheduled one.

    Why: the schedule is the state machine's engine and every step it takes is proved by a complete
    scan and audited, so scheduled runs act; a person (or an API call) triggering the DAG by hand
    first sees what would happen, and acts only by asking for a live run and typing the key names.
    """
    return manual if requested is None else bool(requested)


@within_deadline
def shred(
    hook: KmsHook,
    spec_path: str,
    *,
    keys: Sequence[str] | None,
    dry_run: bool,
    manual: bool,
    confirm: str | None,
    run: str,
) -> ShredReportPayload:
    """One ``run_shred`` call; the report as XCom data (raises for what needs a human).

    A manual run is always run as ``keys=`` (every spec key when none are named), so the library's
    confirmation guard applies to it: a live manual run must type each key's id (or full name) in
    ``confirm``, checked before any KMS call. Fails the task when the confirmation is missing or
    wrong, when a scan was incomplete (nothing can be proved until a root is fixed) or when KMS
    refused a step; versions still referenced or still waiting are normal outcomes, not failures.
    """
    spec = load_key_spec(spec_path)
    try:
        chosen = [name for name, _ in spec.select_keys(list(keys) if keys else None)]
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from exc
    require_shared(spec, spec.roots(), what="root")
    audit, now = audit_and_clock(spec, hook, run, action="kmsflow_shred")
    with airflow_errors(), audit_errors():
        report = run_shred(
            hook.get_conn(),
            spec,
            now=now,
            dry_run=dry_run,
            audit=audit,
            keys=chosen if manual or keys else None,
            confirm=confirm,
            run_id=run,
            on_scan=snapshot_writer(spec, hook, run),
        )
    log.info("%s", report.render())
    return report_payload(report.to_dict(), ShredReportPayload)


def problems(report: ShredReport | ShredReportPayload) -> list[str]:
    """What in a shred report needs a human: incomplete scans and KMS failures (one line each)."""
    data = report_payload(report.to_dict(), ShredReportPayload) if isinstance(report, ShredReport) else report
    found: list[str] = []
    for key in data["keys"]:
        scan = key["scan"]
        incomplete = scan is not None and not scan["complete"]
        unreadable = bool(key["blocked"]) and key["primary"] is None  # cannot read the key
        if incomplete or unreadable:
            found.append(f"{key['key']}: {key['blocked']}")
        found.extend(f"{v['version']}: {v['reason']}" for v in key["versions"] if v["outcome"] == "failed")
    return found


@within_deadline
def restore_version(
    hook: KmsHook,
    spec_path: str,
    version: str,
    *,
    enable: bool,
    reason: str,
    run: str,
) -> RestoredPayload:
    """Bring a DESTROY_SCHEDULED version back (DISABLED, or ENABLED with ``enable``), audited.

    The version must belong to a key of the spec, so the ``restore`` event lands in the audit log
    the shred runs read: it restarts the version's soak clock (and, enabled, its retention), so the
    next scheduled shred cannot destroy it again before a full soak period and a new scan.
    """
    spec = load_key_spec(spec_path)
    key = version.split("/cryptoKeyVersions/")[0]
    if "/cryptoKeyVersions/" not in version or spec.find_key(key) is None:
        known = ", ".join(name for name, _ in spec.crypto_keys()) or "none"
        raise AirflowFailException(
            f"restore_version must be a full CryptoKeyVersion name of a key in the spec "
            f"(got {version!r}; the spec's keys: {known})"
        )
    if not reason.strip():
        raise AirflowFailException("restore needs a reason (recorded in the audit log)")
    audit, now = audit_and_clock(spec, hook, run, action="restore")
    try:
        with audit_errors():
            after: Any = restore(
                hook.get_conn(), version, enable=enable, audit=audit, reason=reason, run_id=run, now=now
            )
    except KmsError as exc:  # DESTROYED (too late) or not restorable: retrying cannot help
        raise AirflowFailException(str(exc)) from exc
    state = str(VersionState(after.state).name)
    log.info("restored %s: now %s", version, state)
    return {"version": version, "state": state, "enabled": enable}
