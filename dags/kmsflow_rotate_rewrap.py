"""kmsflow_rotate_rewrap: keep every envelope wrapped by its key's current primary version.

Starts when a key of the spec rotates (the ``kmsflow_key_rotations`` asset, updated by a
``KeyRotationTrigger`` watcher in the triggerer: Cloud KMS's automatic rotation, kmsflow's and one
made by hand alike), daily in any case (a missed event is still caught), and by hand with the form
below. ``mode="rewrap"`` (the default) re-wraps the data keys of stale envelopes;
``mode="reencrypt"`` is the answer to a suspected *data-key* compromise: every envelope of the
selected keys gets a new data key and new ciphertext. Each run:

1. **plan** -- checks the params against the spec (no KMS call);
2. **rotate** -- only with ``rotate_first`` (and not in a dry run): a new primary per key, audited
   (``lifecycle.rotate``); refused when no audit log is configured;
3. **detect** -- each key's primary vs. the one the last successful run recorded (Airflow
   Variable ``kmsflow_rotate_rewrap_primaries``): reports Cloud KMS automatic rotations and
   rotations made by kmsflow or by hand (and logs the rotation events that started the run, if
   any). The run goes on either way;
4. **inventory** -- one scan of every root; the envelopes to visit, as record URLs: the stale ones
   (wrapped by a non-primary version) of the selected keys, or in ``reencrypt`` mode all of them,
   whatever version wraps them. An incomplete scan still visits what it could read;
5. **batches** -- ``batch_size`` URLs each, grown so the count never exceeds ``[core] max_map_length``;
6. **route** -- a branch: the mode's task below runs (``mode`` → task id by an explicit mapping),
   the other one is skipped;
7. **rewrap** or **reencrypt** -- mapped over the batches (``.expand``), so a Celery deployment
   spreads them over workers. ``rewrap`` rewrites records only (KMS Decrypt + Encrypt of the small
   wrapped key, compare-and-swap of the record), never data, and appends ``rewrap-batch`` audit
   events; ``reencrypt`` runs ``lifecycle.reencrypt`` (new data key and envelope id, data streamed
   through, verified, swapped in crash-safely; local paths only so far) and appends
   ``reencrypt-batch`` events naming old and new envelope ids. Either reports per-envelope
   failures instead of stopping at the first;
8. **check** -- a fresh scan: every envelope of the selected keys must unwrap under its primary,
   both scans must be complete and no batch may have reported a failure, and in ``reencrypt``
   mode each re-encrypted envelope must carry its new envelope id (the old one gone), else the run
   fails here with the list of problems;
9. **publish** -- counts per version before and after (XCom and log), and records the primaries for
   the next run's detection (live runs only).

``dry_run`` defaults to False, scheduled runs included. Why: re-wrapping is not destructive -- it
rewrites a few hundred bytes of record by compare-and-swap, both the old and the new record decrypt
the same data while the old version exists, and no KMS state changes. A dry-run default would let
stale envelopes pile up silently, and those block ``kmsflow_shred`` from ever retiring old versions.
A scheduled run always uses the default mode, ``rewrap``: re-encrypting rewrites every byte of every
envelope, so it is a deliberate, manual incident response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    Variable,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSkipException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.schedules import key_rotation_asset
from kmsflow.airflow.tasks.common import (
    audit_location,
    default_spec_path,
    hook_scope,
    load_key_spec,
    open_audit,
    resolve_spec_path,
    run_label,
    spec_path_param,
)
from kmsflow.airflow.tasks.payloads import (
    Batch,
    BatchReport,
    Detection,
    InventoryPayload,
    ModeReport,
    ReencryptBatchReport,
    RewrapBatchReport,
    Rotated,
    RotateRewrapParams,
    RunConfig,
    RunSummary,
    VerifyPayload,
)
from kmsflow.airflow.tasks.rotate_rewrap import (
    BATCH_TASK_IDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PARALLEL,
    MODES,
    PRIMARIES_VARIABLE,
    batch_reports,
    detect_rotation,
    make_batches,
    mode_check,
    prepare,
    reencrypt_batch,
    render_summary,
    rewrap_batch,
    rotate_keys,
    rotation_events,
    run_batch,
    summarize,
    take_inventory,
    verify,
)
from kmsflow.airflow.tasks.snapshot import snapshot_writer

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "kmsflow_rotate_rewrap"
log = logging.getLogger(__name__)


def _run_batch(
    work: Callable[..., ModeReport],
    batch: Batch,
    config: RunConfig,
    params: RotateRewrapParams,
    run_id: str | None,
) -> ModeReport:
    """One mapped batch of the mode's work (``rewrap_batch`` or ``reencrypt_batch``)."""
    get_current_context()["batch_label"] = f"{len(batch)} envelope(s) from {batch[0]}"  # type: ignore[typeddict-unknown-key]
    with hook_scope(params["kmsflow_conn_id"]) as hook:
        run = run_label(DAG_ID, run_id)
        return run_batch(
            work, hook, batch, config, dry_run=bool(params["dry_run"]), reason=params["reason"], run=run
        )


def _reports(ti: Any, config: RunConfig) -> list[BatchReport]:
    """The mode's mapped task's reports (pulled: it may have been skipped, nothing to visit)."""
    return batch_reports(ti.xcom_pull(task_ids=BATCH_TASK_IDS[config["mode"]]))


@dag(
    dag_id=DAG_ID,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"),
        assets=key_rotation_asset(str(resolve_spec_path(default_spec_path(REPO_ROOT), REPO_ROOT))),
    ),
    catchup=False,
    max_active_runs=1,
    tags=["kmsflow", "kms", "lifecycle"],
    doc_md=__doc__,
    params={
        "spec_path": spec_path_param(REPO_ROOT),
        "key": Param(
            "",
            type="string",
            title="Key",
            description="One key of the spec (id or full name); empty: every key of the spec.",
        ),
        "roots": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Roots",
            description="Roots to scan instead of the spec's (paths or gs:// URLs); empty: every root "
            "of the spec.",
        ),
        "mode": Param(
            "rewrap",
            enum=list(MODES),
            title="Mode",
            description="'rewrap': new wrapping of the stale envelopes' data keys (records only). "
            "'reencrypt': suspected data-key compromise -- every envelope of the key(s), whatever "
            "version wraps it, gets a new data key and new ciphertext (local paths only so far; "
            "gs:// envelopes are reported as failures).",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Count, change nothing."),
        "max_parallel": Param(
            DEFAULT_MAX_PARALLEL,
            type="integer",
            minimum=1,
            title="KMS concurrency",
            description="Concurrent KMS calls (and record writes) inside each rewrap task; envelopes "
            "re-encrypted at a time inside each reencrypt task.",
        ),
        "rotate_first": Param(
            False, type="boolean", title="Rotate first", description="Rotate each key (audited) first."
        ),
        "batch_size": Param(
            DEFAULT_BATCH_SIZE,
            type="integer",
            minimum=1,
            title="Batch size",
            description="Envelopes per mapped rewrap/reencrypt task (grown to respect [core] "
            "max_map_length).",
        ),
        "reason": Param(
            "scheduled re-wrap onto the primary version",
            type="string",
            title="Reason",
            description="Recorded in the audit log.",
        ),
        "kmsflow_conn_id": Param(KmsHook.default_conn_name, type="string", title="kmsflow connection"),
    },
)
def kmsflow_rotate_rewrap() -> None:
    @task(multiple_outputs=False)
    def plan(params: RotateRewrapParams | None = None) -> RunConfig:
        """Check the params against the spec before any KMS call."""
        assert params is not None
        return prepare(
            str(resolve_spec_path(params["spec_path"], REPO_ROOT)),
            key=params["key"] or None,
            roots=params["roots"] or None,
            mode=params["mode"],
            batch_size=int(params["batch_size"]),
            max_parallel=int(params["max_parallel"]),
        )

    @task(multiple_outputs=False)
    def rotate(
        config: RunConfig, params: RotateRewrapParams | None = None, run_id: str | None = None
    ) -> Rotated:
        """New primary per key (``rotate_first``), audited; skipped otherwise."""
        assert params is not None
        if not params["rotate_first"]:
            raise AirflowSkipException("rotate_first is off")
        if params["dry_run"]:
            raise AirflowSkipException("dry_run: no rotation")
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            run = run_label(DAG_ID, run_id)
            audit = open_audit(load_key_spec(config["spec_path"]), hook, run, required_for="rotate_first")
            assert audit is not None
            return rotate_keys(hook, config["keys"], audit, reason=params["reason"], run=run)

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def detect(
        config: RunConfig, params: RotateRewrapParams | None = None, triggering_asset_events: Any = None
    ) -> Detection:
        """Which keys rotated since the last successful run (reported; the run goes on anyway)."""
        assert params is not None
        for event in rotation_events(triggering_asset_events):
            log.info(
                "started by a rotation event: %s %s -> %s",
                event["key"],
                event["previous_primary"],
                event["primary"],
            )
        previous = Variable.get(PRIMARIES_VARIABLE, default=None, deserialize_json=True)
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            location = audit_location(load_key_spec(config["spec_path"]), hook)
            return detect_rotation(hook, config["keys"], previous, audit_location=location)

    @task(multiple_outputs=False)
    def inventory(
        config: RunConfig,
        detected: Detection,
        params: RotateRewrapParams | None = None,
        run_id: str | None = None,
    ) -> InventoryPayload:
        """One scan of every root: the record URLs to visit and per-version counts (and the
        inventory snapshot the Key Lifecycle page shows)."""
        assert params is not None
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            keep = snapshot_writer(load_key_spec(config["spec_path"]), hook, run_label(DAG_ID, run_id))
        return take_inventory(
            config["roots"],
            config["keys"],
            detected["primaries"],
            max_workers=config["max_parallel"],
            every_version=config["mode"] == "reencrypt",
            on_scan=keep,
        )

    @task
    def batches(config: RunConfig, found: InventoryPayload) -> list[Batch]:
        """Batches of record URLs to visit, never more than ``[core] max_map_length`` of them."""
        limit = conf.getint("core", "max_map_length", fallback=1024)
        made = make_batches(found["targets"], config["batch_size"], limit)
        log.info(
            "%d envelope(s) to %s in %d batch(es) (max_map_length %d)",
            len(found["targets"]),
            config["mode"],
            len(made),
            limit,
        )
        return made

    @task.branch
    def route(config: RunConfig) -> str:
        """The mode's mapped task runs, the other one is skipped."""
        return BATCH_TASK_IDS[config["mode"]]

    # A batch whose worker is lost (killed, machine gone) fails by heartbeat timeout and is retried,
    # on any worker: re-wrapping converges (compare-and-swap; envelopes already on the primary are
    # left as they are), so a retry finishes what the lost attempt started.
    @task(
        multiple_outputs=False,
        map_index_template="{{ batch_label }}",
        retries=2,
        retry_delay=timedelta(seconds=30),
    )
    def rewrap(
        batch: Batch,
        config: RunConfig,
        params: RotateRewrapParams | None = None,
        run_id: str | None = None,
    ) -> RewrapBatchReport:
        """Re-wrap one batch (records only); audited per key when an audit log is configured."""
        assert params is not None
        return _run_batch(rewrap_batch, batch, config, params, run_id)

    @task(multiple_outputs=False, map_index_template="{{ batch_label }}")
    def reencrypt(
        batch: Batch,
        config: RunConfig,
        params: RotateRewrapParams | None = None,
        run_id: str | None = None,
    ) -> ReencryptBatchReport:
        """Re-encrypt one batch under new data keys; audited per key when an audit log is configured."""
        assert params is not None
        return _run_batch(reencrypt_batch, batch, config, params, run_id)

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def check(
        config: RunConfig,
        found: InventoryPayload,
        params: RotateRewrapParams | None = None,
        ti: Any = None,
    ) -> VerifyPayload:
        """Every envelope unwraps under its primary, every root was seen (re-encrypt: and every
        re-encrypted envelope has its new id); else the run fails here."""
        assert params is not None and ti is not None
        reports = _reports(ti, config)
        with hook_scope(params["kmsflow_conn_id"]) as hook:
            return verify(
                hook,
                config["roots"],
                config["keys"],
                dry_run=bool(params["dry_run"]),
                inventory=found,
                batch_reports=reports,
                max_workers=config["max_parallel"],
                also=mode_check(config["mode"], reports),
            )

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def publish(
        config: RunConfig,
        detected: Detection,
        found: InventoryPayload,
        verified: VerifyPayload,
        params: RotateRewrapParams | None = None,
        ti: Any = None,
    ) -> RunSummary:
        """Counts per version before/after (XCom + log); live runs record the primaries."""
        assert params is not None and ti is not None
        dry_run = bool(params["dry_run"])
        # Pulled rather than passed: both may be skipped (no rotation asked, nothing to visit).
        rotated = ti.xcom_pull(task_ids="rotate")
        summary = summarize(
            detected,
            found,
            _reports(ti, config),
            verified,
            dry_run=dry_run,
            rotated_now=rotated,
            mode=config["mode"],
        )
        log.info("%s", render_summary(summary))
        if not dry_run:
            recorded = Variable.get(PRIMARIES_VARIABLE, default=None, deserialize_json=True) or {}
            recorded.update(detected["primaries"])
            Variable.set(PRIMARIES_VARIABLE, recorded, serialize_json=True)
        return summary

    config = plan()
    rotated = rotate(config)
    detected = detect(config)
    rotated >> detected
    found = inventory(config, detected)
    made = batches(config, found)
    chosen = route(config)
    rewrapped = rewrap.partial(config=config).expand(batch=made)
    reencrypted = reencrypt.partial(config=config).expand(batch=made)
    made >> chosen >> [rewrapped, reencrypted]
    verified = check(config, found)
    [rewrapped, reencrypted] >> verified
    publish(config, detected, found, verified)


kmsflow_rotate_rewrap()
