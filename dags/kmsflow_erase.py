"""kmsflow_erase: erase one tenant's data by destroying its dedicated key (manual only).

Crypto-shredding for a data-subject / tenant deletion request: every version of the tenant key --
the primary included -- is scheduled for destruction, so every artifact wrapped by it becomes
undecryptable everywhere (copies and backups too), while nothing else changes. Only keys the spec
marks ``tenant:`` can be erased, and the form must carry the tenant name AND the key id typed
exactly, plus a reason (e.g. the request id); all checked before any KMS call. Audited (an audit
log is required: spec ``audit_log:`` or the connection's ``audit_log`` extra).

Two modes, one DAG, one task each (the other one is skipped):

* **erase** (default): task ``erase`` destroys and proves at once -- versions DESTROY_SCHEDULED, each
  tenant envelope refuses to unwrap, every other envelope's record is byte-identical and unwraps.
  Within the key's ``destroy_scheduled_duration`` the erasure can still be undone (``kmsflow_shred``
  with ``restore_version``).
* **prove_only**: after the grace period, trigger again with ``prove_only``: task ``prove`` re-runs the
  proof, requires every version DESTROYED and records ``erase-proved``. It fails (saying until when
  to wait) while versions are still in their grace period.

Both publish the erasure report (XCom ``return_value``, or ``report`` when the task fails) and log it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks import erase as erase_tasks
from kmsflow.airflow.tasks.common import hook_scope, resolve_spec_path, run_label, spec_path_param
from kmsflow.airflow.tasks.payloads import EraseParams, ErasureReportPayload

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "kmsflow_erase"
log = logging.getLogger(__name__)


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["kmsflow", "kms", "lifecycle", "erasure"],
    doc_md=__doc__,
    params={
        "spec_path": spec_path_param(REPO_ROOT),
        "key": Param("", type="string", title="Tenant key", description="Key id (or full name) to erase."),
        "confirm_tenant": Param(
            "", type="string", title="Confirm tenant", description="Type the tenant name."
        ),
        "confirm_key": Param("", type="string", title="Confirm key", description="Type the key id again."),
        "reason": Param(
            "", type="string", title="Reason", description="E.g. the erasure request id (audited)."
        ),
        "prove_only": Param(
            False,
            type="boolean",
            title="Prove only",
            description="After the grace period: confirm every version is DESTROYED (nothing destroyed).",
        ),
        "kmsflow_conn_id": Param(KmsHook.default_conn_name, type="string", title="kmsflow connection"),
    },
)
def kmsflow_erase() -> None:
    @task(multiple_outputs=False)
    def erase(
        params: EraseParams | None = None, run_id: str | None = None, ti: Any = None
    ) -> ErasureReportPayload:
        """Destroy every version of the tenant key and prove the result; the report as XCom."""
        assert params is not None and ti is not None
        if params["prove_only"]:
            raise AirflowSkipException("prove_only: nothing is destroyed")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            report = erase_tasks.erase(
                hook,
                str(resolve_spec_path(params["spec_path"], REPO_ROOT)),
                params["key"],
                confirm_tenant=params["confirm_tenant"],
                confirm_key=params["confirm_key"],
                reason=params["reason"],
                run=run_label(DAG_ID, run_id),
            )
        return erase_tasks.publish(report, ti, require_destroyed=False)

    @task(multiple_outputs=False)
    def prove(
        params: EraseParams | None = None, run_id: str | None = None, ti: Any = None
    ) -> ErasureReportPayload:
        """The later proof: every version DESTROYED, tenant envelopes dead, others intact."""
        assert params is not None and ti is not None
        if not params["prove_only"]:
            raise AirflowSkipException("erase run: its own task already proved the erasure")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            report = erase_tasks.prove(
                hook,
                str(resolve_spec_path(params["spec_path"], REPO_ROOT)),
                params["key"],
                run=run_label(DAG_ID, run_id),
            )
        return erase_tasks.publish(report, ti, require_destroyed=True)

    erase()
    prove()


kmsflow_erase()
