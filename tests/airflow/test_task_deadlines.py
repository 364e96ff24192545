"""The connection's ``deadline`` reaches the KMS calls lifecycle tasks fan out over threads.

Rewrap and re-encrypt make their KMS calls on pool threads; a ``ContextVar`` deadline does not
cross into a plain thread, so without ``kmsflow.pools.ContextThreadPool`` these calls would retry
an unavailable KMS for the 60 s default while the task (and its Airflow slot) waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import make_file, make_key

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks.rotate_rewrap import reencrypt_batch, rewrap_batch
from kmsflow.kms import backoff, resources
from kmsflow.lifecycle import verify_unwraps

BATCH_TASKS = {"rewrap": rewrap_batch, "reencrypt": reencrypt_batch}


def _stale_envelopes(emulator: Any, tmp_path: Path, count: int) -> list[str]:
    """``count`` file envelopes wrapped by version 1 of a key whose primary is now version 2."""
    client = emulator.client()
    key = make_key(client, "deadline")
    urls = [
        make_file(client, key, tmp_path / "src", str(tmp_path / "root" / f"f{i}.enc"), 100, seed=i).dst
        for i in range(count)
    ]
    resources.rotate(client, key)
    return urls


@pytest.mark.parametrize("mode", sorted(BATCH_TASKS))
def test_batch_task_gives_up_at_the_connection_deadline(
    fresh_emulator: Any, tmp_path: Path, set_conn: Callable[..., str], mode: str
) -> None:
    urls = _stale_envelopes(fresh_emulator, tmp_path, 6)
    set_conn(endpoint=fresh_emulator.endpoint, deadline=1)
    hook = KmsHook()
    fresh_emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Decrypt"])
    started = time.monotonic()

    report = BATCH_TASKS[mode](
        hook, urls, dry_run=False, max_workers=3, audit=None, run="test", reason="deadline"
    )

    elapsed = time.monotonic() - started
    fresh_emulator.admin.set_faults()
    assert elapsed < 20, f"{mode} waited {elapsed:.0f} s: the 1 s deadline did not reach its threads"
    failures = report["failures"]
    assert len(failures) == 6 and report.get("rewrapped", 0) == 0
    assert all("gave up retrying" in f["reason"] for f in failures), failures
    hook.close()


def test_library_fan_out_keeps_the_callers_deadline(fresh_emulator: Any, tmp_path: Path) -> None:
    urls = _stale_envelopes(fresh_emulator, tmp_path, 4)
    client = fresh_emulator.client()
    fresh_emulator.admin.set_faults(rate=1.0, codes=["UNAVAILABLE"], methods=["Decrypt"])
    started = time.monotonic()
    with backoff.retry_deadline(0.5):
        issues = verify_unwraps(client, urls, max_workers=4)
    elapsed = time.monotonic() - started
    fresh_emulator.admin.set_faults()
    assert elapsed < 15
    assert len(issues) == 4 and all("gave up retrying" in i.reason for i in issues), issues
