"""Typed KMS errors with actionable messages, translated from ``google.api_core`` exceptions.

Callers (the envelope format, the CLI, Airflow operators) catch these rather than gRPC/HTTP
exceptions, so a disabled key version, an IAM denial or a corrupted response each get a clear,
distinct message and exit code.
"""

from __future__ import annotations

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


_TRANSLATIONS: tuple[tuple[type[gexc.GoogleAPICallError], type[KmsError]], ...] = (
    (gexc.PermissionDenied, KmsPermissionError),
    (gexc.Unauthenticated, KmsPermissionError),
    (gexc.NotFound, KmsNotFoundError),
    (gexc.FailedPrecondition, KeyVersionUnavailableError),
    (gexc.InvalidArgument, KmsInvalidArgumentError),
    (gexc.ServiceUnavailable, KmsTransientError),
    (gexc.DeadlineExceeded, KmsTransientError),
    (gexc.ResourceExhausted, KmsTransientError),
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
