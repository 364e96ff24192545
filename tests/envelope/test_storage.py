"""``Location.stat`` (one look at what is there, locally and on GCS) and ``concurrently`` (the
existence probes of a destination check, at once)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from kmsflow.envelope.storage import (
    PROBES_AT_ONCE,
    UPLOAD_BLOCK,
    Location,
    concurrently,
    fs_open_write,
    resolve,
)


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


def test_a_small_gcs_object_is_created_by_one_request(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcsfs's writable file starts a resumable upload and then sends the bytes (two round trips,
    whatever the size): an object that ends within the first block is one request instead."""
    import gcsfs.core

    sent: list[str] = []
    real = gcsfs.core.GCSFileSystem._call

    async def counted(self: object, method: str, path: str, *args: object, **kwargs: object) -> object:
        sent.append(f"{method} {path}")
        return await real(self, method, path, *args, **kwargs)

    monkeypatch.setattr(gcsfs.core.GCSFileSystem, "_call", counted)
    fs = resolve(f"gs://{gcs_bucket}/x").fs
    with fs_open_write(fs, f"{gcs_bucket}/small/record.json") as f:
        for piece in (b"{", b'"a": 1', b"}"):
            f.write(piece)
    assert len(sent) == 1 and sent[0].startswith("POST"), sent
    assert fs.cat(f"{gcs_bucket}/small/record.json") == b'{"a": 1}'


def test_a_large_gcs_object_streams_through_the_resumable_upload(gcs_bucket: str) -> None:
    fs = resolve(f"gs://{gcs_bucket}/x").fs
    data = os.urandom(UPLOAD_BLOCK + UPLOAD_BLOCK // 2 + 7)
    with fs_open_write(fs, f"{gcs_bucket}/big") as f:
        for start in range(0, len(data), 3 << 20):
            f.write(memoryview(data)[start : start + (3 << 20)])
    assert fs.cat(f"{gcs_bucket}/big") == data


@pytest.mark.parametrize("size", [10, UPLOAD_BLOCK + 1])
def test_gcs_create_only_upload_never_replaces_and_discard_creates_nothing(
    gcs_bucket: str, size: int
) -> None:
    from kmsflow.envelope.staging import _discard

    fs = resolve(f"gs://{gcs_bucket}/x").fs
    fs.pipe(f"{gcs_bucket}/taken", b"first")
    upload = fs_open_write(fs, f"{gcs_bucket}/taken")
    with pytest.raises(FileExistsError):  # past one block, as soon as the upload starts
        upload.write(b"x" * size)
        upload.close()
    _discard(upload)
    assert fs.cat(f"{gcs_bucket}/taken") == b"first"
    # an upload abandoned (an error while writing, an abort) is discarded: no object, even later
    upload = fs_open_write(fs, f"{gcs_bucket}/abandoned")
    upload.write(b"y" * size)
    _discard(upload)
    upload.close()
    del upload
    fs.invalidate_cache()
    assert not fs.exists(f"{gcs_bucket}/abandoned")


def test_two_creators_of_one_gcs_name_one_wins(gcs_bucket: str) -> None:
    fs = resolve(f"gs://{gcs_bucket}/x").fs
    results: list[str] = []

    def create(tag: bytes) -> None:
        try:
            with fs_open_write(fs, f"{gcs_bucket}/contended") as f:
                f.write(tag * 100)
            results.append("created")
        except FileExistsError:
            results.append("refused")

    threads = [threading.Thread(target=create, args=(bytes([65 + i]),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["created", "refused", "refused", "refused"]
    body = fs.cat(f"{gcs_bucket}/contended")
    assert len(body) == 100 and len(set(body)) == 1


def test_a_create_whose_answer_was_lost_is_recognised_as_ours(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gcsfs retries an upload that timed out or got a 5xx; when the server had created the object
    before the answer was lost, the retry's ``ifGenerationMatch=0`` is refused by our own object.
    Here the first attempt lands and its answer is dropped, and the real retry gets the emulator's
    412: the close succeeds, since the live object is the bytes sent. Another writer's object, even
    of the same size, is still refused."""
    import gcsfs.core

    real = gcsfs.core.simple_upload

    async def answer_lost_then_retried(*args: object, **kwargs: object) -> object:
        await real(*args, **kwargs)  # lands; its answer never arrives
        return await real(*args, **kwargs)  # gcsfs's retry

    monkeypatch.setattr(gcsfs.core, "simple_upload", answer_lost_then_retried)
    fs = resolve(f"gs://{gcs_bucket}/x").fs
    body = os.urandom(3000)
    with fs_open_write(fs, f"{gcs_bucket}/ours") as f:
        f.write(body)
    assert fs.cat(f"{gcs_bucket}/ours") == body

    monkeypatch.setattr(gcsfs.core, "simple_upload", real)
    fs.pipe(f"{gcs_bucket}/theirs", os.urandom(3000))
    upload = fs_open_write(fs, f"{gcs_bucket}/theirs")
    upload.write(body)
    with pytest.raises(FileExistsError):
        upload.close()
