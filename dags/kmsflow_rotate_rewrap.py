"""kmsflow_rotate_rewrap: keep every envelope wrapped by its key's current primary version.

Runs daily (and by hand, with the form below). ``mode="rewrap"`` (the default) re-wraps the data
keys of stale envelopes; ``mode="reencrypt"`` is the answer to a suspected *data-key* compromise:
every envelope of the selected keys gets a new data key and new ciphertext. Each run:

1. **prepare** -- checks the params against the spec (no KMS call);
2. **rotate** -- only with ``rotate_first`` (and not in a dry run): a new primary per key, audited
   (``lifecycle.rotate``); refused when no audit log is configured;
3. **detect_rotation** -- each key's primary vs. the one the last successful run recorded (Airflow
   Variable ``kmsflow_rotate_rewrap_primaries``): reports Cloud KMS automatic rotations and
   rotations made by kmsflow or by hand. The run goes on either way;
4. **inventory** -- one scan of every root; the envelopes to visit, as record URLs: the stale ones
   (wrapped by a non-primary version) of the selected keys, or in ``reencrypt`` mode all of them,
   whatever version wraps them. An incomplete scan still visits what it could read;
5. **batches** -- ``batch_size`` URLs each, grown so the count never exceeds ``[core] max_map_length``;
6. **route** -- a branch: the mode's task below runs, the other one is skipped;
7. **rewrap** or **reencrypt** -- mapped over the batches (``.expand``), so a Celery deployment
   spreads them over workers. ``rewrap`` rewrites records only (KMS Decrypt + Encrypt of the small
   wrapped key, compare-and-swap of the record), never data, and appends ``rewrap-batch`` audit
   events; ``reencrypt`` runs ``lifecycle.reencrypt`` (new data key and envelope id, data streamed
   through, verified, swapped in crash-safely; local paths only so far) and appends
   ``reencrypt-batch`` events naming old and new envelope ids. Either reports per-envelope
   failures instead of stopping at the first;
8. **verify** -- a fresh scan: every envelope of the selected keys must unwrap under its primary,
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
from pathlib import Path
from typing import Any

from airflow.sdk import Param, Variable, dag, get_current_context, task
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSkipException

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.lifecycle_common import audit_location, load_key_spec, open_audit, run_label
from kmsflow.airflow.provision import default_spec_path, resolve_spec_path
from kmsflow.airflow.reencrypt_tasks import new_id_check, reencrypt_batch
from kmsflow.airflow.rewrap_tasks import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PARALLEL,
    MODES,
    PRIMARIES_VARIABLE,
    detect_rotation,
    make_batches,
    prepare,
    render_summary,
    rewrap_batch,
    rotate_keys,
    summarize,
    take_inventory,
    verify,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "kmsflow_rotate_rewrap"
log = logging.getLogger(__name__)


def _hook(params: dict[str, Any]) -> KmsHook:
    return KmsHook(kmsflow_conn_id=params["kmsflow_conn_id"])


def _run_batch(
    work: Callable[..., dict[str, Any]],
    batch: list[str],
    config: dict[str, Any],
    params: dict[str, Any],
    run_id: str | None,
) -> dict[str, Any]:
    """One mapped batch of the mode's work (rewrap or reencrypt) with its own hook and audit log."""
    get_current_context()["batch_label"] = f"{len(batch)} envelope(s) from {batch[0]}"  # type: ignore[typeddict-unknown-key]
    hook = _hook(params)
    try:
        run = run_label(DAG_ID, run_id)
        return work(
            hook,
            batch,
            dry_run=bool(params["dry_run"]),
            max_workers=config["max_parallel"],
            audit=open_audit(load_key_spec(config["spec_path"]), hook, run),
            run=run,
            reason=params["reason"],
        )
    finally:
        hook.close()


def _as_reports(pulled: Any) -> list[dict[str, Any]]:
    """The mapped rewrap/reencrypt task's reports (none when it was skipped: nothing to visit)."""
    if pulled is None:
        return []
    if isinstance(pulled, dict):
        return [pulled]
    return [r for r in pulled if r is not None]


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    catchup=False,
    max_active_runs=1,
    tags=["kmsflow", "kms", "lifecycle"],
    doc_md=__doc__,
    params={
        "spec_path": Param(
            default_spec_path(REPO_ROOT),
            type="string",
            title="Key spec",
            description="YAML key spec; relative paths are resolved against the repository root.",
        ),
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
    def plan(params: dict[str, Any] | None = None) -> dict[str, Any]:
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
        config: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, str]:
        """New primary per key (``rotate_first``), audited; skipped otherwise."""
        assert params is not None
        if not params["rotate_first"]:
            raise AirflowSkipException("rotate_first is off")
        if params["dry_run"]:
            raise AirflowSkipException("dry_run: no rotation")
        hook = _hook(params)
        try:
            run = run_label(DAG_ID, run_id)
            audit = open_audit(load_key_spec(config["spec_path"]), hook, run, required_for="rotate_first")
            assert audit is not None
            return rotate_keys(hook, config["keys"], audit, reason=params["reason"], run=run)
        finally:
            hook.close()

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def detect(config: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Which keys rotated since the last successful run (reported; the run goes on anyway)."""
        assert params is not None
        previous = Variable.get(PRIMARIES_VARIABLE, default=None, deserialize_json=True)
        hook = _hook(params)
        try:
            location = audit_location(load_key_spec(config["spec_path"]), hook)
            return detect_rotation(hook, config["keys"], previous, audit_location=location)
        finally:
            hook.close()

    @task(multiple_outputs=False)
    def inventory(config: dict[str, Any], detected: dict[str, Any]) -> dict[str, Any]:
        """One scan of every root: the record URLs to visit and per-version counts."""
        return take_inventory(
            config["roots"],
            config["keys"],
            detected["primaries"],
            max_workers=config["max_parallel"],
            every_version=config["mode"] == "reencrypt",
        )

    @task
    def batches(config: dict[str, Any], found: dict[str, Any]) -> list[list[str]]:
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
    def route(config: dict[str, Any]) -> str:
        """The mode's mapped task runs, the other one is skipped (each task is named after its mode)."""
        return str(config["mode"])

    @task(multiple_outputs=False, map_index_template="{{ batch_label }}")
    def rewrap(
        batch: list[str],
        config: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Re-wrap one batch (records only); audited per key when an audit log is configured."""
        assert params is not None
        return _run_batch(rewrap_batch, batch, config, params, run_id)

    @task(multiple_outputs=False, map_index_template="{{ batch_label }}")
    def reencrypt(
        batch: list[str],
        config: dict[str, Any],
        params: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Re-encrypt one batch under new data keys; audited per key when an audit log is configured."""
        assert params is not None
        return _run_batch(reencrypt_batch, batch, config, params, run_id)

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def check(
        config: dict[str, Any],
        found: dict[str, Any],
        params: dict[str, Any] | None = None,
        ti: Any = None,
    ) -> dict[str, Any]:
        """Every envelope unwraps under its primary, every root was seen (re-encrypt: and every
        re-encrypted envelope has its new id); else the run fails here."""
        assert params is not None and ti is not None
        mode = config["mode"]
        reports = _as_reports(ti.xcom_pull(task_ids=mode))  # the mapped task is named after its mode
        hook = _hook(params)
        try:
            return verify(
                hook,
                config["roots"],
                config["keys"],
                dry_run=bool(params["dry_run"]),
                inventory=found,
                batch_reports=reports,
                max_workers=config["max_parallel"],
                also=new_id_check(reports) if mode == "reencrypt" else None,
            )
        finally:
            hook.close()

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def publish(
        config: dict[str, Any],
        detected: dict[str, Any],
        found: dict[str, Any],
        verified: dict[str, Any],
        params: dict[str, Any] | None = None,
        ti: Any = None,
    ) -> dict[str, Any]:
        """Counts per version before/after (XCom + log); live runs record the primaries."""
        assert params is not None and ti is not None
        dry_run = bool(params["dry_run"])
        mode = config["mode"]
        # Pulled rather than passed: both may be skipped (no rotation asked, nothing to visit).
        rotated = ti.xcom_pull(task_ids="rotate")
        reports = ti.xcom_pull(task_ids=mode)
        summary = summarize(
            detected, found, _as_reports(reports), verified, dry_run=dry_run, rotated_now=rotated, mode=mode
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
