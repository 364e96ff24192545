"""``kmsflow``: the command line for producers and consumers of envelopes (no Airflow).

Every failure is one line on stderr, ``kmsflow: error: <reason>``, and an exit code that names its
class (:mod:`kmsflow.cli.exits`, docs/CLI.md). Every line for people (reports, summaries, errors)
goes through :func:`kmsflow.display.printable`: names come from whoever wrote the files and must not
reach the terminal as escape sequences.

Modules: :mod:`~kmsflow.cli.app` (parser, :func:`main`), :mod:`~kmsflow.cli.exits` (the exit-code
table), :mod:`~kmsflow.cli.signals` (SIGTERM/SIGHUP), :mod:`~kmsflow.cli.progress` (the progress bar
and terminal summaries), :mod:`~kmsflow.cli.render` (human views of the reports),
:mod:`~kmsflow.cli.args` (shared argument handling) and one module per group of commands:
:mod:`~kmsflow.cli.envelope` (encrypt, decrypt, verify, inspect), :mod:`~kmsflow.cli.lifecycle`
(inventory, rewrap, reencrypt, clean) and :mod:`~kmsflow.cli.audit`.

Importing this package (and building the parser) does not load the Cloud KMS client or gRPC: the
handlers import what they need, and :data:`EXIT_CODES` imports its exception classes on first use.
"""

from __future__ import annotations

from kmsflow.cli import exits
from kmsflow.cli.app import COMMANDS, build_parser, main
from kmsflow.cli.exits import (
    EXIT_EXISTS,
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_KMS_CREDENTIALS,
    EXIT_KMS_KEY_UNAVAILABLE,
    EXIT_KMS_NOT_FOUND,
    EXIT_KMS_OTHER,
    EXIT_KMS_PERMISSION,
    EXIT_KMS_TRANSIENT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_RECORD_INVALID,
    EXIT_SIGHUP,
    EXIT_SIGNAL_BASE,
    EXIT_SIGTERM,
    EXIT_SOURCE_INCOMPLETE,
    EXIT_TAMPERED,
    EXIT_USAGE,
    exit_code_for,
)
from kmsflow.cli.signals import TERMINATING_SIGNALS, Terminated

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "EXIT_EXISTS",
    "EXIT_INCOMPLETE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_IO",
    "EXIT_KMS_CREDENTIALS",
    "EXIT_KMS_KEY_UNAVAILABLE",
    "EXIT_KMS_NOT_FOUND",
    "EXIT_KMS_OTHER",
    "EXIT_KMS_PERMISSION",
    "EXIT_KMS_TRANSIENT",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_RECORD_INVALID",
    "EXIT_SIGHUP",
    "EXIT_SIGNAL_BASE",
    "EXIT_SIGTERM",
    "EXIT_SOURCE_INCOMPLETE",
    "EXIT_TAMPERED",
    "EXIT_USAGE",
    "TERMINATING_SIGNALS",
    "Terminated",
    "build_parser",
    "exit_code_for",
    "main",
]


def __getattr__(name: str) -> object:
    if name == "EXIT_CODES":  # imports the exception classes (and with them the KMS client)
        return exits.exception_codes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
