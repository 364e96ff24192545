"""The retry policy of every kmsflow KMS call: which errors are retried, how often, for how long.

Transient statuses (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried with jittered
exponential backoff (0.1 s doubling to 5 s) under a total deadline: the one a caller passes, else
the one :func:`retry_deadline` put in force, else 60 s. ``kmsflow.kms.crypto.default_retry`` spells
it as a ``google.api_core`` ``Retry`` for ``google-cloud-kms`` calls; :class:`Backoff` runs the same
schedule for the lean data path (``kmsflow.kms.dataplane``), whose point is not to import
``google.api_core.retry``: that package imports ``requests`` for a predicate kmsflow never uses,
which costs about as much start-up as gRPC and Tink together (docs/BENCHMARKS.md, CLI start-up).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from kmsflow.kms.errors import is_credentials_failure

INITIAL = 0.1
MAXIMUM = 5.0
MULTIPLIER = 2.0
DEFAULT_DEADLINE = 60.0
ATTEMPT_TIMEOUT = 60.0
"""gRPC deadline of one attempt at most: google-cloud-kms's default timeout for these methods."""
MIN_ATTEMPT_TIMEOUT = 1.0
"""gRPC deadline of one attempt at least, even when less of the retry deadline is left (as in
``google.api_core.timeout.TimeToDeadlineTimeout``): a last attempt must have a chance to answer."""

_DEADLINE: ContextVar[float] = ContextVar("kmsflow_kms_deadline", default=DEFAULT_DEADLINE)

_R = TypeVar("_R")


def current_deadline() -> float:
    """The retry deadline in force here: the innermost :func:`retry_deadline`, else 60 s."""
    return _DEADLINE.get()


@contextmanager
def retry_deadline(seconds: float) -> Iterator[None]:
    """Make ``seconds`` the retry deadline of every kmsflow KMS call made in this context.

    Why ambient rather than a parameter: resource, IAM and key-spec functions make their KMS calls
    several layers down, and the deadline belongs to whoever calls (an Airflow connection), not to
    each function. A ``ContextVar`` is per thread (and per asyncio task): a plain thread started
    inside the block does not inherit it, so kmsflow fans out over
    :class:`kmsflow.pools.ContextThreadPool`, which runs each task in a copy of the caller's context.
    """
    token = _DEADLINE.set(seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def is_transient(exc: BaseException) -> bool:
    """The retry predicate: a transient status, unless it is a credentials refresh failure.

    gRPC reports a failed token refresh as UNAVAILABLE; google-auth has already retried what it
    could, and retrying the call would only delay "no usable credentials" by the whole deadline.
    ``google.api_core.exceptions`` is imported here, on the first failure, not with the module.
    """
    from google.api_core import exceptions as gexc

    transient = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.ResourceExhausted)
    return isinstance(exc, transient) and not is_credentials_failure(exc)


@dataclass(frozen=True)
class Backoff:
    """The retry schedule above, for calls made without ``google.api_core.retry``.

    Semantics are ``google.api_core.retry.Retry``'s, so both paths fail alike: a non-transient
    error is raised as it is; when the next sleep would end past the deadline, a
    ``google.api_core.exceptions.RetryError`` carrying the last error is raised.
    """

    deadline: float

    @classmethod
    def default(cls, deadline: float | None = None) -> Backoff:
        """``deadline`` seconds, else the ambient one (:func:`current_deadline`)."""
        return cls(current_deadline() if deadline is None else deadline)

    def run(self, attempt: Callable[[float], _R]) -> _R:
        """Call ``attempt(timeout)`` until it returns, retrying transient errors.

        ``timeout`` is the gRPC deadline of that attempt: what is left of the retry deadline,
        within [``MIN_ATTEMPT_TIMEOUT``, ``ATTEMPT_TIMEOUT``], so no attempt outlives the deadline
        by more than a second.
        """
        end = time.monotonic() + self.deadline
        ceiling = min(INITIAL, MAXIMUM)
        while True:
            left = end - time.monotonic()
            try:
                return attempt(max(min(left, ATTEMPT_TIMEOUT), MIN_ATTEMPT_TIMEOUT))
            except Exception as exc:
                if not is_transient(exc):
                    raise
                sleep = random.uniform(0.0, ceiling)
                if time.monotonic() + sleep > end:
                    from google.api_core import exceptions as gexc

                    raise gexc.RetryError(f"Timeout of {self.deadline:0.1f}s exceeded", exc) from exc  # type: ignore[no-untyped-call]
                time.sleep(sleep)
                ceiling = min(ceiling * MULTIPLIER, MAXIMUM)
