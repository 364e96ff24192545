"""Thread pools whose tasks run in a copy of the submitting thread's context.

Why: the KMS retry deadline a caller puts in force (:func:`kmsflow.kms.crypto.retry_deadline`, e.g.
an Airflow connection's ``deadline`` through ``KmsHook.deadline_scope``) lives in a ``ContextVar``,
and a plain :class:`~concurrent.futures.ThreadPoolExecutor` runs its tasks in the worker thread's
own, empty context. Rewrap, re-encrypt, inventory and erasure fan their KMS calls out over
threads, so without this their calls would silently fall back to the 60 s default deadline.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


class ContextThreadPool(ThreadPoolExecutor):
    """A :class:`ThreadPoolExecutor` that runs each task in a copy of the submitter's context.

    One copy per task (a ``Context`` cannot be entered by two threads at once); ``map`` goes
    through :meth:`submit`, so it is covered too.
    """

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
