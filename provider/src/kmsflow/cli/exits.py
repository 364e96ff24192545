"""The exit-code table of the ``kmsflow`` command: every code, defined once (docs/CLI.md lists them).

Exceptions map to codes through :data:`EXIT_CODES` (most specific first). Its classes live in
``kmsflow.envelope.errors``, ``kmsflow.audit.log`` and ``kmsflow.kms.errors``, which load neither
gRPC nor the Cloud KMS client, so the table names them as text and imports them on first use:
``kmsflow --help`` and argument errors never load them (``EXIT_CODES`` is resolved lazily, PEP 562).
"""

from __future__ import annotations

import importlib
import signal
from functools import cache

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4
EXIT_TAMPERED = 5
EXIT_RECORD_INVALID = 6
EXIT_IO = 7
EXIT_INCOMPLETE = 8
EXIT_PARTIAL = 9
EXIT_KMS_PERMISSION = 10
EXIT_KMS_KEY_UNAVAILABLE = 11
EXIT_KMS_NOT_FOUND = 12
EXIT_KMS_TRANSIENT = 13
EXIT_KMS_OTHER = 14
EXIT_KMS_CREDENTIALS = 15
EXIT_SOURCE_INCOMPLETE = 16
EXIT_SIGNAL_BASE = 128  # terminated by signal N: exit 128 + N, as shells report it
EXIT_SIGHUP = EXIT_SIGNAL_BASE + signal.SIGHUP  # 129
EXIT_INTERRUPTED = EXIT_SIGNAL_BASE + signal.SIGINT  # 130 (Ctrl-C)
EXIT_SIGTERM = EXIT_SIGNAL_BASE + signal.SIGTERM  # 143

ExitRow = tuple[type[BaseException], int, str]

# Where the classes named below are defined (imported on first use).
_MODULES = ("kmsflow.envelope.errors", "kmsflow.audit.log", "kmsflow.kms.errors", "kmsflow.kms.public_key")

# (class, code, meaning); most specific first: the first matching class decides the code.
_BY_EXCEPTION: tuple[tuple[str, int, str], ...] = (
    (
        "IntegrityError",
        EXIT_TAMPERED,
        "envelope failed authentication (tampered, truncated, swapped) or its signature did not verify",
    ),
    ("RecordNotFoundError", EXIT_NOT_FOUND, "not found: SRC or its envelope record is missing"),
    ("SourceNotFoundError", EXIT_NOT_FOUND, "SRC does not exist"),
    ("DestinationExistsError", EXIT_EXISTS, "DST already exists (kmsflow never overwrites)"),
    ("InvalidDestinationError", EXIT_USAGE, "usage error: DST inside SRC or inside an envelope"),
    ("UnsupportedSignerError", EXIT_USAGE, "usage error: not a key kmsflow signs with"),
    (
        "SourceIncompleteError",
        EXIT_SOURCE_INCOMPLETE,
        "SRC holds entries that cannot be encrypted as files (see --skip-unsupported)",
    ),
    ("RecordInvalidError", EXIT_RECORD_INVALID, "record unreadable or of a newer format version"),
    ("PublicKeyError", EXIT_RECORD_INVALID, "public key file unreadable or invalid"),
    ("InvalidPathError", EXIT_RECORD_INVALID, "unusable relative path in the dataset or record"),
    ("EnvelopeIOError", EXIT_IO, "reading or writing storage failed (disk full, network, permission)"),
    ("EnvelopeError", EXIT_INTERNAL, "other envelope error"),
    ("AuditLogError", EXIT_IO, "the audit log cannot be read or written"),
    ("KmsPermissionError", EXIT_KMS_PERMISSION, "KMS: caller lacks the IAM permission"),
    ("KeyVersionUnavailableError", EXIT_KMS_KEY_UNAVAILABLE, "KMS: key version disabled or destroyed"),
    ("KmsNotFoundError", EXIT_KMS_NOT_FOUND, "KMS: key or key version does not exist"),
    ("KmsTransientError", EXIT_KMS_TRANSIENT, "KMS: unavailable after retries (try again later)"),
    ("KmsCredentialsError", EXIT_KMS_CREDENTIALS, "KMS: no credentials (ADC or KMS_EMULATOR_HOST)"),
    ("KmsError", EXIT_KMS_OTHER, "KMS: other error (invalid argument, corrupted response)"),
)

# What the commands report without an exception (their reports are printed either way).
_BY_OUTCOME: dict[int, str] = {
    EXIT_INCOMPLETE: "inventory/rewrap/clean: scan incomplete (findings block any proof)",
    EXIT_PARTIAL: "rewrap/reencrypt: some envelopes failed or conflicted; clean: some temps failed",
    EXIT_INTERRUPTED: "interrupted (no partial output kept)",
    EXIT_SIGTERM: "terminated by SIGTERM (no partial output kept)",
    EXIT_SIGHUP: "terminated by SIGHUP (no partial output kept)",
}


@cache
def exception_codes() -> tuple[ExitRow, ...]:
    """:data:`EXIT_CODES` with its classes imported: ``(class, code, meaning)``, most specific first."""
    modules = [vars(importlib.import_module(name)) for name in _MODULES]
    return tuple((next(m[cls] for m in modules if cls in m), code, text) for cls, code, text in _BY_EXCEPTION)


def __getattr__(name: str) -> tuple[ExitRow, ...]:
    if name == "EXIT_CODES":
        return exception_codes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an exception (``EXIT_INTERNAL`` when unclassified)."""
    for cls, code, _ in exception_codes():
        if isinstance(exc, cls):
            return code
    return EXIT_INTERNAL


def exit_code_table() -> list[str]:
    """The ``exit codes:`` lines of ``kmsflow --help``: one per code, ascending (no imports)."""
    rows = {EXIT_OK: "success", EXIT_USAGE: "usage error", EXIT_INTERNAL: "unexpected error"}
    for _, code, text in _BY_EXCEPTION:
        rows.setdefault(code, text)
    rows.update(_BY_OUTCOME)
    return ["exit codes:", *(f"  {code:>3}  {text}" for code, text in sorted(rows.items()))]
