"""The ``reencrypt`` mode of ``kmsflow_rotate_rewrap``: new data keys for a suspected compromise.

Re-wrapping (:mod:`kmsflow.airflow.rewrap_tasks`) answers a compromised KMS key *version*; when a
*data key* may have leaked, every byte it encrypted must be re-encrypted under a fresh one
(:func:`kmsflow.lifecycle.reencrypt`). The DAG keeps its rewrap structure (inventory, batches,
mapped tasks, verify, publish); only the two steps that differ live here:

* :func:`reencrypt_batch` -- the mapped task: one library ``reencrypt`` per batch, audited;
* :func:`new_id_check` -- what ``verify`` adds in this mode: each envelope the batches re-encrypted
  carries its new envelope id on disk and its old one (the suspect data key) is gone.

Reports are XCom: URLs, envelope ids, version names, counts and one-line reasons -- never plaintext
or key material (invariant 4; the library keeps both data keys inside its per-envelope job).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kmsflow.airflow.hooks.kms import KmsHook, within_deadline
from kmsflow.airflow.lifecycle_common import audit_errors
from kmsflow.airflow.operators.base import airflow_errors
from kmsflow.audit import AuditLog
from kmsflow.inventory import Inventory
from kmsflow.kms.crypto import key_of
from kmsflow.lifecycle import Issue, reencrypt

log = logging.getLogger(__name__)

AUDIT_ACTION = "reencrypt-batch"
_DONE = ("reencrypted", "would_reencrypt")


def version_moves(results: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
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


def record_reencrypt(audit: AuditLog, report: Mapping[str, Any], *, reason: str, run: str) -> int:
    """One ``reencrypt-batch`` event per crypto key whose envelopes a live batch re-encrypted.

    The evidence names each envelope with its old and new envelope id (the old id identifies the
    suspect data key: proof it no longer protects anything), plus counts per version and the
    batch's failures/conflicts. Ids and names only. A dry run changed nothing and records nothing.
    Returns the number of events appended.
    """
    if report["dry_run"]:
        return 0
    done: dict[str, list[Mapping[str, Any]]] = {}
    for r in report["results"]:
        if r["status"] == "reencrypted":
            done.setdefault(key_of(r["old_version"]), []).append(r)
    for key, results in sorted(done.items()):
        mine = f"{key}/cryptoKeyVersions/"
        audit.append(
            AUDIT_ACTION,
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
) -> dict[str, Any]:
    """Re-encrypt one batch of envelopes under fresh data keys; the report (XCom).

    Same failure policy as :func:`~kmsflow.airflow.rewrap_tasks.rewrap_batch`: per-envelope
    failures (e.g. a ``gs://`` target, a tampered envelope) and conflicts are reported, not raised,
    so one bad envelope never stops the others; ``verify`` then fails the run listing them. The
    report adds ``versions_before``/``versions_after`` (what ``summarize`` counts) and
    ``audit_events`` to the library's own.
    """
    with airflow_errors():
        report = reencrypt(hook.get_conn(), list(batch), max_workers=max_workers, dry_run=dry_run)
    data = report.to_dict()
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


def new_id_check(batch_reports: Sequence[Mapping[str, Any]]) -> Callable[[Inventory], list[Issue]]:
    """The re-encrypt half of ``verify``: a check of the fresh scan against the batches' reports.

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
