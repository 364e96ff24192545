"""The re-encrypt run: collect the targets (envelopes or roots), resolve what interrupted runs
left, re-encrypt each envelope (:mod:`.job`) a few at a time, report."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from google.cloud import kms_v1

from kmsflow.clock import format_time, utc_now
from kmsflow.envelope.progress import Progress
from kmsflow.envelope.record_io import parse_record, read_record_bytes
from kmsflow.lifecycle.outcomes import EnvelopeStatus
from kmsflow.lifecycle.reencryption import gcs
from kmsflow.lifecycle.reencryption.job import GCS_SCHEMES, LOCAL_SCHEMES, StepHook, reencrypt_one
from kmsflow.lifecycle.reencryption.progress import ByteMeter
from kmsflow.lifecycle.reencryption.recovery import recover_named, resolve_finding, scheme
from kmsflow.lifecycle.reencryption.report import (
    NOT_SUPPORTED,
    EnvelopeOutcome,
    ReencryptNotSupportedError,
    ReencryptReport,
)
from kmsflow.lifecycle.rewrap import PrimaryCache
from kmsflow.lifecycle.seconds import check_seconds
from kmsflow.lifecycle.targets import EnvelopeTarget, Issue, Targets, collect
from kmsflow.pools import ContextThreadPool

log = logging.getLogger("kmsflow.lifecycle.reencrypt")

PROGRESS_EVERY_S = 30.0
"""How often a run logs its progress (bytes and envelopes done) at INFO. Each envelope's own line
is DEBUG, like rewrap's: the report lists every envelope, and the log stays readable at 100,000."""


def reencrypt(
    client: kms_v1.KeyManagementServiceClient,
    targets: Sequence[str],
    *,
    max_workers: int = 4,
    dry_run: bool = False,
    on_step: StepHook | None = None,
    stale_after: float = gcs.DEFAULT_STALE_AFTER,
    progress: Progress | None = None,
) -> ReencryptReport:
    """Re-encrypt every envelope under ``targets`` (envelopes or roots) under a fresh data key.

    ``dry_run`` resolves nothing, makes no KMS Encrypt/Decrypt and writes nothing: it lists what
    would be re-encrypted (and under which primary). ``max_workers`` envelopes are processed at a
    time (each streams its files in order). ``stale_after`` (seconds) is when a GCS staging prefix
    without COMMIT counts as left by a killed run (GCS has no lock to tell; see
    :mod:`~kmsflow.lifecycle.reencryption.gcs`). ``progress`` (e.g. the CLI's bar) is started with
    twice the plaintext bytes to go (each is read to re-encrypt it and again to verify it) and
    advanced from the worker threads; the INFO log has the same every :data:`PROGRESS_EVERY_S`. A
    dry run reads no data and reports no progress. ``on_step`` is the test seam (module docstring).
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    check_seconds(stale_after, "stale_after")
    start = time.monotonic()
    report = ReencryptReport(dry_run=dry_run, started_at=format_time(utc_now()))
    supported: list[str] = []
    for target in targets:
        if scheme(target) in ("", *LOCAL_SCHEMES, *GCS_SCHEMES):
            supported.append(target)
        else:
            report.failures.append(Issue(target, ReencryptNotSupportedError.__name__, NOT_SUPPORTED))

    # Resolve what killed runs left before reading anything (a dry run only reports it): first the
    # envelopes named directly (a local one missing mid-swap is found by its name only), then
    # whatever the scan of the roots reports; rescan if that changed anything.
    if not dry_run:
        recover_named(report, supported, stale_after)
    found = collect(supported, max_workers=max_workers) if supported else Targets()
    if not dry_run:
        changed = False
        for finding in found.findings:
            changed |= resolve_finding(report, finding, stale_after)
        if changed:
            found = collect(supported, max_workers=max_workers)
    report.failures.extend(found.issues)
    report.scan_findings = list(found.findings)
    report.scan_complete = found.scan_complete
    primaries = PrimaryCache(client)
    sizes = [_plaintext_bytes(t, read=progress is not None and not dry_run) for t in found.envelopes]
    meter = None
    if not dry_run:
        total = None if None in sizes else sum(s for s in sizes if s is not None)
        meter = ByteMeter(
            progress, plaintext_bytes=total, envelopes=len(sizes), log=log, every_s=PROGRESS_EVERY_S
        )

    def one(target: EnvelopeTarget, size: int | None) -> EnvelopeOutcome:
        share = meter.for_envelope(size) if meter is not None else None
        try:
            return reencrypt_one(client, primaries, target, dry_run, on_step, stale_after, share)
        finally:
            if share is not None:
                share.finish()

    with ContextThreadPool(max_workers=max_workers, thread_name_prefix="kmsflow-reencrypt") as pool:
        for result in pool.map(one, found.envelopes, sizes):
            report.results.append(result)
            if result.status == EnvelopeStatus.FAILED:
                report.failures.append(Issue(result.url, result.error, result.reason))
            elif result.status == EnvelopeStatus.CONFLICT:
                report.conflicts.append(Issue(result.url, result.error, result.reason))
    report.finished_at = format_time(utc_now())
    report.elapsed_s = time.monotonic() - start
    log.info(
        "reencrypt%s: %d envelope(s), %d re-encrypted, %d would be, %d recovered, %d conflict(s), "
        "%d failure(s); %.1f MiB of plaintext in %.1f s",
        " (dry run)" if dry_run else "",
        report.envelopes,
        report.reencrypted,
        report.would_reencrypt,
        len(report.recovered),
        len(report.conflicts),
        len(report.failures),
        report.plaintext_bytes / (1 << 20),
        report.elapsed_s,
    )
    return report


def _plaintext_bytes(target: EnvelopeTarget, *, read: bool) -> int | None:
    """The target's plaintext size for the progress total: from the scan; else (an envelope named
    directly) from its record if ``read`` (a bar needs a total; the log does without, and an
    Airflow batch of envelopes would pay a GET each on GCS); 0 if the record cannot be read -- the
    envelope's job reports why."""
    if target.plaintext_bytes is not None or not read:
        return target.plaintext_bytes
    try:
        return parse_record(read_record_bytes(target.record), target.record.url, target.kind).plaintext_size
    except Exception:  # reported by the envelope's own job, which reads the record again
        return 0
