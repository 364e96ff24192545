"""``Location.stat`` (one look at what is there, locally and on GCS) and ``concurrently`` (the
existence probes of a destination check, at once)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kmsflow.envelope.storage import PROBES_AT_ONCE, Location, concurrently, resolve


def test_local_stat_follows_links_like_isdir_and_isfile(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "f", tmp_path / "to-f")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    os.mkfifo(tmp_path / "fifo")
    f, to_f = Location(str(tmp_path / "f")).stat(), Location(str(tmp_path / "to-f")).stat()
    assert f is not None and not f.is_dir and f.size == 5 and f.generation is None
    assert to_f == f
    d = Location(str(tmp_path / "d")).stat()
    assert d is not None and d.is_dir
    for absent in ("missing", "dangling", "fifo"):  # neither a file nor a directory
        assert Location(str(tmp_path / absent)).stat() is None, absent


def test_gcs_stat_gives_the_generation_a_read_is_pinned_to(gcs_bucket: str) -> None:
    obj = resolve(f"gs://{gcs_bucket}/dir/obj")
    assert obj.fs is not None
    obj.fs.pipe(obj.path, b"first")
    found = obj.stat()
    assert found is not None and not found.is_dir and found.size == 5 and found.generation
    folder = resolve(f"gs://{gcs_bucket}/dir").stat()
    assert folder is not None and folder.is_dir
    assert resolve(f"gs://{gcs_bucket}/dir/none").stat() is None
    # what stat found is what a read given it reads: bytes written since fail the read
    obj.fs.pipe(obj.path, b"other")
    with pytest.raises(OSError), obj.open_sequential(found) as f:
        f.read()
    with obj.open_sequential() as f:
        assert f.read() == b"other"


def test_concurrently_runs_the_checks_at_once_and_answers_in_order() -> None:
    n = 5
    gate = threading.Barrier(n, timeout=10)  # one at a time, the first would wait out the timeout

    def check(i: int) -> bool:
        gate.wait()
        return i % 2 == 0

    assert concurrently([lambda i=i: check(i) for i in range(n)]) == [True, False, True, False, True]


def test_concurrently_bounds_its_threads_and_raises_the_first_failure_in_order() -> None:
    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()

    def probe(i: int) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == PROBES_AT_ONCE:
                release.set()
        if not release.wait(10):  # never all at once: fail on the count below, without waiting again
            release.set()
        with lock:
            running -= 1
        if i in (7, 3):
            raise PermissionError(f"probe {i}")
        return True

    with pytest.raises(PermissionError, match="probe 3"):
        concurrently([lambda i=i: probe(i) for i in range(3 * PROBES_AT_ONCE)])
    assert peak == PROBES_AT_ONCE
    assert concurrently([]) == [] and concurrently([lambda: False]) == [False]
