"""``kmsflow inventory``, ``rewrap``, ``reencrypt`` and ``clean``: commands over many envelopes.

Each ``*_command`` function returns a :class:`CommandResult`: the exit code, the JSON report for
stdout (also on failure, so scripts can see what was found; ``render=`` one of
:mod:`kmsflow.cli.render` gives the human view instead) and, when the exit code is not 0, one line
for stderr. They never raise for storage or KMS problems and never print; the ``_cmd_*`` handlers
print. Nothing they output holds key material (reports carry names, ids, counts, dates).

Exit codes (:mod:`kmsflow.cli.exits`), the report printed in every case: ``EXIT_INCOMPLETE`` (8)
when a scan found blocking findings (no proof of "zero references" possible); ``EXIT_PARTIAL`` (9)
when rewrap/reencrypt left some envelopes not current (failures or conflicts; rerun) or clean could
not remove some temps; ``EXIT_KMS_CREDENTIALS`` (15) when there are no usable Google credentials:
one line saying how to fix it, rather than the same failure once per envelope.

The library and the KMS client are imported by the functions that use them, not with this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from kmsflow.cli.args import common, seconds
from kmsflow.cli.exits import EXIT_INCOMPLETE, EXIT_KMS_CREDENTIALS, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from kmsflow.cli.progress import progress_bar, show_progress
from kmsflow.cli.render import render_clean, render_inventory, render_reencrypt, render_rewrap
from kmsflow.display import printable

if TYPE_CHECKING:
    from google.cloud import kms_v1

    from kmsflow.envelope.progress import Progress

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_KMS_CREDENTIALS",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "CommandResult",
    "clean_command",
    "inventory_command",
    "reencrypt_command",
    "rewrap_command",
]


class CommandResult(NamedTuple):
    exit_code: int
    output: str
    error: str = ""


Render = Callable[[Any], str]
"""A report's human view (:mod:`kmsflow.cli.render`); without one, the output is the JSON report."""


class _Report(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def _result(
    exit_code: int, report: _Report | None, error: str = "", render: Render | None = None
) -> CommandResult:
    """``report`` as text (``render``'s view, or JSON), or no output when the command was refused."""
    if report is None:
        output = ""
    elif render is not None:
        output = render(report)
    else:
        output = json.dumps(report.to_dict(), indent=2) + "\n"
    return CommandResult(exit_code, output, error)


class _LifecycleReport(_Report, Protocol):
    """What rewrap and reencrypt reports share: the run's outcome and its reasons."""

    @property
    def ok(self) -> bool: ...
    @property
    def failures(self) -> Sequence[Any]: ...
    @property
    def conflicts(self) -> Sequence[Any]: ...
    @property
    def scan_findings(self) -> Sequence[Any]: ...


def _outcome(report: _LifecycleReport, render: Render | None) -> CommandResult:
    """Exit 0 when ``report.ok``; else ``EXIT_PARTIAL`` (failures/conflicts) or ``EXIT_INCOMPLETE``."""
    from kmsflow.kms.errors import KmsCredentialsError

    if report.ok:
        return _result(EXIT_OK, report, render=render)
    no_credentials = [f for f in report.failures if f.error == KmsCredentialsError.__name__]
    if no_credentials:  # every envelope fails the same way: say it once, with its fix
        reason = f"{len(report.failures)} failure(s), first: {no_credentials[0].reason}"
        return _result(EXIT_KMS_CREDENTIALS, report, reason, render)
    if report.failures or report.conflicts:
        issue = (report.failures or report.conflicts)[0]
        reason = (
            f"{len(report.failures)} failure(s), {len(report.conflicts)} conflict(s); first: "
            f"{issue.url}: {issue.error}: {issue.reason}"
        )
        return _result(EXIT_PARTIAL, report, reason, render)
    first = next(f for f in report.scan_findings if f.blocking)
    reason = f"scan incomplete: first: {first.kind} at {first.url}: {first.detail}"
    return _result(EXIT_INCOMPLETE, report, reason, render)


def _is_seconds(value: float) -> bool:
    """Whether ``value`` passes ``check_seconds``: here a usage error, not an exception."""
    from kmsflow.lifecycle.seconds import check_seconds

    try:
        check_seconds(value, "seconds")
    except ValueError:
        return False
    return True


def _refused(command: str, items: Sequence[str], noun: str, max_workers: int = 1) -> CommandResult | None:
    """The usage error shared by every command: no ``items`` given, or ``--workers`` below 1."""
    if not items:
        return CommandResult(EXIT_USAGE, "", f"{command}: at least one {noun} is required")
    if max_workers < 1:
        return CommandResult(EXIT_USAGE, "", f"{command}: --workers must be at least 1")
    return None


def _client(
    client: kms_v1.KeyManagementServiceClient | None,
) -> kms_v1.KeyManagementServiceClient | CommandResult:
    """``client``, or a new one; exit 15 with the fix when there are no credentials."""
    from kmsflow.kms.client import new_kms_client
    from kmsflow.kms.errors import KmsCredentialsError

    try:
        return client or new_kms_client()
    except KmsCredentialsError as exc:
        return CommandResult(EXIT_KMS_CREDENTIALS, "", str(exc))


def inventory_command(
    roots: Sequence[str], *, max_workers: int = 16, render: Render | None = None
) -> CommandResult:
    """Scan ``roots``; exit 0 if complete, ``EXIT_INCOMPLETE`` otherwise (report printed anyway)."""
    from kmsflow.inventory import scan

    refused = _refused("inventory", roots, "ROOT", max_workers)
    if refused:
        return refused
    inv = scan(roots, max_workers=max_workers)
    if inv.complete:
        return _result(EXIT_OK, inv, render=render)
    first = inv.blocking_findings[0]
    reason = (
        f"scan incomplete: {len(inv.blocking_findings)} blocking finding(s), first: {first.kind} at "
        f"{first.url}: {first.detail}"
    )
    return _result(EXIT_INCOMPLETE, inv, reason, render)


def rewrap_command(
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    max_workers: int = 16,
    client: kms_v1.KeyManagementServiceClient | None = None,
    progress: Progress | None = None,
    render: Render | None = None,
) -> CommandResult:
    """Re-wrap every envelope under ``paths`` onto its key's primary; exit 0 when all are current.
    ``progress`` counts envelopes (the CLI's bar on a terminal)."""
    from kmsflow.lifecycle.rewrap import rewrap

    refused = _refused("rewrap", paths, "PATH", max_workers)
    if refused:
        return refused
    kms = _client(client)
    if isinstance(kms, CommandResult):
        return kms
    report = rewrap(kms, paths, max_workers=max_workers, dry_run=dry_run, progress=progress)
    return _outcome(report, render)


def reencrypt_command(
    paths: Sequence[str],
    *,
    dry_run: bool = False,
    max_workers: int = 4,
    stale_after: float | None = None,
    client: kms_v1.KeyManagementServiceClient | None = None,
    progress: Progress | None = None,
    render: Render | None = None,
) -> CommandResult:
    """Re-encrypt every envelope under ``paths`` under a fresh data key (suspected data-key
    compromise); exit 0 when all were, ``EXIT_PARTIAL`` on failures or conflicts (rerun),
    ``EXIT_INCOMPLETE`` when a root could not be fully scanned. The report is printed either way.
    ``stale_after``: seconds after which an uncommitted GCS staging prefix of another run is taken
    over (None: the library's default). ``progress`` receives the bytes re-encrypted and verified."""
    from kmsflow.lifecycle.reencryption import reencrypt
    from kmsflow.lifecycle.reencryption.gcs import DEFAULT_STALE_AFTER

    refused = _refused("reencrypt", paths, "PATH", max_workers)
    if refused:
        return refused
    if stale_after is not None and not _is_seconds(stale_after):
        return CommandResult(EXIT_USAGE, "", "reencrypt: --stale-after must be a finite, non-negative number")
    kms = _client(client)
    if isinstance(kms, CommandResult):
        return kms
    report = reencrypt(
        kms,
        paths,
        max_workers=max_workers,
        dry_run=dry_run,
        stale_after=DEFAULT_STALE_AFTER if stale_after is None else stale_after,
        progress=progress,
    )
    return _outcome(report, render)


def clean_command(
    roots: Sequence[str],
    *,
    older_than: float | None = None,
    dry_run: bool = False,
    render: Render | None = None,
) -> CommandResult:
    """Remove the stale kmsflow temps under ``roots`` (``kmsflow.lifecycle.clean``): exit 0 when
    every root was scanned and no temp failed; ``EXIT_PARTIAL`` when some temp could not be
    removed, ``EXIT_INCOMPLETE`` when a root (or a directory below it) could not be listed.
    ``older_than`` None: the library's default. The report is printed either way."""
    from kmsflow.lifecycle.clean import DEFAULT_OLDER_THAN, clean_stale_temps

    refused = _refused("clean", roots, "ROOT")
    if refused:
        return refused
    if older_than is not None and not _is_seconds(older_than):
        return CommandResult(EXIT_USAGE, "", "clean: --older-than must be a finite, non-negative number")
    report = clean_stale_temps(
        roots, older_than=DEFAULT_OLDER_THAN if older_than is None else older_than, dry_run=dry_run
    )
    if report.failures:
        first = report.failures[0]
        reason = f"{len(report.failures)} temp(s) could not be removed; first: {first.url}: {first.reason}"
        return _result(EXIT_PARTIAL, report, reason, render)
    if report.unscanned:
        finding = report.unscanned[0]
        reason = f"scan incomplete: {finding.kind} at {finding.url}: {finding.detail}"
        return _result(EXIT_INCOMPLETE, report, reason, render)
    return _result(EXIT_OK, report, render=render)


def _finish(result: CommandResult) -> int:
    """Print a command's report (stdout) and its one-line reason (stderr); its exit code."""
    sys.stdout.write(result.output)
    if result.error:
        sys.stderr.write(f"kmsflow: error: {printable(result.error)}\n")
    return result.exit_code


def _cmd_inventory(args: argparse.Namespace) -> int:
    view = None if args.json else render_inventory
    return _finish(inventory_command(args.roots, max_workers=args.workers, render=view))


def _cmd_rewrap(args: argparse.Namespace) -> int:
    view = render_rewrap if args.human else None
    with progress_bar(show_progress(args), unit="envelopes") as progress:
        result = rewrap_command(
            args.paths, dry_run=args.dry_run, max_workers=args.workers, progress=progress, render=view
        )
    return _finish(result)


def _cmd_reencrypt(args: argparse.Namespace) -> int:
    with progress_bar(show_progress(args) and not args.dry_run) as progress:
        result = reencrypt_command(
            args.paths,
            dry_run=args.dry_run,
            max_workers=args.workers,
            stale_after=args.stale_after,
            progress=progress,
            render=render_reencrypt if args.human else None,
        )
    return _finish(result)


def _cmd_clean(args: argparse.Namespace) -> int:
    view = None if args.json else render_clean
    return _finish(clean_command(args.roots, older_than=args.older_than, dry_run=args.dry_run, render=view))


def _human_or_json(p: argparse.ArgumentParser) -> None:
    """rewrap/reencrypt print their JSON report by default (scripts rely on it): ``--json`` says so
    explicitly, ``--human`` asks for the terminal view instead."""
    view = p.add_mutually_exclusive_group()
    view.add_argument("--json", action="store_true", help="print the full JSON report (the default)")
    view.add_argument("--human", action="store_true", help="print a short human summary instead of JSON")


def _parser(sub: Any, name: str, help: str, target: str) -> argparse.ArgumentParser:
    """A lifecycle command's parser, with its positional targets: ``PATH`` (an envelope or a root)
    or ``ROOT`` (a root to scan)."""
    p: argparse.ArgumentParser = sub.add_parser(name, parents=[common()], help=help)
    if target == "PATH":
        p.add_argument("paths", nargs="+", metavar="PATH", help="an envelope, or a root to scan")
    else:
        p.add_argument("roots", nargs="+", metavar="ROOT", help="directory or gs:// prefix to scan")
    return p


def _dry_run(p: argparse.ArgumentParser, done: str) -> None:
    p.add_argument("--dry-run", action="store_true", help=f"report what would be {done}")


def add_inventory(sub: Any) -> None:
    help = "list envelopes under roots per key version; exit 8 if the scan is incomplete"
    p = _parser(sub, "inventory", help, "ROOT")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.add_argument(
        "--workers",
        type=int,
        default=16,
        help="parallel record reads on gs:// and network mounts (default 16; local disks: at most 4)",
    )
    p.set_defaults(func=_cmd_inventory)


def add_rewrap(sub: Any) -> None:
    help = "re-wrap data keys onto each key's primary version (the data is never read)"
    p = _parser(sub, "rewrap", help, "PATH")
    _dry_run(p, "re-wrapped")
    p.add_argument("--workers", type=int, default=16, help="concurrent KMS round trips (default 16)")
    _human_or_json(p)
    p.set_defaults(func=_cmd_rewrap)


def add_reencrypt(sub: Any) -> None:
    help = "suspected data-key compromise: new data keys, data re-encrypted (local paths, gs://)"
    p = _parser(sub, "reencrypt", help, "PATH")
    _dry_run(p, "re-encrypted")
    p.add_argument("--workers", type=int, default=4, help="envelopes re-encrypted at once (default 4)")
    p.add_argument(
        "--stale-after",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="gs:// only: take over another run's uncommitted staging once its newest object is this "
        "old (default 1800; a live run refreshes its lease every minute)",
    )
    _human_or_json(p)
    p.set_defaults(func=_cmd_reencrypt)


def add_clean(sub: Any) -> None:
    help = "remove temps left by interrupted kmsflow writes (never backups or committed staging)"
    p = _parser(sub, "clean", help, "ROOT")
    p.add_argument(
        "--older-than",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="remove a temp only once its newest content is this old (default 3600; under 60 can "
        "remove the gs:// staging of a live reencrypt)",
    )
    _dry_run(p, "removed")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.set_defaults(func=_cmd_clean)
