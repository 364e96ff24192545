"""Typed KMS errors with actionable messages, translated from ``google.api_core`` exceptions.

Callers (the envelope format, the CLI, Airflow operators) catch these rather than gRPC/HTTP
exceptions, so a disabled key version, an IAM denial or a corrupted response each get a clear,
distinct message and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.api_core import exceptions as gexc


class KmsError(Exception):
    """Base class: a Cloud KMS call did not give a usable answer."""


class KmsPermissionError(KmsError):
    """The caller lacks the IAM permission (or the resource does not exist for it)."""


class KmsNotFoundError(KmsError):
    """The key ring, key or version does not exist."""


class KeyVersionUnavailableError(KmsError):
    """The key version exists but is not ENABLED (disabled, scheduled for destruction, destroyed)."""


class KmsInvalidArgumentError(KmsError):
    """KMS rejected the request: bad ciphertext, wrong key or AAD, malformed name, too large."""


class KmsTransientError(KmsError):
    """UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED persisted past the retry deadline."""


class KmsIntegrityError(KmsError):
    """A CRC32C check failed: the request or response was corrupted in transit."""


class KmsAlreadyExistsError(KmsError):
    """Create found the resource already there; idempotent callers read it back instead."""


class KmsConflictError(KmsError):
    """ABORTED: a concurrent writer won (e.g. a stale IAM policy etag); retry the read-modify-write."""


class KmsGuardError(KmsError):
    """kmsflow refused an action that would break an invariant (e.g. disabling the primary version).

    Raised before any KMS mutation, so the key is exactly as it was.
    """


class ConfirmationError(KmsGuardError):
    """A destructive manual action (shred, erase) was not confirmed by typing the exact names asked for.

    Raised before any KMS call; the message says what to type.
    """


class ErasureRefusedError(KmsGuardError):
    """Erasure was asked for a key the spec does not mark with ``tenant:`` (or does not know).

    Destroying every version of a shared key would make other tenants' artifacts undecryptable,
    so kmsflow erases only keys the spec dedicates to one tenant.
    """


@dataclass(frozen=True)
class FieldConflict:
    """One immutable field whose live value differs from the wanted one."""

    field: str
    current: object
    wanted: object


class ImmutableFieldError(KmsError):
    """The live resource differs from the wanted one in a field KMS cannot change after creation.

    The only fix is a new resource (e.g. a new crypto key id) and re-wrapping onto it; kmsflow never
    deletes keys to "recreate" them, since that would make every artifact under them undecryptable.
    """

    def __init__(self, resource: str, conflicts: Sequence[FieldConflict]) -> None:
        if not conflicts:
            raise ValueError("ImmutableFieldError needs at least one conflict")
        self.resource = resource
        self.conflicts = tuple(conflicts)
        first = self.conflicts[0]
        self.field, self.current, self.wanted = first.field, first.current, first.wanted
        details = "; ".join(f"{c.field} is {c.current}, wanted {c.wanted}" for c in self.conflicts)
        super().__init__(
            f"{resource}: cannot change immutable field(s): {details}. "
            "Create a new key under another id instead (KMS cannot change these after creation)."
        )


_TRANSLATIONS: tuple[tuple[type[gexc.GoogleAPICallError], type[KmsError]], ...] = (
    (gexc.PermissionDenied, KmsPermissionError),
    (gexc.Unauthenticated, KmsPermissionError),
    (gexc.NotFound, KmsNotFoundError),
    (gexc.FailedPrecondition, KeyVersionUnavailableError),
    (gexc.InvalidArgument, KmsInvalidArgumentError),
    (gexc.ServiceUnavailable, KmsTransientError),
    (gexc.DeadlineExceeded, KmsTransientError),
    (gexc.ResourceExhausted, KmsTransientError),
    (gexc.AlreadyExists, KmsAlreadyExistsError),
    (gexc.Aborted, KmsConflictError),
)


def translate(exc: gexc.GoogleAPIError, action: str) -> KmsError:
    """The kmsflow error for a failed ``action`` (e.g. "decrypt with projects/.../cryptoKeys/k")."""
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        detail = getattr(cause, "message", None) or str(cause)
        return KmsTransientError(f"{action}: gave up retrying: {detail}")
    for source, target in _TRANSLATIONS:
        if isinstance(exc, source):
            return target(f"{action}: {message}")
    return KmsError(f"{action}: {message}")
