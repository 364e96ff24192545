"""A killed or terminated ``kmsflow`` leaves nothing behind, and decrypted bytes are never exposed.

The CLI runs as a real subprocess paused mid-stream by a hook on its progress (so the signal
arrives while the output is half written, deterministically, whatever the machine's speed), under
umask 0 (so only explicit modes can keep the plaintext temps private). The test then checks the
temp as a concurrent reader would (name, modes, the live decrypt's ``flock``) and sends the signal.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kmsflow import envelope

from .conftest import listing, write_random

MIB = 1 << 20
PAUSE_AT = 6 * MIB  # past the write-behind threshold: a helper thread is writing when paused

_PAUSED_CLI = """
import os, signal, sys, time
from kmsflow.envelope import progress, streams
os.umask(0)
# Started as from a terminal: under nohup (a CI runner may start the suite so) SIGHUP is inherited
# ignored, and kmsflow rightly keeps an ignored signal ignored.
for sig in (signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_DFL)
seen = 0
def pause_after(n):
    global seen
    seen += n
    if seen >= int(os.environ["KMSFLOW_TEST_PAUSE_AT"]):
        open(os.environ["KMSFLOW_TEST_PAUSED"], "x").close()
        time.sleep(600)  # the test signals the process while it sleeps here, mid-stream
if os.environ["KMSFLOW_TEST_PAUSE_IN"] == "progress":
    progress.NoProgress.advance = lambda self, n: pause_after(n)
else:  # inside the Python callbacks of Tink's C++ streams: decrypt's reads, encrypt's writes
    read, write = streams.ChecksumReader.read, streams.WriteBehind.write
    def paused_read(self, size=-1):
        data = read(self, size)
        pause_after(len(data))
        return data
    def paused_write(self, b):
        n = write(self, b)
        pause_after(n)
        return n
    streams.ChecksumReader.read = paused_read
    streams.WriteBehind.write = paused_write
from kmsflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_paused(endpoint: str, marker: Path, pause_in: str, *args: str) -> subprocess.Popen[str]:
    """The CLI, paused for good once ``PAUSE_AT`` bytes went through ``pause_in``; ``marker`` is
    created then."""
    env = {
        **os.environ,
        "KMS_EMULATOR_HOST": endpoint,
        "KMSFLOW_TEST_PAUSE_AT": str(PAUSE_AT),
        "KMSFLOW_TEST_PAUSE_IN": pause_in,
        "KMSFLOW_TEST_PAUSED": str(marker),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def paused_temp(proc: subprocess.Popen[str], marker: Path, parent: Path, dst_name: str, suffix: str) -> Path:
    """Wait (at most 60 s) for the pause, then for the temp ``.<dst_name>.kmsflow-<hex><suffix>``
    to hold bytes (the write-behind thread may still be writing them); return it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"kmsflow exited early: {proc.returncode} {proc.communicate(timeout=10)}")
        for temp in parent.glob(f".{dst_name}.kmsflow-*{suffix}") if marker.exists() else []:
            files = [temp] if temp.is_file() else [f for f in temp.rglob("*") if f.is_file()]
            if any(f.stat().st_size > 0 for f in files):
                return temp
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=10)
    pytest.fail(f"kmsflow did not pause with a {suffix} temp holding bytes for {dst_name}")


def finish(proc: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=180)  # a loaded machine: slow, not hung
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("kmsflow did not exit after the signal")
    return proc.returncode, out, err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_locked(path: Path) -> None:
    """Another process (this test) cannot take the temp's ``flock``: the live decrypt holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def make_source(root: Path, kind: str) -> Path:
    src = root / "src"
    if kind == "file":
        write_random(src, 12 * MIB)
    else:
        write_random(src / "a" / "shard-0", MIB)
        write_random(src / "b" / "c" / "shard-1", 12 * MIB, seed=1)
    return src


@pytest.mark.parametrize(
    ("kind", "signum", "pause_in"),
    [
        ("file", signal.SIGTERM, "progress"),
        ("file", signal.SIGTERM, "tink"),
        ("dataset", signal.SIGTERM, "progress"),
        ("dataset", signal.SIGHUP, "tink"),
    ],
    ids=["file-SIGTERM", "file-SIGTERM-in-tink", "dataset-SIGTERM", "dataset-SIGHUP-in-tink"],
)
def test_terminated_decrypt_removes_its_private_locked_plaintext_temp(
    emulator: Any, key: str, tmp_path: Path, kind: str, signum: int, pause_in: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    envelope.encrypt(emulator.client(), key, str(make_source(tmp_path, kind)), str(out / "enc"))
    before = sorted(p.name for p in out.iterdir())

    marker = tmp_path / "paused"
    proc = start_paused(emulator.endpoint, marker, pause_in, "decrypt", str(out / "enc"), str(out / "plain"))
    temp = paused_temp(proc, marker, out, "plain", ".plain")
    assert_locked(temp)
    if kind == "file":
        assert temp.is_file() and mode(temp) == 0o600
    else:
        assert temp.is_dir() and mode(temp) == 0o700
        inner = [temp / p for p in listing(temp)]
        assert inner and all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in inner), inner

    code, stdout, stderr = finish(proc, signum)
    name = signal.Signals(signum).name
    assert code == 128 + signum, stderr
    assert stderr == f"kmsflow: error: terminated by {name}; no partial output was kept\n"
    assert stdout == ""
    assert sorted(p.name for p in out.iterdir()) == before  # no destination, no temp


@pytest.mark.parametrize(("kind", "pause_in"), [("file", "tink"), ("dataset", "progress")])
def test_terminated_encrypt_leaves_nothing_at_dst(
    emulator: Any, key: str, tmp_path: Path, kind: str, pause_in: str
) -> None:
    src = make_source(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "paused"
    args = ("encrypt", "--key", key, str(src), str(out / "enc"))
    proc = start_paused(emulator.endpoint, marker, pause_in, *args)
    paused_temp(proc, marker, out, "enc", ".part" if kind == "file" else ".tmp")
    code, _, stderr = finish(proc, signal.SIGTERM)
    assert (code, stderr) == (143, "kmsflow: error: terminated by SIGTERM; no partial output was kept\n")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_decrypted_output_is_owner_only_whatever_the_umask(
    kms: Any, key: str, tmp_path: Path, kind: str
) -> None:
    envelope.encrypt(kms, key, str(make_source(tmp_path, kind)), str(tmp_path / "enc"))
    old = os.umask(0)
    try:
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "new" / "plain"))
    finally:
        os.umask(old)
    plain = tmp_path / "new" / "plain"
    paths = [plain] + [plain / p for p in listing(plain)]
    assert all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in paths), [(p, oct(mode(p))) for p in paths]
