"""The ``kmsflow`` parser and :func:`main`: dispatch, signals, and one line per failure.

Subcommands are registered in :data:`COMMANDS`: a new one is a function that adds its parser and
a handler returning an exit code, appended to that tuple. Handlers raise rather than print errors:
:func:`main` turns any exception into ``kmsflow: error: <reason>`` and its class's exit code
(:mod:`kmsflow.cli.exits`); tracebacks are never shown, and messages never contain plaintext or key
material (the library guarantees it; only ``str(exc)`` is printed, through ``printable``).
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kmsflow.cli.args import Parser
from kmsflow.cli.audit import add_audit
from kmsflow.cli.envelope import add_decrypt, add_encrypt, add_inspect, add_sign, add_verify
from kmsflow.cli.exits import EXIT_INTERNAL, EXIT_INTERRUPTED, exit_code_for, exit_code_table
from kmsflow.cli.lifecycle import add_clean, add_inventory, add_reencrypt, add_rewrap
from kmsflow.cli.pubkey import add_pubkey
from kmsflow.cli.signals import Terminated, terminated, terminating_signals_raise
from kmsflow.display import printable

Register = Callable[[Any], None]
COMMANDS: tuple[Register, ...] = (
    add_encrypt,
    add_decrypt,
    add_verify,
    add_inspect,
    add_sign,
    add_inventory,
    add_rewrap,
    add_reencrypt,
    add_audit,
    add_clean,
    add_pubkey,
)


def _epilog() -> str:
    lines = [
        *exit_code_table(),
        "",
        "environment: KMS_EMULATOR_HOST=host:port (use the KMS emulator), KMSFLOW_PRINCIPAL (emulator",
        "caller identity), STORAGE_EMULATOR_HOST=host:port (use a GCS emulator for gs:// paths).",
        "Otherwise Application Default Credentials are used. Details: docs/CLI.md, docs/FORMAT.md.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kmsflow",
        description="Client-side envelope encryption of files and datasets with Cloud KMS.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for register in COMMANDS:
        register(sub)
    return parser


GC_THRESHOLD = 10_000
"""The cyclic collector's first-generation threshold while a command runs (Python's is 700).

A command's start-up creates objects that live to the end: ~26,000 for a local decrypt, ~70,000
with gs:// (the modules of gcsfs, aiohttp, gRPC, Tink and the KMS types). At 700 the collector
walks them ~170 times in a ``kmsflow decrypt gs://...``, about 50 ms, 5 % of a 256 MiB one
(docs/BENCHMARKS.md). A command is a short process whose data path makes little cyclic garbage:
collecting every 10,000 allocations costs ~20 ms and a few MiB at most. Restored when
:func:`main` returns (tests call it in process)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kmsflow`` console script; returns the process exit code."""
    threshold = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *threshold[1:])
    try:
        return _run(argv)
    finally:
        gc.set_threshold(*threshold)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    received: list[int] = []
    try:
        with terminating_signals_raise(received):
            code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("kmsflow: error: interrupted; no partial output was kept\n")
        return EXIT_INTERRUPTED
    except Terminated as exc:
        return terminated(exc.signum)
    except Exception as exc:  # every failure: one line, its class's exit code, no traceback
        if received:  # a library turned the signal's exception into its own error on the way out
            return terminated(received[0])
        return _failed(exc)


def _failed(exc: Exception) -> int:
    """Print the one line for a failed command; its class's exit code."""
    from kmsflow.envelope.errors import EnvelopeError

    reason = printable(str(exc).strip()) or exc.__class__.__name__  # escaped: one line, inert
    code = exit_code_for(exc)
    if code == EXIT_INTERNAL and not isinstance(exc, EnvelopeError):
        reason = f"{exc.__class__.__name__}: {reason}"
    sys.stderr.write(f"kmsflow: error: {reason}\n")
    return code
