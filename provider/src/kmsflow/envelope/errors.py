"""Typed envelope errors, each with a one-line, actionable message.

Messages name paths, envelope ids and key names only: never plaintext, never key material. The CLI
maps each class to its own exit code (see ``kmsflow.cli``), so scripts can tell a tampered artifact
from a missing one or from a KMS permission problem. KMS failures keep their own types from
``kmsflow.kms.errors`` (they are not envelope errors); callers catch both families.
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """Base class for everything the envelope layer rejects."""


class SourceNotFoundError(EnvelopeError):
    """The path given to encrypt does not exist (or is neither a file nor a directory)."""


class RecordNotFoundError(EnvelopeError):
    """No envelope record beside the path: it is not a kmsflow envelope, or the record was removed."""


class RecordInvalidError(EnvelopeError):
    """The envelope record is not valid JSON or does not follow docs/FORMAT.md."""


class UnsupportedFormatError(RecordInvalidError):
    """The record's format version is newer than this kmsflow understands."""


class IntegrityError(EnvelopeError):
    """The envelope failed authentication: some byte of data or record is not what was written."""


class TamperedError(IntegrityError):
    """A file or the record was modified, truncated, extended, swapped, renamed, removed or added."""


class SignatureError(IntegrityError):
    """The signature does not verify, is by another key, or is of another envelope or other bytes."""


class SignatureNotFoundError(RecordNotFoundError):
    """The envelope has no signature record."""


class UnsupportedSignerError(EnvelopeError):
    """The key is not an ``ASYMMETRIC_SIGN`` key of an algorithm kmsflow signs with."""


class SourceIncompleteError(EnvelopeError):
    """The source directory holds entries that cannot go into an envelope as files (a link to a
    directory, a special file, a broken link, a directory that cannot be listed); encrypting
    without them would silently drop data."""


class InvalidDestinationError(EnvelopeError):
    """The output path lies inside the source or inside an existing envelope, where writing would
    break that envelope or encrypt the output into itself."""


class DestinationExistsError(EnvelopeError):
    """The output path already exists; kmsflow never overwrites an existing artifact."""


class InvalidPathError(EnvelopeError):
    """A relative path in a dataset is unusable (absolute, '..', reserved name, or not UTF-8)."""


class DatasetTooLargeError(InvalidPathError):
    """The dataset has more files, or longer paths, than one envelope's record may list."""


class EnvelopeIOError(EnvelopeError):
    """Reading the source or writing the destination failed (disk full, permission, network)."""


class StagingAbortedError(EnvelopeError):
    """The output was aborted from outside (an Airflow task's ``on_kill``) while it was being
    written: its temps are gone and nothing may be published; the operation stops here."""


def os_reason(exc: OSError) -> str:
    """What an I/O error says, for a one-line message (``"No space left on device"``); errors that
    carry no ``strerror`` (gcsfs' ``FileExistsError`` for a 412, ...) by their class name."""
    return exc.strerror or exc.__class__.__name__
