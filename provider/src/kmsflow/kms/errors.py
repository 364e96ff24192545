"""Typed KMS errors with actionable messages, translated from ``google.api_core`` exceptions.

Callers (the envelope format, the CLI, Airflow operators) catch these rather than gRPC/HTTP
exceptions, so a disabled key version, an IAM denial or a corrupted response each get a clear,
distinct message and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a KMS error is translated: google.api_core.exceptions loads gRPC
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


class KmsCredentialsError(KmsError):
    """No usable Google credentials: none configured, or they could not be refreshed.

    Neither an IAM denial nor an outage: retrying cannot help, and the fix is on the caller's side
    (log in, point at a key file, or use the emulator), so the message says how, in one line.
    """


CREDENTIALS_HINT = (
    "set up Application Default Credentials (`gcloud auth application-default login`, "
    "GOOGLE_APPLICATION_CREDENTIALS=/path/key.json, or a workload identity), "
    "or KMS_EMULATOR_HOST=host:port for the kmsflow emulator"
)

# gRPC core's wording when a call's credentials plugin (google-auth's token refresh) raised: the
# refresh error itself never reaches the caller, only this status (UNAVAILABLE) and its text.
_PLUGIN_FAILED = "Getting metadata from plugin failed"


def credentials_error(detail: str) -> KmsCredentialsError:
    """A :class:`KmsCredentialsError` saying what failed (``detail``) and how to fix it."""
    return KmsCredentialsError(
        f"no usable Google credentials for Cloud KMS: {detail.rstrip('. ')}. Fix: {CREDENTIALS_HINT}"
    )


def is_credentials_failure(exc: BaseException) -> bool:
    """Whether a failed KMS call failed because its credentials could not be refreshed.

    Why by message: over gRPC, google-auth's ``RefreshError`` is turned into an UNAVAILABLE status
    that looks like an outage; without this, it would be retried for the whole deadline and then
    reported as "KMS unavailable".
    """
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.GoogleAPICallError) and _PLUGIN_FAILED in str(exc)


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


@cache
def _translations() -> tuple[tuple[type[gexc.GoogleAPICallError], type[KmsError]], ...]:
    """(google.api_core class, kmsflow class) pairs, most specific first."""
    from google.api_core import exceptions as gexc

    return (
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
    from google.api_core import exceptions as gexc

    message = getattr(exc, "message", None) or str(exc)
    if is_credentials_failure(exc):
        return credentials_error(f"{action}: {message}")
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        detail = getattr(cause, "message", None) or str(cause)
        return KmsTransientError(f"{action}: gave up retrying: {detail}")
    for source, target in _translations():
        if isinstance(exc, source):
            return target(f"{action}: {message}")
    return KmsError(f"{action}: {message}")
