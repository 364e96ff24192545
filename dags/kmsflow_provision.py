"""kmsflow_provision: make Cloud KMS match a declarative key spec — validate, plan, apply, verify.

Runs on its own: when the spec's content changes (the ``kmsflow_key_spec`` asset, updated by a
``KeySpecChangeTrigger`` watcher in the triggerer, so a key or tenant added to the spec is created
within a minute) and on a schedule for drift repair (hourly; ``KMSFLOW_PROVISION_SCHEDULE``, a cron
expression or preset, read when the DAG file is parsed). Trigger it by hand too (the form shows the
Params below). Each run:

1. **validate** the spec file (no KMS call; every problem listed with its field path);
2. **plan** the difference with live KMS (reads only), rendered in the task log like
   ``terraform plan``; the structured plan goes to XCom for review and for apply;
3. **apply** exactly that plan — skipped when ``dry_run`` is on or the plan is empty. It only
   creates and converges (missing key rings and keys, rotation, labels, and IAM of the roles the
   spec owns: members missing are granted, members the spec does not list are revoked); it never
   deletes or destroys, and an immutable-field conflict (purpose, protection level...) fails it
   before any write, so someone looks. Every landed change is appended to the audit log
   (``audit_log`` param, else the spec's ``audit_log:``, else the connection's ``audit_log`` extra);
4. **verify** by planning again: the run fails unless KMS now matches the spec.

A second run therefore plans no changes and skips apply.

``dry_run`` defaults to False, scheduled and spec-change runs included. Why: the spec is the
reviewed source of truth (edited by a person or a CI job who chose it); the plan is always rendered
before apply in the same run; and apply is additive and convergent (no deletion, no destruction,
conflicts block before writing), so an unwanted apply is undone by fixing the spec and re-running,
while a default of True would make every scheduled, spec-change and API/CI run a silent no-op.
Tick ``dry_run`` to review a plan without applying it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from airflow.sdk import AssetOrTimeSchedule, Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.schedules import key_spec_asset, provision_timetable
from kmsflow.airflow.tasks.common import (
    default_spec_path,
    hook_scope,
    resolve_spec_path,
    run_label,
    spec_path_param,
)
from kmsflow.airflow.tasks.payloads import (
    ApplyPayload,
    ConvergedPayload,
    PlanPayload,
    ProvisionParams,
    SpecSummary,
)
from kmsflow.airflow.tasks.provision import (
    apply_plan,
    plan_payload,
    plan_spec,
    validate_spec,
    verify_plan_spec,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "kmsflow_provision"
log = logging.getLogger(__name__)


@dag(
    dag_id=DAG_ID,
    schedule=AssetOrTimeSchedule(
        timetable=provision_timetable(),
        assets=key_spec_asset(str(resolve_spec_path(default_spec_path(REPO_ROOT), REPO_ROOT))),
    ),
    catchup=False,
    max_active_runs=1,
    tags=["kmsflow", "kms"],
    doc_md=__doc__,
    params={
        "spec_path": spec_path_param(REPO_ROOT),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Plan only: show the changes without applying them.",
        ),
        "audit_log": Param(
            "",
            type="string",
            title="Audit log",
            description="Where applied changes are recorded (path or gs://); empty: the spec's "
            "'audit_log:', else the connection's 'audit_log' extra.",
        ),
        "kmsflow_conn_id": Param(
            KmsHook.default_conn_name,
            type="string",
            title="kmsflow connection",
            description="Connection of type kmsflow (Cloud KMS credentials, or an emulator endpoint).",
        ),
    },
)
def kmsflow_provision() -> None:
    @task
    def validate(params: ProvisionParams | None = None) -> SpecSummary:
        """Validate the spec before touching KMS."""
        assert params is not None  # injected from the task context
        summary = validate_spec(resolve_spec_path(params["spec_path"], REPO_ROOT))
        log.info("Spec %s is valid: %d crypto keys", summary["spec_path"], len(summary["crypto_keys"]))
        return summary

    @task
    def plan(summary: SpecSummary, params: ProvisionParams | None = None) -> PlanPayload:
        """Show what apply would change; the structured plan is this task's XCom."""
        assert params is not None
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            the_plan = plan_spec(hook, Path(summary["spec_path"]))
        log.info("Plan for %s:\n%s", summary["spec_path"], the_plan.render())
        return plan_payload(the_plan)

    @task
    def apply(
        plan_dict: PlanPayload, params: ProvisionParams | None = None, run_id: str | None = None
    ) -> ApplyPayload:
        """Apply the plan above, unless this is a dry run or there is nothing to do."""
        assert params is not None
        if params["dry_run"]:
            raise AirflowSkipException("dry_run: the plan was not applied")
        if plan_dict["empty"]:
            raise AirflowSkipException("Cloud KMS already matches the spec: nothing to apply")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            run = run_label(DAG_ID, run_id)
            return apply_plan(hook, plan_dict, log, audit_log=params["audit_log"] or None, run=run)

    @task(trigger_rule="none_failed")
    def verify(plan_dict: PlanPayload, params: ProvisionParams | None = None) -> ConvergedPayload:
        """Plan again: KMS must now match the spec (also after a skipped, empty apply)."""
        assert params is not None
        if params["dry_run"]:
            raise AirflowSkipException("dry_run: nothing was applied, so nothing to verify")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            return verify_plan_spec(hook, plan_dict)

    planned = plan(validate())
    apply(planned) >> verify(planned)


kmsflow_provision()
