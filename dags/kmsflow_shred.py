"""kmsflow_shred: retire old key versions safely -- disable, soak, destroy, confirm DESTROYED.

Runs daily. Two tasks, one of which runs (the other is skipped):

1. **shred** -- advances every retired version of the spec's keys by at most one step
   (``kmsflow.lifecycle.run_shred``, a resumable state machine -- a killed run is simply redone by
   the next one); skipped when ``restore_version`` is set;
2. **restore** -- only with ``restore_version`` (below).

What ``shred`` does to a version:

* ENABLED, non-primary longer than ``retention.retired_version_enabled_for`` → **disable**;
* DISABLED for ``retention.soak_period`` (per the audit log) → **destroy** (DESTROY_SCHEDULED;
  Cloud KMS destroys it after the key's ``destroy_scheduled_duration``);
* DESTROYED, scheduled by kmsflow → audit ``destroyed-confirmed``.

Each disable and destroy needs a *complete* scan of every root of the spec, made in that run,
finding zero envelopes that reference the version (invariant 2); the primary is never touched
(invariant 3); every step is audited (invariant 5), so an audit log is required (spec
``audit_log:`` or the connection's ``audit_log`` extra). The report goes to XCom and to the log.
The task fails when a scan was incomplete or KMS refused a step (a human must look), not when a
version is still referenced or still waiting.

**Dry run** (``dry_run`` left empty): scheduled runs act, manual runs only report. Why: the schedule
is the state machine's engine and each of its steps is proved and audited; a person triggering the
DAG first sees what would happen. A manual live run (``dry_run: false``) must be confirmed by typing
each key's id in ``confirm`` (every key of the spec when ``keys`` is empty), or it fails before any
KMS call.

**Restore** (manual): set ``restore_version`` to a full CryptoKeyVersion name and a ``reason``; the
``restore`` task then restores that DESTROY_SCHEDULED version (DISABLED, or ENABLED with ``restore_enable``)
instead of shredding. The restore is audited and restarts the version's soak clock, so a scheduled
run cannot destroy it again before a full soak and a fresh scan. After ``destroy_time`` (DESTROYED)
nothing can restore it and the run fails saying so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks.common import (
    hook_scope,
    is_manual,
    resolve_spec_path,
    run_label,
    spec_path_param,
)
from kmsflow.airflow.tasks.payloads import RestoredPayload, ShredParams, ShredReportPayload
from kmsflow.airflow.tasks.shred import problems, resolve_dry_run, restore_version, shred

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "kmsflow_shred"
log = logging.getLogger(__name__)


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    catchup=False,
    max_active_runs=1,
    tags=["kmsflow", "kms", "lifecycle"],
    doc_md=__doc__,
    params={
        "spec_path": spec_path_param(REPO_ROOT),
        "keys": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Keys",
            description="Key ids or full names to shred; empty: every key of the spec.",
        ),
        "dry_run": Param(
            None,
            type=["null", "boolean"],
            title="Dry run",
            description="Empty: manual runs are dry runs, scheduled runs act. false: act (needs confirm).",
        ),
        "confirm": Param(
            "",
            type="string",
            title="Confirm",
            description="For a manual live run: type the id of each key to shred (comma separated).",
        ),
        "restore_version": Param(
            "",
            type="string",
            title="Restore version",
            description="Full CryptoKeyVersion name: restore it from DESTROY_SCHEDULED instead of shredding.",
        ),
        "restore_enable": Param(
            False, type="boolean", title="Enable after restore", description="ENABLED instead of DISABLED."
        ),
        "reason": Param("", type="string", title="Reason", description="Why (restore: required, audited)."),
        "kmsflow_conn_id": Param(KmsHook.default_conn_name, type="string", title="kmsflow connection"),
    },
)
def kmsflow_shred() -> None:
    @task(multiple_outputs=False)
    def shred_step(
        params: ShredParams | None = None,
        dag_run: Any = None,
        run_id: str | None = None,
        ti: Any = None,
    ) -> ShredReportPayload:
        """One step of the shred state machine for every retired version; the report as XCom."""
        assert params is not None and dag_run is not None and ti is not None
        if params["restore_version"]:
            raise AirflowSkipException("restore run: nothing is shredded")
        manual = is_manual(dag_run.run_type)
        dry_run = resolve_dry_run(params["dry_run"], manual)
        log.info("%s run, %s", "manual" if manual else "scheduled", "dry run" if dry_run else "live")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            report = shred(
                hook,
                str(resolve_spec_path(params["spec_path"], REPO_ROOT)),
                keys=params["keys"] or None,
                dry_run=dry_run,
                manual=manual,
                confirm=params["confirm"] or None,
                run=run_label(DAG_ID, run_id),
            )
        found = problems(report)
        if found:
            ti.xcom_push(key="report", value=report)
            raise AirflowFailException("shred needs attention: " + "; ".join(found))
        return report

    @task(multiple_outputs=False)
    def restore(
        params: ShredParams | None = None,
        dag_run: Any = None,
        run_id: str | None = None,
    ) -> RestoredPayload:
        """Restore ``restore_version`` from DESTROY_SCHEDULED (manual runs only); audited."""
        assert params is not None and dag_run is not None
        if not params["restore_version"]:
            raise AirflowSkipException("no restore_version given")
        if not is_manual(dag_run.run_type):
            raise AirflowFailException("restore is a manual action: trigger the DAG by hand")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            return restore_version(
                hook,
                str(resolve_spec_path(params["spec_path"], REPO_ROOT)),
                params["restore_version"],
                enable=bool(params["restore_enable"]),
                reason=params["reason"],
                run=run_label(DAG_ID, run_id),
            )

    shred_step.override(task_id="shred")()
    restore()


kmsflow_shred()
