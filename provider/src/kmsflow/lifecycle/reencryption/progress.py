"""How far a re-encrypt run is, in plaintext bytes: to a ``Progress`` (the CLI's bar) and, every
``every_s`` seconds, as one INFO line.

Why bytes, not envelopes: one envelope may be a 50 GB model, and a count of envelopes would sit at
"0 of 1" for the whole run. Why from the worker threads: the run's own thread only hears of an
envelope when it is finished, which for a big one is much too rarely for a progress line. Every
plaintext byte is counted twice, since re-encrypt reads all of it twice: once to re-encrypt it and
once more to verify the staged copy before it replaces the old one.

A run's total is fixed when it starts (from the records), and each envelope advances the meter by
exactly its share, whatever happens to it: a failed envelope is counted as done with when it
fails, so the bar ends at its total and the rate counts only what was read. A run whose sizes
are not all known (envelopes named one by one, as an Airflow batch does: reading every record
first would cost a GET each on GCS) has no total: it logs what it has read, and has no bar.
"""

from __future__ import annotations

import logging
import threading
import time

from kmsflow.envelope.progress import Progress

READS_PER_BYTE = 2
"""Re-encrypt streams each plaintext byte once to re-encrypt it and once to verify it."""

_MIB = 1 << 20


class ByteMeter:
    """A run's meter; :meth:`for_envelope` gives each envelope its own share. Thread-safe: the
    ``progress`` receives calls from worker threads, one at a time."""

    def __init__(
        self,
        progress: Progress | None,
        *,
        plaintext_bytes: int | None,
        envelopes: int,
        log: logging.Logger,
        every_s: float,
    ) -> None:
        self._progress = progress
        self._log = log
        self._every_s = every_s
        self._lock = threading.Lock()
        self._total = None if plaintext_bytes is None else READS_PER_BYTE * plaintext_bytes
        self._envelopes = envelopes
        self._done_bytes = 0
        self._read_bytes = 0
        self._done_envelopes = 0
        self._started = time.monotonic()
        self._next_line = self._started + every_s
        if progress is not None and self._total is not None:
            progress.start(self._total, "reencrypt + verify")
        else:
            self._progress = None

    def for_envelope(self, plaintext_bytes: int | None) -> EnvelopeMeter:
        """The share of one envelope of ``plaintext_bytes`` as counted in the run's total (None:
        not known, so not capped)."""
        return EnvelopeMeter(self, None if plaintext_bytes is None else READS_PER_BYTE * plaintext_bytes)

    def _advance(self, n: int, *, read: bool, envelope_done: bool) -> None:
        with self._lock:
            self._done_bytes += n
            if read:
                self._read_bytes += n
            if envelope_done:
                self._done_envelopes += 1
            if self._progress is not None and n:
                self._progress.advance(n)
            now = time.monotonic()
            if now >= self._next_line and self._done_envelopes < self._envelopes:
                self._next_line = now + self._every_s
                self._log_line(now)

    def _log_line(self, now: float) -> None:
        elapsed = now - self._started
        of_total = "" if self._total is None else f" of {self._total / _MIB:.1f}"
        self._log.info(
            "reencrypt: %d of %d envelope(s) done, %.1f%s MiB read (re-encrypt and verify), %.1f MiB/s",
            self._done_envelopes,
            self._envelopes,
            self._done_bytes / _MIB,
            of_total,
            self._read_bytes / _MIB / elapsed if elapsed > 0 else 0.0,
        )


class EnvelopeMeter:
    """One envelope's share of a :class:`ByteMeter`: never advances it by more than the share, and
    :meth:`finish` adds whatever its streams did not read (a failure, or a shorter file)."""

    def __init__(self, run: ByteMeter, share: int | None) -> None:
        self._run = run
        self._left = share

    def advance(self, n: int) -> None:
        """``n`` plaintext bytes went through one of the envelope's streams."""
        if self._left is not None:
            n = min(n, self._left)
            self._left -= n
        self._run._advance(n, read=True, envelope_done=False)

    def finish(self) -> None:
        """The envelope is done with, however it ended."""
        left, self._left = self._left or 0, 0
        self._run._advance(left, read=False, envelope_done=True)
