"""Thread pools whose tasks run in a copy of the submitting thread's context, and work split into
chunks for them.

Why: the KMS retry deadline a caller puts in force (:func:`kmsflow.kms.backoff.retry_deadline`, e.g.
an Airflow connection's ``deadline`` through ``KmsHook.deadline_scope``) lives in a ``ContextVar``,
and a plain :class:`~concurrent.futures.ThreadPoolExecutor` runs its tasks in the worker thread's
own, empty context. Rewrap, re-encrypt, inventory and erasure fan their KMS calls out over
threads, so without this their calls would silently fall back to the 60 s default deadline.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
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


def chunks(items: Sequence[_T], workers: int, most: int) -> list[list[_T]]:
    """Split ``items`` in order into chunks of at most ``most``, at least one per worker while there
    are items enough, sizes differing by at most one (no worker idles while another has two).

    Why chunks: a pool task per item costs a future, a lock and a thread hand-off each, which
    for small local records is as much as the work; and running the same code over a chunk keeps
    it warm in the CPU caches. Per-item results stay per item: the task loops over its chunk.
    """
    count = min(len(items), max(workers, -(-len(items) // most)))
    if not count:
        return []
    size, larger = divmod(len(items), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (i < larger)
        out.append(list(items[start:end]))
        start = end
    return out
