"""``kmsflow``: the command line for producers and consumers of envelopes (no Airflow).

Subcommands are registered in :data:`COMMANDS`; a new one (``rewrap``, ``inventory``, ``audit``) is
a function that adds its parser and a handler returning an exit code, appended to that tuple.
Every failure is one line on stderr, ``kmsflow: error: <reason>``, and an exit code that names its
class (see :data:`EXIT_CODES` and docs/CLI.md); tracebacks are never shown, and messages never
contain plaintext or key material (the library guarantees it; we only print ``str(exc)``).
Every line for people (reports, summaries, errors) goes through :func:`kmsflow.display.printable`:
names come from whoever wrote the files and must not reach the terminal as escape sequences.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from kmsflow import envelope
from kmsflow.audit import AuditLogError, audit_command
from kmsflow.display import printable
from kmsflow.envelope import (
    DestinationExistsError,
    EnvelopeError,
    EnvelopeIOError,
    IntegrityError,
    InvalidDestinationError,
    InvalidPathError,
    RecordInvalidError,
    RecordNotFoundError,
    SourceIncompleteError,
    SourceNotFoundError,
)
from kmsflow.envelope.walk import Obstacle
from kmsflow.kms import (
    KeyVersionUnavailableError,
    KmsCredentialsError,
    KmsError,
    KmsNotFoundError,
    KmsPermissionError,
    KmsTransientError,
    new_kms_client,
)
from kmsflow.lifecycle.commands import (
    EXIT_INCOMPLETE,
    EXIT_KMS_CREDENTIALS,
    EXIT_PARTIAL,
    CommandResult,
    clean_command,
    inventory_command,
    reencrypt_command,
    rewrap_command,
)
from kmsflow.lifecycle.seconds import check_seconds

AUDIT_LOG_ENV = "KMSFLOW_AUDIT_LOG"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4
EXIT_TAMPERED = 5
EXIT_RECORD_INVALID = 6
EXIT_IO = 7
EXIT_KMS_PERMISSION = 10
EXIT_KMS_KEY_UNAVAILABLE = 11
EXIT_KMS_NOT_FOUND = 12
EXIT_KMS_TRANSIENT = 13
EXIT_KMS_OTHER = 14
EXIT_SOURCE_INCOMPLETE = 16
EXIT_INTERRUPTED = 130
EXIT_SIGNAL_BASE = 128  # terminated by signal N: exit 128 + N, as shells report it (143, 129)

# Most specific first: the first matching class decides the exit code.
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (IntegrityError, EXIT_TAMPERED, "envelope failed authentication (tampered, truncated, swapped)"),
    (RecordNotFoundError, EXIT_NOT_FOUND, "not found: SRC or its envelope record is missing"),
    (SourceNotFoundError, EXIT_NOT_FOUND, "SRC does not exist"),
    (DestinationExistsError, EXIT_EXISTS, "DST already exists (kmsflow never overwrites)"),
    (InvalidDestinationError, EXIT_USAGE, "usage error: DST inside SRC or inside an envelope"),
    (
        SourceIncompleteError,
        EXIT_SOURCE_INCOMPLETE,
        "SRC holds entries that cannot be encrypted as files (see --skip-unsupported)",
    ),
    (RecordInvalidError, EXIT_RECORD_INVALID, "record unreadable or of a newer format version"),
    (InvalidPathError, EXIT_RECORD_INVALID, "unusable relative path in the dataset or record"),
    (EnvelopeIOError, EXIT_IO, "reading or writing storage failed (disk full, network, permission)"),
    (EnvelopeError, EXIT_INTERNAL, "other envelope error"),
    (AuditLogError, EXIT_IO, "the audit log cannot be read or written"),
    (KmsPermissionError, EXIT_KMS_PERMISSION, "KMS: caller lacks the IAM permission"),
    (KeyVersionUnavailableError, EXIT_KMS_KEY_UNAVAILABLE, "KMS: key version disabled or destroyed"),
    (KmsNotFoundError, EXIT_KMS_NOT_FOUND, "KMS: key or key version does not exist"),
    (KmsTransientError, EXIT_KMS_TRANSIENT, "KMS: unavailable after retries (try again later)"),
    (KmsCredentialsError, EXIT_KMS_CREDENTIALS, "KMS: no credentials (ADC or KMS_EMULATOR_HOST)"),
    (KmsError, EXIT_KMS_OTHER, "KMS: other error (invalid argument, corrupted response)"),
)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception (``EXIT_INTERNAL`` when unclassified)."""
    for cls, code, _ in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_INTERNAL


def _epilog() -> str:
    rows = {EXIT_OK: "success", EXIT_USAGE: "usage error", EXIT_INTERNAL: "unexpected error"}
    for _, code, text in EXIT_CODES:
        rows.setdefault(code, text)
    rows[EXIT_INCOMPLETE] = "inventory/rewrap/clean: scan incomplete (findings block any proof)"
    rows[EXIT_PARTIAL] = "rewrap/reencrypt: some envelopes failed or conflicted; clean: some temps failed"
    rows[EXIT_INTERRUPTED] = "interrupted (no partial output kept)"
    for sig in TERMINATING_SIGNALS:
        rows[EXIT_SIGNAL_BASE + sig] = f"terminated by {sig.name} (no partial output kept)"
    lines = ["exit codes:", *(f"  {code:>3}  {text}" for code, text in sorted(rows.items()))]
    lines += [
        "",
        "environment: KMS_EMULATOR_HOST=host:port (use the KMS emulator), KMSFLOW_PRINCIPAL (emulator",
        "caller identity), STORAGE_EMULATOR_HOST=host:port (use a GCS emulator for gs:// paths).",
        "Otherwise Application Default Credentials are used. Details: docs/CLI.md, docs/FORMAT.md.",
    ]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


@contextmanager
def _progress(enabled: bool, *, unit: str = "bytes") -> Iterator[envelope.Progress | None]:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise. ``unit`` "bytes"
    shows sizes and speed; anything else (rewrap's envelopes) shows done/total."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts: list[ProgressColumn] = (
        [DownloadColumn(), TransferSpeedColumn()]
        if unit == "bytes"
        else [MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn()]
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )

    class _Bar:
        task: Any = None

        def start(self, total: int, description: str) -> None:
            self.task = bar.add_task(escape(printable(description)), total=total)  # names: not markup

        def advance(self, n: int) -> None:
            bar.advance(self.task, n)

    with bar:
        yield _Bar()


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _note(args: argparse.Namespace, message: str) -> None:
    """A human summary line on stderr, on a terminal only (scripts read the exit code)."""
    if _show_progress(args):
        sys.stderr.write(printable(message) + "\n")


def _cmd_encrypt(args: argparse.Namespace) -> int:
    omitted: list[Obstacle] | None = [] if args.skip_unsupported else None
    with new_kms_client() as client, _progress(_show_progress(args)) as progress:
        record = envelope.encrypt(client, args.key, args.src, args.dst, progress=progress, omitted=omitted)
    for left_out in omitted or []:  # always shown: the user must know what is not in the envelope
        sys.stderr.write(printable(f"kmsflow: skipped {left_out.rel}: {left_out.detail}") + "\n")
    _note(
        args, f"encrypted {len(record.files)} file(s) into {args.dst} under {record.key.crypto_key_version}"
    )
    return EXIT_OK


def _cmd_decrypt(args: argparse.Namespace) -> int:
    with new_kms_client() as client, _progress(_show_progress(args)) as progress:
        record = envelope.decrypt(client, args.src, args.dst, progress=progress)
    _note(args, f"decrypted {len(record.files)} file(s) into {args.dst}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    with new_kms_client() as client, _progress(_show_progress(args)) as progress:
        record = envelope.verify(client, args.src, progress=progress)
    _note(args, f"ok: {len(record.files)} file(s), envelope {record.envelope_id} authenticated")
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    summary = envelope.inspect(args.src)
    if not args.files:
        summary.pop("files")
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def _common() -> argparse.ArgumentParser:
    """Options every subcommand accepts after its name too (``kmsflow encrypt -q ...``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar or summary"
    )
    return common


def _add_encrypt(sub: Any) -> None:
    p = sub.add_parser(
        "encrypt", parents=[_common()], help="encrypt a file or a directory dataset into one envelope"
    )
    p.add_argument("--key", required=True, help="CryptoKey resource name (its primary version wraps)")
    p.add_argument("src", metavar="SRC", help="file or directory: local path, file:// or gs:// URL")
    p.add_argument("dst", metavar="DST", help="new envelope path (must not exist)")
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave out of a dataset what cannot go in as a file (links to directories, FIFOs, sockets, "
        "devices, broken links, unreadable directories) and name each on stderr; without it they fail "
        f"the command (exit {EXIT_SOURCE_INCOMPLETE})",
    )
    p.set_defaults(func=_cmd_encrypt)


def _add_decrypt(sub: Any) -> None:
    p = sub.add_parser("decrypt", parents=[_common()], help="decrypt an envelope (all or nothing)")
    p.add_argument("src", metavar="SRC", help="the envelope: the DST that encrypt was given")
    p.add_argument("dst", metavar="DST", help="plaintext output path (must not exist)")
    p.set_defaults(func=_cmd_decrypt)


def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify", parents=[_common()], help="authenticate every byte of an envelope without writing plaintext"
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.set_defaults(func=_cmd_verify)


def _add_inspect(sub: Any) -> None:
    p = sub.add_parser(
        "inspect", parents=[_common()], help="print the envelope record summary as JSON (no KMS call)"
    )
    p.add_argument("src", metavar="SRC", help="the envelope")
    p.add_argument("--no-files", dest="files", action="store_false", help="omit the per-file list")
    p.set_defaults(func=_cmd_inspect)


def _finish(result: CommandResult) -> int:
    """Print a lifecycle command's report (stdout) and its one-line reason (stderr)."""
    sys.stdout.write(result.output)
    if result.error:
        sys.stderr.write(f"kmsflow: error: {printable(result.error)}\n")
    return result.exit_code


def _shown(lines: list[str]) -> str:
    """Report lines for a person's terminal: each :func:`printable` (they hold names), one per line."""
    return "".join(printable(line) + "\n" for line in lines)


def _render_inventory(report: dict[str, Any]) -> str:
    """The human view of ``kmsflow inventory`` (``--json`` prints the full report instead)."""
    lines = [
        f"scan {report['scan_id']}: {report['envelope_count']} envelope(s) under "
        f"{', '.join(report['roots'])} - {'complete' if report['complete'] else 'INCOMPLETE'}"
    ]
    for name, stats in sorted(report["versions"].items()):
        lines.append(
            f"  {name}: {stats['envelopes']} envelope(s), {stats['files']} file(s), "
            f"{stats['plaintext_bytes']} bytes, newest {stats['newest_created']}"
        )
    lines += [f"  {f['kind']}: {f['url']}: {f['detail']}" for f in report["findings"]]
    return _shown(lines)


def _cmd_inventory(args: argparse.Namespace) -> int:
    result = inventory_command(args.roots, max_workers=args.workers)
    if not args.json and result.output:
        result = result._replace(output=_render_inventory(json.loads(result.output)))
    return _finish(result)


def _cmd_rewrap(args: argparse.Namespace) -> int:
    with _progress(_show_progress(args), unit="envelopes") as progress:
        result = rewrap_command(args.paths, dry_run=args.dry_run, max_workers=args.workers, progress=progress)
    return _finish(result)


def _cmd_reencrypt(args: argparse.Namespace) -> int:
    with _progress(_show_progress(args) and not args.dry_run) as progress:
        result = reencrypt_command(
            args.paths,
            dry_run=args.dry_run,
            max_workers=args.workers,
            stale_after=args.stale_after,
            progress=progress,
        )
    return _finish(result)


def _render_clean(report: dict[str, Any]) -> str:
    """The human view of ``kmsflow clean`` (``--json`` prints the full report instead)."""
    done = f"would remove {report['would_remove']}" if report["dry_run"] else f"removed {report['removed']}"
    lines = [
        f"{done} temp(s), kept {report['kept']}, failed {report['failed']} "
        f"(threshold: older than {report['older_than']:g} s)"
    ]
    for t in report["temps"]:
        age = "age ?" if t["age"] is None else f"{t['age']:.0f} s old"
        why = f": {t['reason']}" if t["reason"] else ""
        lines.append(f"  {t['status']}: {t['url']} ({t['kind']}, {age}){why}")
    lines += [f"  {f['kind']}: {f['url']}: {f['detail']}" for f in report["unscanned"]]
    return _shown(lines)


def _cmd_clean(args: argparse.Namespace) -> int:
    result = clean_command(args.roots, older_than=args.older_than, dry_run=args.dry_run)
    if not args.json and result.output:
        result = result._replace(output=_render_clean(json.loads(result.output)))
    return _finish(result)


def _cmd_audit(args: argparse.Namespace) -> int:
    if not args.location:
        sys.stderr.write(f"kmsflow: error: name the audit log (LOCATION or ${AUDIT_LOG_ENV})\n")
        return EXIT_USAGE
    text = audit_command(args.location, json_output=args.json, resource=args.resource, action=args.action)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def _seconds(text: str) -> float:
    """argparse type of every flag in seconds: a finite, non-negative number (``nan``, ``inf`` and
    negatives are usage errors, exit 2; see ``kmsflow.lifecycle.seconds``)."""
    try:
        return check_seconds(float(text), "SECONDS")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want a finite, non-negative number of seconds, not {text!r}"
        ) from None


def _add_inventory(sub: Any) -> None:
    p = sub.add_parser(
        "inventory",
        parents=[_common()],
        help="list envelopes under roots per key version; exit 8 if the scan is incomplete",
    )
    p.add_argument("roots", nargs="+", metavar="ROOT", help="directory or gs:// prefix to scan")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.add_argument(
        "--workers",
        type=int,
        default=16,
        help="parallel record reads on gs:// and network mounts (default 16; local disks: at most 4)",
    )
    p.set_defaults(func=_cmd_inventory)


def _add_rewrap(sub: Any) -> None:
    p = sub.add_parser(
        "rewrap",
        parents=[_common()],
        help="re-wrap data keys onto each key's primary version (the data is never read)",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="an envelope, or a root to scan")
    p.add_argument("--dry-run", action="store_true", help="report what would be re-wrapped")
    p.add_argument("--workers", type=int, default=16, help="concurrent KMS round trips (default 16)")
    p.set_defaults(func=_cmd_rewrap)


def _add_reencrypt(sub: Any) -> None:
    p = sub.add_parser(
        "reencrypt",
        parents=[_common()],
        help="suspected data-key compromise: new data keys, data re-encrypted (local paths, gs://)",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="an envelope, or a root to scan")
    p.add_argument("--dry-run", action="store_true", help="report what would be re-encrypted")
    p.add_argument("--workers", type=int, default=4, help="envelopes re-encrypted at once (default 4)")
    p.add_argument(
        "--stale-after",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="gs:// only: take over another run's uncommitted staging once its newest object is this "
        "old (default 1800; a live run refreshes its lease every minute)",
    )
    p.set_defaults(func=_cmd_reencrypt)


def _add_clean(sub: Any) -> None:
    p = sub.add_parser(
        "clean",
        parents=[_common()],
        help="remove temps left by interrupted kmsflow writes (never backups or committed staging)",
    )
    p.add_argument("roots", nargs="+", metavar="ROOT", help="directory or gs:// prefix to scan")
    p.add_argument(
        "--older-than",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="remove a temp only once its newest content is this old (default 3600; under 60 can "
        "remove the gs:// staging of a live reencrypt)",
    )
    p.add_argument("--dry-run", action="store_true", help="report what would be removed")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.set_defaults(func=_cmd_clean)


def _add_audit(sub: Any) -> None:
    p = sub.add_parser("audit", parents=[_common()], help="show the kmsflow audit log")
    p.add_argument(
        "location",
        nargs="?",
        default=os.environ.get(AUDIT_LOG_ENV),
        metavar="LOCATION",
        help=f"audit log file or gs:// prefix (default ${AUDIT_LOG_ENV})",
    )
    p.add_argument("--json", action="store_true", help="print events as JSON")
    p.add_argument("--resource", help="only events for this key ring/key/version (and below)")
    p.add_argument("--action", help="only events of this action (disable, destroy, rewrap, ...)")
    p.set_defaults(func=_cmd_audit)


Register = Callable[[Any], None]
COMMANDS: tuple[Register, ...] = (
    _add_encrypt,
    _add_decrypt,
    _add_verify,
    _add_inspect,
    _add_inventory,
    _add_rewrap,
    _add_reencrypt,
    _add_audit,
    _add_clean,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kmsflow",
        description="Client-side envelope encryption of files and datasets with Cloud KMS.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Handled like Ctrl-C: what Airflow (task timeout, run marked failed), ``timeout``, systemd and
Kubernetes send, and what a closed terminal sends. Their default action kills the process without
unwinding, which would leave a decrypt's partial plaintext behind."""


class Terminated(BaseException):
    """Raised in the main thread by the handler of a :data:`TERMINATING_SIGNALS` signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it and
    every staging's ``except BaseException`` abort runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _terminating_signals_raise(received: list[int]) -> Iterator[None]:
    """While the block runs, SIGTERM/SIGHUP raise :class:`Terminated` and are appended to
    ``received`` (raised once: a repeated signal must not interrupt the cleanup it started;
    SIGKILL still ends the process). A signal ignored on entry (``nohup``) stays ignored; the
    previous handlers are restored afterwards. Only the main thread can set handlers; elsewhere
    the block runs with the process's handlers as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)

    previous = {
        sig: signal.signal(sig, handler)
        for sig in TERMINATING_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kmsflow`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    received: list[int] = []
    try:
        with _terminating_signals_raise(received):
            code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("kmsflow: error: interrupted; no partial output was kept\n")
        return EXIT_INTERRUPTED
    except Terminated as exc:
        return _terminated(exc.signum)
    except Exception as exc:  # every failure: one line, its class's exit code, no traceback
        if received:  # a library turned the signal's exception into its own error on the way out
            return _terminated(received[0])
        reason = printable(str(exc).strip()) or exc.__class__.__name__  # escaped: one line, inert
        if exit_code_for(exc) == EXIT_INTERNAL and not isinstance(exc, EnvelopeError):
            reason = f"{exc.__class__.__name__}: {reason}"
        sys.stderr.write(f"kmsflow: error: {reason}\n")
        return exit_code_for(exc)


def _terminated(signum: int) -> int:
    """Report a run ended by a :data:`TERMINATING_SIGNALS` signal; its exit code (128 + signal)."""
    name = signal.Signals(signum).name
    sys.stderr.write(f"kmsflow: error: terminated by {name}; no partial output was kept\n")
    return EXIT_SIGNAL_BASE + signum


if __name__ == "__main__":
    raise SystemExit(main())
