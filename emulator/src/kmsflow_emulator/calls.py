"""Per-method call counts, so tests can assert what a client costs (e.g. one ListCryptoKeys per key
ring per poll) on the server side, where no client-side shortcut can hide a call.

Every KMS, IAM, Locations and Operations call is counted when it arrives, before any injected fault:
a call that fails still reached the service (and would be billed by Cloud KMS).
"""

from __future__ import annotations

import threading
from collections import Counter


class CallCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, method: str) -> None:
        with self._lock:
            self._counts[method] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> dict[str, int]:
        """Zero every count; returns the counts as they were."""
        with self._lock:
            before = dict(sorted(self._counts.items()))
            self._counts.clear()
            return before
