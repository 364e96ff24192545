"""``kmsflow inventory ROOT... --json`` and ``kmsflow rewrap PATH...`` as plain functions for the CLI.

Each returns a :class:`CommandResult`: the exit code, the text for stdout (a JSON document, also on
failure, so scripts can see what was found) and, when the exit code is not 0, one line for stderr.
They never raise for storage or KMS problems and never print; ``kmsflow.cli`` wires them to
argparse. Nothing they output holds key material (reports carry names, ids, counts, dates).

Exit codes (proposed additions to ``kmsflow.cli.EXIT_CODES``; both still print the full report):

* ``EXIT_INCOMPLETE`` (8): the scan found blocking findings (unreachable root, unreadable or invalid
  record, record without data, data without record): no proof of "zero references" possible.
* ``EXIT_PARTIAL`` (9): rewrap left some envelopes not current (failures or conflicts); rerun.
  For ``clean``: some temps could not be removed.
* ``EXIT_KMS_CREDENTIALS`` (15): no usable Google credentials (``kmsflow.cli.EXIT_CODES`` maps
  :class:`~kmsflow.kms.errors.KmsCredentialsError` to it too): one line saying how to fix it,
  rather than the same failure once per envelope.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from google.cloud import kms_v1

from kmsflow.envelope.progress import Progress
from kmsflow.inventory import scan
from kmsflow.kms.client import new_kms_client
from kmsflow.kms.errors import KmsCredentialsError
from kmsflow.lifecycle.rewrap import rewrap
from kmsflow.lifecycle.seconds import check_seconds

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INCOMPLETE = 8
EXIT_PARTIAL = 9
EXIT_KMS_CREDENTIALS = 15


class CommandResult(NamedTuple):
    exit_code: int
    output: str
    error: str = ""


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


class _LifecycleReport(Protocol):
    """What rewrap and reencrypt reports share: the run's outcome and its reasons."""

    @property
    def ok(self) -> bool: ...
    @property
    def failures(self) -> Sequence[Any]: ...
    @property
    def conflicts(self) -> Sequence[Any]: ...
    @property
    def scan_findings(self) -> Sequence[Any]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _outcome(report: _LifecycleReport) -> CommandResult:
    """Exit 0 when ``report.ok``; else ``EXIT_PARTIAL`` (failures/conflicts) or ``EXIT_INCOMPLETE``."""
    output = _dump(report.to_dict())
    if report.ok:
        return CommandResult(EXIT_OK, output)
    no_credentials = [f for f in report.failures if f.error == KmsCredentialsError.__name__]
    if no_credentials:  # every envelope fails the same way: say it once, with its fix
        return CommandResult(
            EXIT_KMS_CREDENTIALS,
            output,
            f"{len(report.failures)} failure(s), first: {no_credentials[0].reason}",
        )
    if report.failures or report.conflicts:
        issue = (report.failures or report.conflicts)[0]
        reason = (
            f"{len(report.failures)} failure(s), {len(report.conflicts)} conflict(s); first: "
            f"{issue.url}: {issue.error}: {issue.reason}"
        )
        return CommandResult(EXIT_PARTIAL, output, reason)
    first = next(f for f in report.scan_findings if f.blocking)
    return CommandResult(
        EXIT_INCOMPLETE, output, f"scan incomplete: first: {first.kind} at {first.url}: {first.detail}"
    )


def _is_seconds(value: float) -> bool:
    """Whether ``value`` passes :func:`check_seconds`: here a usage error, not an exception."""
    try:
        check_seconds(value, "seconds")
    except ValueError:
        return False
    return True


def inventory_command(roots: Sequence[str], *, max_workers: int = 16) -> CommandResult:
    """Scan ``roots``; exit 0 if complete, ``EXIT_INCOMPLETE`` otherwise (report printed anyway)."""
    if not roots:
        return CommandResult(EXIT_USAGE, "", "inventory: at least one ROOT is required")
    if max_workers < 1:
        return CommandResult(EXIT_USAGE, "", "inventory: --workers must be at least 1")
    inv = scan(roots, max_workers=max_workers)
    output = _dump(inv.to_dict())
    if inv.complete:
        return CommandResult(EXIT_OK, output)
    first = inv.blocking_findings[0]
    return CommandResult(
        EXIT_INCOMPLETE,
        output,
        f"scan incomplete: {len(inv.blocking_findings)} blocking finding(s), first: {first.kind} at "
        f"{first.url}: {first.detail}",
    )


def rewrap_command(
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    max_workers: int = 16,
    client: kms_v1.KeyManagementServiceClient | None = None,
    progress: Progress | None = None,
) -> CommandResult:
    """Re-wrap every envelope under ``paths`` onto its key's primary; exit 0 when all are current.
    ``progress`` counts envelopes (the CLI's bar on a terminal)."""
    if not paths:
        return CommandResult(EXIT_USAGE, "", "rewrap: at least one PATH is required")
    if max_workers < 1:
        return CommandResult(EXIT_USAGE, "", "rewrap: --workers must be at least 1")
    try:
        client = client or new_kms_client()
    except KmsCredentialsError as exc:
        return CommandResult(EXIT_KMS_CREDENTIALS, "", str(exc))
    report = rewrap(client, paths, max_workers=max_workers, dry_run=dry_run, progress=progress)
    return _outcome(report)


def reencrypt_command(
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    max_workers: int = 4,
    stale_after: float | None = None,
    client: kms_v1.KeyManagementServiceClient | None = None,
    progress: Progress | None = None,
) -> CommandResult:
    """Re-encrypt every envelope under ``paths`` under a fresh data key (suspected data-key
    compromise); exit 0 when all were, ``EXIT_PARTIAL`` on failures or conflicts (rerun),
    ``EXIT_INCOMPLETE`` when a root could not be fully scanned. The report is printed either way.
    ``stale_after``: seconds after which an uncommitted GCS staging prefix of another run is taken
    over (None: the library's default). ``progress`` receives the bytes re-encrypted and verified."""
    from kmsflow.lifecycle.reencrypt import reencrypt  # keeps `kmsflow inventory` imports lean
    from kmsflow.lifecycle.reencrypt_gcs import DEFAULT_STALE_AFTER

    if not paths:
        return CommandResult(EXIT_USAGE, "", "reencrypt: at least one PATH is required")
    if max_workers < 1:
        return CommandResult(EXIT_USAGE, "", "reencrypt: --workers must be at least 1")
    if stale_after is not None and not _is_seconds(stale_after):
        return CommandResult(EXIT_USAGE, "", "reencrypt: --stale-after must be a finite, non-negative number")
    try:
        client = client or new_kms_client()
    except KmsCredentialsError as exc:
        return CommandResult(EXIT_KMS_CREDENTIALS, "", str(exc))
    report = reencrypt(
        client,
        paths,
        max_workers=max_workers,
        dry_run=dry_run,
        stale_after=DEFAULT_STALE_AFTER if stale_after is None else stale_after,
        progress=progress,
    )
    return _outcome(report)


def clean_command(
    roots: Sequence[str], *, older_than: float | None = None, dry_run: bool = False
) -> CommandResult:
    """Remove the stale kmsflow temps under ``roots`` (``kmsflow.lifecycle.clean``): exit 0 when
    every root was scanned and no temp failed; ``EXIT_PARTIAL`` when some temp could not be
    removed, ``EXIT_INCOMPLETE`` when a root (or a directory below it) could not be listed.
    ``older_than`` None: the library's default. The report is printed either way."""
    from kmsflow.lifecycle.clean import DEFAULT_OLDER_THAN, clean_stale_temps

    if not roots:
        return CommandResult(EXIT_USAGE, "", "clean: at least one ROOT is required")
    if older_than is not None and not _is_seconds(older_than):
        return CommandResult(EXIT_USAGE, "", "clean: --older-than must be a finite, non-negative number")
    report = clean_stale_temps(
        roots, older_than=DEFAULT_OLDER_THAN if older_than is None else older_than, dry_run=dry_run
    )
    output = _dump(report.to_dict())
    if report.failures:
        first = report.failures[0]
        return CommandResult(
            EXIT_PARTIAL,
            output,
            f"{len(report.failures)} temp(s) could not be removed; first: {first.url}: {first.reason}",
        )
    if report.unscanned:
        first_finding = report.unscanned[0]
        return CommandResult(
            EXIT_INCOMPLETE,
            output,
            f"scan incomplete: {first_finding.kind} at {first_finding.url}: {first_finding.detail}",
        )
    return CommandResult(EXIT_OK, output)
