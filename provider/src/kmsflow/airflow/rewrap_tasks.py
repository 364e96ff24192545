"""The steps of the ``kmsflow_rotate_rewrap`` DAG, as plain functions over a ``KmsHook``.

``dags/kmsflow_rotate_rewrap.py`` only wires these together. Every value they return is JSON-safe
XCom: key, version and record names, counts, states and one-line reasons -- never key material or
plaintext (invariant 4; the rewrap library keeps the unwrapped keyset inside its KMS stage).

Flow: :func:`prepare` (params, spec, keys, roots) → :func:`rotate_keys` (only with ``rotate_first``)
→ :func:`detect_rotation` (primary now vs. primary recorded by the last successful run) →
:func:`take_inventory` (one scan of every root; record URLs to visit) → :func:`make_batches` →
:func:`rewrap_batch` (mapped, one per batch) → :func:`verify` → :func:`summarize`. The
``reencrypt`` mode swaps in :mod:`kmsflow.airflow.reencrypt_tasks` for the mapped step and adds
its check to :func:`verify`; everything else is shared.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from kmsflow.airflow.hooks.kms import KmsHook, within_deadline
from kmsflow.airflow.lifecycle_common import audit_errors, load_key_spec
from kmsflow.airflow.operators.base import airflow_errors
from kmsflow.audit import AuditLog, read_events, record_rewrap
from kmsflow.inventory import Inventory, scan
from kmsflow.kms import resources
from kmsflow.lifecycle import Issue, rewrap, rotate, verify_unwraps
from kmsflow.lifecycle.shred import select_keys

log = logging.getLogger(__name__)

PRIMARIES_VARIABLE = "kmsflow_rotate_rewrap_primaries"
"""Airflow Variable (JSON ``{crypto key: primary version}``) written by each successful live run."""
MODES = ("rewrap", "reencrypt")
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
) -> dict[str, Any]:
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
        selected = select_keys(spec, [key] if key else None)
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from exc
    if not selected:
        raise AirflowFailException(f"the spec {spec_path} declares no crypto keys")
    chosen_roots = list(roots) if roots else sorted({r for _, k in spec.crypto_keys() for r in k.roots})
    if not chosen_roots:
        raise AirflowFailException(
            "no roots to scan: the spec assigns no 'roots' to any key and none were given as a param"
        )
    return {
        "spec_path": str(spec_path),
        "mode": mode,
        "keys": [name for name, _ in selected],
        "roots": chosen_roots,
        "batch_size": batch_size,
        "max_parallel": max_parallel,
    }


@within_deadline
def rotate_keys(
    hook: KmsHook, keys: Sequence[str], audit: AuditLog, *, reason: str, run: str
) -> dict[str, str]:
    """Rotate each key (new primary), audited through ``lifecycle.rotate``; {key: new primary}."""
    rotated: dict[str, str] = {}
    with airflow_errors(), audit_errors():
        for key in keys:
            version = rotate(hook.get_conn(), key, audit=audit, reason=reason, run_id=run)
            log.info("rotated %s: new primary %s", key, version.name)
            rotated[key] = version.name
    return rotated


@within_deadline
def detect_rotation(
    hook: KmsHook,
    keys: Sequence[str],
    previous: Mapping[str, str] | None,
    *,
    audit_location: str | None = None,
) -> dict[str, Any]:
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
                str(e.evidence.get("new_primary")) for e in read_events(audit_location, action="rotate")
            }
    before = dict(previous or {})
    out: dict[str, dict[str, Any]] = {}
    with airflow_errors():
        for name in keys:
            key: Any = resources.get_key(hook.get_conn(), name)
            primary = str(key.primary.name or "")
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
) -> dict[str, Any]:
    """One scan of ``roots``; the envelopes of ``keys`` to visit (``targets``, record URLs), a summary.

    The targets are the stale envelopes (wrapped by a version other than the primary), or with
    ``every_version`` all of the keys' envelopes: re-encrypting replaces a suspect *data* key, which
    an envelope has whichever version wraps it. An incomplete scan does not stop the run: what is
    readable is still visited, and the findings travel to :func:`verify`, which fails the run at the
    end (what was not seen was not visited). Envelopes of keys outside the selection are counted,
    never touched.
    """
    inventory = scan(list(roots), max_workers=max_workers)
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
        "blocking_findings": [f.to_dict() for f in inventory.blocking_findings],
        "summary": {k: summary[k] for k in ("keys", "versions", "envelope_count", "findings")},
    }


def make_batches(urls: Sequence[str], batch_size: int, max_map_length: int) -> list[list[str]]:
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
) -> dict[str, Any]:
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
    data = report.to_dict()
    data["audit_events"] = events
    return data


@within_deadline
def verify(
    hook: KmsHook,
    roots: Sequence[str],
    keys: Sequence[str],
    *,
    dry_run: bool,
    inventory: Mapping[str, Any],
    batch_reports: Sequence[Mapping[str, Any]],
    max_workers: int,
    also: Callable[[Inventory], Sequence[Issue]] | None = None,
) -> dict[str, Any]:
    """A fresh scan; every envelope of ``keys`` must unwrap under its key's primary.

    Fails (after logging everything) when an envelope does not unwrap, is still wrapped by an older
    version (except in a dry run, where that is expected), a batch reported failures or conflicts,
    either scan was incomplete, or ``also`` (the mode's own check of the same fresh scan, e.g.
    :func:`kmsflow.airflow.reencrypt_tasks.new_id_check`) found problems.
    """
    fresh = _only_keys(scan(list(roots), max_workers=max_workers), keys)
    with airflow_errors():
        issues = verify_unwraps(hook.get_conn(), fresh, max_workers=max_workers)
    if also is not None:
        issues.extend(also(fresh))
    not_primary = [i for i in issues if i.error == "NotPrimary"]
    problems = [i for i in issues if not (dry_run and i.error == "NotPrimary")]
    batch_issues = [
        issue for report in batch_reports for issue in (*report["failures"], *report["conflicts"])
    ]
    result: dict[str, Any] = {
        "ok": not problems and not batch_issues and bool(inventory["complete"]) and fresh.complete,
        "scan_id": fresh.scan_id,
        "scan_complete": fresh.complete,
        "envelopes": len(fresh.envelopes),
        "versions_after": _version_counts(fresh, keys),
        "not_primary": len(not_primary),
        "issues": [i.to_dict() for i in problems],
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


def summarize(
    detected: Mapping[str, Any],
    inventory: Mapping[str, Any],
    batch_reports: Sequence[Mapping[str, Any]],
    verified: Mapping[str, Any],
    *,
    dry_run: bool,
    rotated_now: Mapping[str, str] | None = None,
    mode: str = "rewrap",
) -> dict[str, Any]:
    """The run in numbers: counts per version before and after, what moved, what rotated.

    ``batch_reports`` are rewrap or (``mode="reencrypt"``) reencrypt reports; both count envelopes
    per version before and after, so the summary has one shape whichever mode ran.
    """
    would_after: Counter[str] = Counter(inventory["versions_before"])
    for report in batch_reports:
        would_after.subtract(report["versions_before"])
        would_after.update(report["versions_after"])
    return {
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
        "rewrapped": sum(int(r.get("rewrapped", 0)) for r in batch_reports),
        "would_rewrap": sum(int(r.get("would_rewrap", 0)) for r in batch_reports),
        "reencrypted": sum(int(r.get("reencrypted", 0)) for r in batch_reports),
        "would_reencrypt": sum(int(r.get("would_reencrypt", 0)) for r in batch_reports),
        "audit_events": sum(int(r.get("audit_events", 0)) for r in batch_reports),
        "versions_before": dict(inventory["versions_before"]),
        "versions_after": dict(verified["versions_after"]),
        **(
            {"versions_after_if_applied": {k: v for k, v in sorted(would_after.items()) if v}}
            if dry_run
            else {}
        ),
        "verify_scan_id": verified["scan_id"],
    }


def render_summary(summary: Mapping[str, Any]) -> str:
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
