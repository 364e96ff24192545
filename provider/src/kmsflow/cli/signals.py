"""SIGTERM and SIGHUP end a command like Ctrl-C: the partial output is removed, one line is printed,
and the exit code is 128 + the signal's number (143, 129; see :mod:`kmsflow.cli.exits`)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kmsflow.cli.exits import EXIT_SIGNAL_BASE

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Handled like Ctrl-C: what Airflow (task timeout, run marked failed), ``timeout``, systemd and
Kubernetes send, and what a closed terminal sends. Their default action kills the process without
unwinding, which would leave a decrypt's partial plaintext behind."""


class Terminated(BaseException):
    """Raised in the main thread by the handler of a :data:`TERMINATING_SIGNALS` signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it and
    every staging's ``except BaseException`` abort runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def terminating_signals_raise(received: list[int]) -> Iterator[None]:
    """While the block runs, SIGTERM/SIGHUP raise :class:`Terminated` and are appended to
    ``received`` (raised once: a repeated signal must not interrupt the cleanup it started;
    SIGKILL still ends the process). A signal ignored on entry (``nohup``) stays ignored; the
    previous handlers are restored afterwards. Only the main thread can set handlers; elsewhere
    the block runs with the process's handlers as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Terminated(signum)

    previous = {
        sig: signal.signal(sig, handler)
        for sig in TERMINATING_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def terminated(signum: int) -> int:
    """Report a run ended by a :data:`TERMINATING_SIGNALS` signal; its exit code (128 + signal)."""
    name = signal.Signals(signum).name
    sys.stderr.write(f"kmsflow: error: terminated by {name}; no partial output was kept\n")
    return EXIT_SIGNAL_BASE + signum
