"""The retry deadline in force: explicit argument first, then the ambient one, then 60 s."""

from __future__ import annotations

import threading

from kmsflow.kms.backoff import retry_deadline
from kmsflow.kms.crypto import default_retry


def test_ambient_deadline_applies_in_its_block_only_and_not_to_other_threads() -> None:
    assert default_retry().timeout == 60.0
    seen_elsewhere: list[float] = []
    with retry_deadline(2.5):
        assert default_retry().timeout == 2.5
        assert default_retry(7.0).timeout == 7.0  # an explicit deadline wins
        with retry_deadline(1.0):
            assert default_retry().timeout == 1.0
        assert default_retry().timeout == 2.5
        worker = threading.Thread(target=lambda: seen_elsewhere.append(default_retry().timeout))
        worker.start()
        worker.join()
    assert default_retry().timeout == 60.0
    assert seen_elsewhere == [60.0]  # documented: threads started inside do not inherit it
