"""The ``kmsflow`` parser and :func:`main`: dispatch, signals, and one line per failure.

Subcommands are registered in :data:`COMMANDS`: a new one is a function that adds its parser and
a handler returning an exit code, appended to that tuple. Handlers raise rather than print errors:
:func:`main` turns any exception into ``kmsflow: error: <reason>`` and its class's exit code
(:mod:`kmsflow.cli.exits`); tracebacks are never shown, and messages never contain plaintext or key
material (the library guarantees it; only ``str(exc)`` is printed, through ``printable``).
"""

from __future__ import annotations

import argparse
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kmsflow`` console script; returns the process exit code."""
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
