"""The steps of the ``kmsflow_rotate_rewrap`` DAG, as plain functions over a ``KmsHook``.

``dags/kmsflow_rotate_rewrap.py`` only wires these together. Every value they return is JSON-safe
XCom (:mod:`kmsflow.airflow.tasks.payloads`): key, version and record names, counts, states and
one-line reasons -- never key material or plaintext (invariant 4; the rewrap library keeps the
unwrapped keyset inside its KMS stage, the re-encrypt library both data keys inside its job).

Task → function: ``plan`` :func:`prepare` (params, spec, keys, roots) → ``rotate``
:func:`rotate_keys` (only with ``rotate_first``) → ``detect`` :func:`detect_rotation` (primary now
vs. primary recorded by the last successful run) → ``inventory`` :func:`take_inventory` (one scan
of every root; record URLs to visit) → ``batches`` :func:`make_batches` → ``route``
(:data:`BATCH_TASK_IDS`) → ``rewrap`` :func:`rewrap_batch` or ``reencrypt``
:func:`reencrypt_batch` (mapped, one per batch) → ``check`` :func:`verify` (plus
:func:`new_id_check` in ``reencrypt`` mode) → ``publish`` :func:`summarize`.

**The ``reencrypt`` mode**: re-wrapping answers a compromised KMS key *version*; when a *data key*
may have leaked, every byte it encrypted must be re-encrypted under a fresh one
(:func:`kmsflow.lifecycle.reencrypt`). Only two steps differ: :func:`reencrypt_batch` (the mapped
task: one library ``reencrypt`` per batch, audited) and :func:`new_id_check` (what ``check`` adds:
each envelope the batches re-encrypted carries its new envelope id on disk and its old one -- the
suspect data key -- is gone).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.errors import airflow_errors, audit_errors
from kmsflow.airflow.hooks.kms import KmsHook, within_deadline
from kmsflow.airflow.tasks.common import load_key_spec, open_audit, require_shared
from kmsflow.airflow.tasks.payloads import (
    Batch,
    BatchReport,
    Detection,
    FindingPayload,
    IfApplied,
    InventoryPayload,
    IssuePayload,
    KeyRotation,
    Mode,
    ModeReport,
    ReencryptBatchReport,
    ReencryptResult,
    RewrapBatchReport,
    Rotated,
    RotationEvent,
    RunConfig,
    RunSummary,
    ScanStatistics,
    VerifyPayload,
    report_payload,
)
from kmsflow.audit import AuditLog, read_events, record_rewrap
from kmsflow.audit.actions import Action
from kmsflow.inventory import Inventory, scan
from kmsflow.kms import asymmetric, resources
from kmsflow.kms.crypto import key_of
from kmsflow.lifecycle import Issue, reencrypt, rewrap, rotate, verify_unwraps

log = logging.getLogger(__name__)

PRIMARIES_VARIABLE = "kmsflow_rotate_rewrap_primaries"
"""Airflow Variable (JSON ``{crypto key: primary version}``) written by each successful live run."""
MODES: tuple[Mode, ...] = ("rewrap", "reencrypt")
BATCH_TASK_IDS: dict[str, str] = {"rewrap": "rewrap", "reencrypt": "reencrypt"}
"""``mode`` → the id of the mapped task that does its work (``route`` picks it, ``check`` and
``publish`` read its reports); the other mode's task is skipped."""
_DONE = ("reencrypted", "would_reencrypt")
DEFAULT_BATCH_SIZE = 500
DEFAULT_MAX_PARALLEL = 16
MAX_ISSUES_SHOWN = 10


def _version_counts(inventory: Inventory, keys: Sequence[str]) -> dict[str, int]:
    wanted = set(keys)
    counts = Counter(r.crypto_key_version for r in inventory.envelopes if r.crypto_key in wanted)
    return dict(sorted(counts.items()))


def _only_keys(inventory: Inventory, keys: Sequence[str]) -> Inventory:
    """The inventory restricted to the envelopes of ``keys`` (findings kept: they block proofs)."""
    wanted = set(keys)
    return replace(inventory, envelopes=tuple(r for r in inventory.envelopes if r.crypto_key in wanted))


def prepare(
    spec_path: str,
    *,
    key: str | None,
    roots: Sequence[str] | None,
    mode: str,
    batch_size: int,
    max_parallel: int,
) -> RunConfig:
    """Check the params against the spec before any KMS call; the run's configuration for XCom.

    ``roots`` default to every root of the spec (not only the chosen keys'): an envelope of key A
    filed under key B's root still needs re-wrapping (or re-encrypting), and only a scan of all
    roots finds it.
    """
    if mode not in MODES:
        raise AirflowFailException(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if batch_size < 1 or max_parallel < 1:
        raise AirflowFailException(
            f"batch_size and max_parallel must be at least 1 (got {batch_size}, {max_parallel})"
        )
    spec = load_key_spec(spec_path)
    try:
        selected = spec.select_keys([key] if key else None)
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from exc
    if not selected:
        raise AirflowFailException(f"the spec {spec_path} declares no crypto keys")
    chosen_roots = list(roots) if roots else sorted({r for _, k in spec.crypto_keys() for r in k.roots})
    if not chosen_roots:
        raise AirflowFailException(
            "no roots to scan: the spec assigns no 'roots' to any key and none were given as a param"
        )
    require_shared(spec, chosen_roots, what="root")
    return {
        "spec_path": str(spec_path),
        "mode": mode,
        "keys": [name for name, _ in selected],
        "roots": chosen_roots,
        "batch_size": batch_size,
        "max_parallel": max_parallel,
    }


@within_deadline
def rotate_keys(hook: KmsHook, keys: Sequence[str], audit: AuditLog, *, reason: str, run: str) -> Rotated:
    """Rotate each key (new primary), audited through ``lifecycle.rotate``; {key: new primary}."""
    rotated: Rotated = {}
    with airflow_errors(), audit_errors():
        for key in keys:
            version = rotate(hook.get_conn(), key, audit=audit, reason=reason, run_id=run)
            log.info("rotated %s: new primary %s", key, version.name)
            rotated[key] = version.name
    return rotated


def rotation_events(triggering_asset_events: Mapping[Any, Sequence[Any]] | None) -> list[RotationEvent]:
    """The rotations that started this run: the ``KeyRotationTrigger`` payloads among the run's
    triggering asset events (none for a scheduled or manual run). Only reported: ``detect``
    compares every key anyway, since a run consumes all the events queued before it started."""
    found: list[RotationEvent] = []
    for events in (triggering_asset_events or {}).values():
        for event in events:
            payload = (getattr(event, "extra", None) or {}).get("payload")
            if isinstance(payload, Mapping) and all(
                isinstance(payload.get(f), str) for f in ("key", "previous_primary", "primary")
            ):
                found.append(
                    {
                        "key": payload["key"],
                        "previous_primary": payload["previous_primary"],
                        "primary": payload["primary"],
                    }
                )
    return found


@within_deadline
def detect_rotation(
    hook: KmsHook,
    keys: Sequence[str],
    previous: Mapping[str, str] | None,
    *,
    audit_location: str | None = None,
) -> Detection:
    """Each key's primary now, compared with ``previous`` (the last successful run's record).

    ``how`` says who rotated: ``kmsflow`` (a ``rotate`` audit event names the new primary),
    ``automatic`` (the key has a rotation schedule and kmsflow did not do it: Cloud KMS's own
    rotation), else ``external`` (by hand, outside kmsflow). Detection only reports: the run goes on
    to the inventory either way, since stale envelopes can exist without any new rotation (a
    failed earlier run, an artifact restored from backup, a producer with an old record).
    """
    by_kmsflow: set[str] = set()
    if audit_location:
        with audit_errors():
            by_kmsflow = {
                str(e.evidence.get("new_primary")) for e in read_events(audit_location, action=Action.ROTATE)
            }
    before = dict(previous or {})
    out: dict[str, KeyRotation] = {}
    with airflow_errors():
        for name in keys:
            key: Any = resources.get_key(hook.get_conn(), name)
            primary = str(key.primary.name or "")
            if not primary and key.purpose in asymmetric.RECIPIENT_PURPOSES:  # its current version
                primary = str(asymmetric.current_version(hook.get_conn(), name).name)
            if not primary:
                raise AirflowFailException(
                    f"{name} has no primary version: nothing can be re-wrapped onto it"
                )
            last = before.get(name)
            period = key.rotation_period.total_seconds() if key.rotation_period else 0
            if last is None:
                how = "first_run"
            elif last == primary:
                how = "none"
            elif primary in by_kmsflow:
                how = "kmsflow"
            elif period:
                how = "automatic"
            else:
                how = "external"
            next_rotation = key.next_rotation_time
            out[name] = {
                "primary": primary,
                "previous_primary": last,
                "rotated": how not in ("none", "first_run"),
                "how": how,
                "rotation_period_s": int(period) if period else None,
                "next_rotation_time": next_rotation.isoformat() if next_rotation and period else None,
            }
            if out[name]["rotated"]:
                log.info("%s rotated since the last successful run (%s): %s -> %s", name, how, last, primary)
            else:
                log.info("%s primary %s (%s)", name, primary, how)
    return {
        "keys": out,
        "primaries": {name: item["primary"] for name, item in out.items()},
        "rotated": sorted(name for name, item in out.items() if item["rotated"]),
        "automatic": sorted(name for name, item in out.items() if item["how"] == "automatic"),
    }


def take_inventory(
    roots: Sequence[str],
    keys: Sequence[str],
    primaries: Mapping[str, str],
    *,
    max_workers: int,
    every_version: bool = False,
    on_scan: Callable[[Inventory], None] | None = None,
) -> InventoryPayload:
    """One scan of ``roots``; the envelopes of ``keys`` to visit (``targets``, record URLs), a summary.

    The targets are the stale envelopes (wrapped by a version other than the primary), or with
    ``every_version`` all of the keys' envelopes: re-encrypting replaces a suspect *data* key, which
    an envelope has whichever version wraps it. An incomplete scan does not stop the run: what is
    readable is still visited, and the findings travel to :func:`verify`, which fails the run at the
    end (what was not seen was not visited). Envelopes of keys outside the selection are counted,
    never touched. ``on_scan`` is given the scan first (the inventory snapshot, :mod:`.snapshot`).
    """
    inventory = scan(list(roots), max_workers=max_workers)
    if on_scan is not None:
        on_scan(inventory)
    wanted = set(keys)
    mine = [r for r in inventory.envelopes if r.crypto_key in wanted]
    stale = sorted(
        (r for r in mine if r.crypto_key_version != primaries.get(r.crypto_key)), key=lambda r: r.record_url
    )
    for finding in inventory.blocking_findings:
        log.warning("scan finding %s %s: %s", finding.kind, finding.url, finding.detail)
    summary = inventory.to_dict(include_envelopes=False)
    targets = sorted(mine, key=lambda r: r.record_url) if every_version else stale
    log.info(
        "inventory %s: %d envelope(s) under %d root(s), %d of the selected key(s), %d stale, "
        "%d to visit, complete=%s",
        inventory.scan_id,
        len(inventory.envelopes),
        len(inventory.roots),
        len(mine),
        len(stale),
        len(targets),
        inventory.complete,
    )
    return {
        "scan_id": inventory.scan_id,
        "complete": inventory.complete,
        "roots": list(inventory.roots),
        "envelopes": len(mine),
        "other_keys_envelopes": len(inventory.envelopes) - len(mine),
        "versions_before": _version_counts(inventory, keys),
        "stale": len(stale),
        "targets": [r.record_url for r in targets],
        "blocking_findings": [
            report_payload(f.to_dict(), FindingPayload) for f in inventory.blocking_findings
        ],
        "summary": report_payload(
            {k: summary[k] for k in ("keys", "versions", "envelope_count", "findings")}, ScanStatistics
        ),
    }


def make_batches(urls: Sequence[str], batch_size: int, max_map_length: int) -> list[Batch]:
    """Split ``urls`` into batches of ``batch_size``, grown so there are at most ``max_map_length``.

    Airflow refuses to expand a mapped task past ``[core] max_map_length``: a run with more stale
    envelopes than ``batch_size * max_map_length`` would fail instead of doing bigger batches.
    """
    if batch_size < 1 or max_map_length < 1:
        raise ValueError("batch_size and max_map_length must be at least 1")
    if not urls:
        return []
    size = max(batch_size, math.ceil(len(urls) / max_map_length))
    return [list(urls[i : i + size]) for i in range(0, len(urls), size)]


@within_deadline
def rewrap_batch(
    hook: KmsHook,
    batch: Sequence[str],
    *,
    dry_run: bool,
    max_workers: int,
    audit: AuditLog | None,
    run: str,
    reason: str,
) -> RewrapBatchReport:
    """Re-wrap one batch of envelope records onto their keys' primaries; the report (XCom).

    Per-envelope failures and conflicts are reported, not raised (one bad record never stops the
    batch; :func:`verify` fails the run and a rerun converges). A live batch that moved envelopes
    appends one ``rewrap-batch`` event per key (``audit.record_rewrap``).
    """
    with airflow_errors():
        report = rewrap(hook.get_conn(), list(batch), max_workers=max_workers, dry_run=dry_run)
    events = 0
    if audit is not None:
        with audit_errors():
            events = record_rewrap(audit, report, reason=reason, run=run)
    elif report.rewrapped:
        log.warning("No audit log configured (spec 'audit_log:' or connection extra): rewrap not audited")
    for issue in (*report.failures, *report.conflicts):
        log.warning("not re-wrapped %s: %s: %s", issue.url, issue.error, issue.reason)
    data = report_payload(report.to_dict(), RewrapBatchReport)
    data["audit_events"] = events
    return data


def run_batch(
    work: Callable[..., ModeReport],
    hook: KmsHook,
    batch: Batch,
    config: RunConfig,
    *,
    dry_run: bool,
    reason: str,
    run: str,
) -> ModeReport:
    """One mapped instance: ``work`` (:func:`rewrap_batch` or :func:`reencrypt_batch`) on ``batch``,
    with the run's audit log when one is configured (re-wrapping/re-encrypting only warns without)."""
    return work(
        hook,
        batch,
        dry_run=dry_run,
        max_workers=config["max_parallel"],
        audit=open_audit(load_key_spec(config["spec_path"]), hook, run),
        run=run,
        reason=reason,
    )


def batch_reports(pulled: object) -> list[BatchReport]:
    """The mapped task's reports as pulled from XCom: none (skipped), one, or one per instance."""
    if pulled is None:
        return []
    if isinstance(pulled, dict):
        return [cast(BatchReport, pulled)]
    return [cast(BatchReport, r) for r in cast(Sequence[object], pulled) if r is not None]


@within_deadline
def verify(
    hook: KmsHook,
    roots: Sequence[str],
    keys: Sequence[str],
    *,
    dry_run: bool,
    inventory: InventoryPayload,
    batch_reports: Sequence[BatchReport],
    max_workers: int,
    also: Callable[[Inventory], Sequence[Issue]] | None = None,
) -> VerifyPayload:
    """A fresh scan; every envelope of ``keys`` must unwrap under its key's primary.

    Fails (after logging everything) when an envelope does not unwrap, is still wrapped by an older
    version (except in a dry run, where that is expected), a batch reported failures or conflicts,
    either scan was incomplete, or ``also`` (the mode's own check of the same fresh scan, e.g.
    :func:`new_id_check`) found problems.
    """
    fresh = _only_keys(scan(list(roots), max_workers=max_workers), keys)
    with airflow_errors():
        issues = verify_unwraps(hook.get_conn(), fresh, max_workers=max_workers)
    if also is not None:
        issues.extend(also(fresh))
    not_primary = [i for i in issues if i.error == "NotPrimary"]
    problems = [i for i in issues if not (dry_run and i.error == "NotPrimary")]
    batch_issues: list[IssuePayload] = [
        issue for report in batch_reports for issue in (*report["failures"], *report["conflicts"])
    ]
    result: VerifyPayload = {
        "ok": not problems and not batch_issues and bool(inventory["complete"]) and fresh.complete,
        "scan_id": fresh.scan_id,
        "scan_complete": fresh.complete,
        "envelopes": len(fresh.envelopes),
        "versions_after": _version_counts(fresh, keys),
        "not_primary": len(not_primary),
        "issues": [report_payload(i.to_dict(), IssuePayload) for i in problems],
        "batch_issues": list(batch_issues),
    }
    if result["ok"]:
        log.info("verified: %d envelope(s) unwrap under their key's primary", len(fresh.envelopes))
        return result
    lines = [f"{i['url']}: {i['error']}: {i['reason']}" for i in (*result["issues"], *batch_issues)]
    if not inventory["complete"]:
        lines.extend(
            f"inventory {inventory['scan_id']} {f['kind']} {f['url']}: {f['detail']}"
            for f in inventory["blocking_findings"]
        )
    for line in lines:
        log.error("%s", line)
    shown = "; ".join(lines[:MAX_ISSUES_SHOWN])
    more = f" (and {len(lines) - MAX_ISSUES_SHOWN} more in the log)" if len(lines) > MAX_ISSUES_SHOWN else ""
    raise AirflowFailException(
        f"verification failed: {len(lines)} problem(s): {shown}{more}. Fix the cause (blocking scan "
        "findings, unreadable records, unsupported or tampered envelopes) and rerun: re-wrapping "
        "converges (re-encrypting gives every envelope a new data key again)."
    )


def _total(batch_reports: Sequence[Mapping[str, object]], field: str) -> int:
    """``field`` summed over the reports that have it (rewrap and reencrypt reports count apart)."""
    return sum(n for r in batch_reports if isinstance(n := r.get(field, 0), int))


def summarize(
    detected: Detection,
    inventory: InventoryPayload,
    batch_reports: Sequence[BatchReport],
    verified: VerifyPayload,
    *,
    dry_run: bool,
    rotated_now: Rotated | None = None,
    mode: str = "rewrap",
) -> RunSummary:
    """The run in numbers: counts per version before and after, what moved, what rotated.

    ``batch_reports`` are rewrap or (``mode="reencrypt"``) reencrypt reports; both count envelopes
    per version before and after, so the summary has one shape whichever mode ran.
    """
    would_after: Counter[str] = Counter(inventory["versions_before"])
    for report in batch_reports:
        would_after.subtract(report["versions_before"])
        would_after.update(report["versions_after"])
    if_applied: IfApplied = (
        {"versions_after_if_applied": {k: v for k, v in sorted(would_after.items()) if v}} if dry_run else {}
    )
    summary: RunSummary = {
        "dry_run": dry_run,
        "mode": mode,
        "keys": sorted(detected["primaries"]),
        "primaries": dict(detected["primaries"]),
        "rotated_since_last_run": list(detected["rotated"]),
        "automatic_rotations": list(detected["automatic"]),
        "rotated_by_this_run": dict(rotated_now or {}),
        "scan_id": inventory["scan_id"],
        "envelopes": inventory["envelopes"],
        "stale_before": inventory["stale"],
        "batches": len(batch_reports),
        "rewrapped": _total(batch_reports, "rewrapped"),
        "would_rewrap": _total(batch_reports, "would_rewrap"),
        "reencrypted": _total(batch_reports, "reencrypted"),
        "would_reencrypt": _total(batch_reports, "would_reencrypt"),
        "audit_events": sum(r["audit_events"] for r in batch_reports),
        "versions_before": dict(inventory["versions_before"]),
        "versions_after": dict(verified["versions_after"]),
        **if_applied,
        "verify_scan_id": verified["scan_id"],
    }
    return summary


def render_summary(summary: RunSummary) -> str:
    """The summary as log lines (one per version), for people reading the task log."""
    verb = "re-encrypted" if summary["mode"] == "reencrypt" else "re-wrapped"
    done, would = (
        (summary["reencrypted"], summary["would_reencrypt"])
        if summary["mode"] == "reencrypt"
        else (summary["rewrapped"], summary["would_rewrap"])
    )
    lines = [
        f"kmsflow rotate+{summary['mode']}{' (DRY RUN, nothing changed)' if summary['dry_run'] else ''}: "
        f"{summary['envelopes']} envelope(s), {summary['stale_before']} stale, "
        f"{done} {verb}, {would} would be, {summary['batches']} batch(es)"
    ]
    for key in summary["keys"]:
        rotated = " (rotated since the last run)" if key in summary["rotated_since_last_run"] else ""
        lines.append(f"key {key}: primary {summary['primaries'][key]}{rotated}")
    versions = sorted({*summary["versions_before"], *summary["versions_after"]})
    for version in versions:
        lines.append(
            f"  {version}: {summary['versions_before'].get(version, 0)} -> "
            f"{summary['versions_after'].get(version, 0)}"
        )
    return "\n".join(lines)


# -- the reencrypt mode -----------------------------------------------------------------------


def version_moves(results: Sequence[ReencryptResult]) -> tuple[dict[str, int], dict[str, int]]:
    """Envelopes per key version before and after a batch, like a rewrap report's counts.

    After is the new version for envelopes re-encrypted (dry run: that would be), the old one for
    those left as they were; envelopes whose record could not be read name no version.
    """
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for r in results:
        if r["old_version"]:
            before[r["old_version"]] += 1
        moved_to = r["new_version"] if r["status"] in _DONE else r["old_version"]
        if moved_to:
            after[moved_to] += 1
    return dict(sorted(before.items())), dict(sorted(after.items()))


def record_reencrypt(audit: AuditLog, report: ReencryptBatchReport, *, reason: str, run: str) -> int:
    """One ``reencrypt-batch`` event per crypto key whose envelopes a live batch re-encrypted.

    The evidence names each envelope with its old and new envelope id (the old id identifies the
    suspect data key: proof it no longer protects anything), plus counts per version and the
    batch's failures/conflicts. Ids and names only. A dry run changed nothing and records nothing.
    Returns the number of events appended.
    """
    if report["dry_run"]:
        return 0
    done: dict[str, list[ReencryptResult]] = {}
    for r in report["results"]:
        if r["status"] == "reencrypted":
            done.setdefault(key_of(cast(str, r["old_version"])), []).append(r)
    for key, results in sorted(done.items()):
        mine = f"{key}/cryptoKeyVersions/"
        audit.append(
            Action.REENCRYPT_BATCH,
            key,
            reason=reason,
            evidence={
                "reencrypted": len(results),
                "envelopes_total": report["envelopes"],
                "envelopes": [
                    {
                        "url": r["url"],
                        "old_envelope_id": r["old_envelope_id"],
                        "new_envelope_id": r["new_envelope_id"],
                        "new_version": r["new_version"],
                    }
                    for r in results
                ],
                "versions_before": {v: n for v, n in report["versions_before"].items() if v.startswith(mine)},
                "versions_after": {v: n for v, n in report["versions_after"].items() if v.startswith(mine)},
                "failures": len(report["failures"]),
                "conflicts": len(report["conflicts"]),
                "started_at": report["started_at"],
                "finished_at": report["finished_at"],
            },
            run=run,
        )
    return len(done)


@within_deadline
def reencrypt_batch(
    hook: KmsHook,
    batch: Sequence[str],
    *,
    dry_run: bool,
    max_workers: int,
    audit: AuditLog | None,
    run: str,
    reason: str,
) -> ReencryptBatchReport:
    """Re-encrypt one batch of envelopes under fresh data keys; the report (XCom).

    Same failure policy as :func:`rewrap_batch`: per-envelope
    failures (e.g. a ``gs://`` target, a tampered envelope) and conflicts are reported, not raised,
    so one bad envelope never stops the others; ``verify`` then fails the run listing them. The
    report adds ``versions_before``/``versions_after`` (what ``summarize`` counts) and
    ``audit_events`` to the library's own.
    """
    with airflow_errors():
        report = reencrypt(hook.get_conn(), list(batch), max_workers=max_workers, dry_run=dry_run)
    data = report_payload(report.to_dict(), ReencryptBatchReport)
    data["versions_before"], data["versions_after"] = version_moves(data["results"])
    events = 0
    if audit is not None:
        with audit_errors():
            events = record_reencrypt(audit, data, reason=reason, run=run)
    elif report.reencrypted:
        log.warning("No audit log configured (spec 'audit_log:' or connection extra): reencrypt not audited")
    for note in report.recovered:
        log.info("resolved an interrupted re-encrypt at %s: %s", note.url, note.reason)
    for issue in (*report.failures, *report.conflicts):
        log.warning("not re-encrypted %s: %s: %s", issue.url, issue.error, issue.reason)
    data["audit_events"] = events
    return data


def new_id_check(batch_reports: Sequence[ReencryptBatchReport]) -> Callable[[Inventory], list[Issue]]:
    """The re-encrypt half of :func:`verify`: a check of the fresh scan against the batches' reports.

    Unwrapping under the primary (the other half) cannot tell a re-encrypted envelope from a merely
    re-wrapped one; the envelope id can, since every new data key comes with a new id. So each
    envelope reported re-encrypted must be found at its URL with its new id, and no envelope of the
    selected keys may still carry an id that was replaced (the suspect data key still in use there,
    e.g. a copy of the envelope that failed).
    """
    done = [r for report in batch_reports for r in report["results"] if r["status"] == "reencrypted"]

    def check(fresh: Inventory) -> list[Issue]:
        by_url = {ref.url: ref for ref in fresh.envelopes}
        by_id = {ref.envelope_id: ref for ref in fresh.envelopes}
        issues: list[Issue] = []
        for r in done:
            url, old, new = r["url"], r["old_envelope_id"], r["new_envelope_id"]
            ref = by_url.get(url)
            if not new or new == old:
                issues.append(Issue(url, "EnvelopeIdUnchanged", f"reported re-encrypted, id still {old}"))
            elif ref is None:
                issues.append(Issue(url, "NotFound", f"re-encrypted as {new}, not found by the fresh scan"))
            elif ref.envelope_id != new:
                seen = f"re-encrypted as {new}, the scan finds {ref.envelope_id}"
                issues.append(Issue(url, "EnvelopeIdMismatch", seen))
            if old in by_id:
                issues.append(
                    Issue(
                        by_id[old].url,
                        "OldDataKeyInUse",
                        f"envelope id {old} (the data key re-encrypted away at {url}) is still in use",
                    )
                )
        return issues

    return check


def mode_check(mode: str, batch_reports: Sequence[BatchReport]) -> Callable[[Inventory], list[Issue]] | None:
    """What ``check`` adds to :func:`verify` in ``mode``: :func:`new_id_check`, or nothing (rewrap).

    In ``reencrypt`` mode the reports are the ``reencrypt`` task's (``route`` ran only that one).
    """
    if mode != "reencrypt":
        return None
    return new_id_check(cast(Sequence[ReencryptBatchReport], batch_reports))
