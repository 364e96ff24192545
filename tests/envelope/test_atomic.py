"""All or nothing on local disks: an exception mid-stream or a full disk leaves no output and no
temp file, whether encrypting or decrypting, a file or a dataset."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kmsflow import envelope

from .conftest import write_random
from .test_gcs import FailAfter, InjectedError


def entries(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


# Files up to 4 MiB are written inline; larger ones through the write-behind thread
# (kmsflow.envelope.streams.WriteBehind): both paths must fail cleanly.
SIZES = pytest.mark.parametrize("mib", [3, 12], ids=["inline", "write-behind"])


@SIZES
@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_exception_mid_stream_leaves_nothing(kms: Any, key: str, tmp_path: Path, kind: str, mib: int) -> None:
    src = tmp_path / "src"
    if kind == "file":
        write_random(src, mib << 20)
    else:
        for i in range(3):
            write_random(src / f"d{i}" / "shard", (mib << 20) // 2, seed=i)
    fail_at = (mib << 20) * 2 // 3
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InjectedError):
        envelope.encrypt(kms, key, str(src), str(out / "enc"), progress=FailAfter(fail_at))
    assert entries(out) == []
    # parent directories created for the output are removed too
    with pytest.raises(InjectedError):
        envelope.encrypt(kms, key, str(src), str(out / "new" / "deeper" / "enc"), progress=FailAfter(fail_at))
    assert entries(out) == []

    envelope.encrypt(kms, key, str(src), str(out / "enc"))
    before = entries(out)
    with pytest.raises(InjectedError):
        envelope.decrypt(kms, str(out / "enc"), str(out / "plain"), progress=FailAfter(fail_at))
    assert entries(out) == before
    assert not [t for t in threading.enumerate() if t.name == "kmsflow-write-behind"]


def _with_file_size_limit(limit: int) -> list[str]:
    """Run the CLI in a Python that first caps file sizes: writes past ``limit`` fail with EFBIG,
    as on a full disk. (Set in the child itself, not via ``preexec_fn``: forking a process that
    runs gRPC threads and then executing Python code in the child is unsafe.)"""
    boot = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "from kmsflow.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", boot]


@SIZES
@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_full_disk_leaves_nothing(emulator: Any, key: str, tmp_path: Path, kind: str, mib: int) -> None:
    src = tmp_path / "src"
    if kind == "file":
        write_random(src, mib << 20)
    else:
        write_random(src / "a", 1 << 19)
        write_random(src / "b", mib << 20, seed=1)  # the second file hits the limit
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "KMS_EMULATOR_HOST": emulator.endpoint}
    kmsflow = _with_file_size_limit((mib << 20) * 2 // 3)
    run = subprocess.run(
        [*kmsflow, "encrypt", "--key", key, str(src), str(out / "enc")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 7, run.stderr
    assert run.stderr.startswith("kmsflow: error:") and run.stderr.count("\n") == 1
    assert str(out / "enc") in run.stderr and "File too large" in run.stderr, run.stderr
    assert entries(out) == []

    envelope.encrypt(emulator.client(), key, str(src), str(out / "enc"))
    before = entries(out)
    run = subprocess.run(
        [*kmsflow, "decrypt", str(out / "enc"), str(out / "plain")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 7, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert str(out / "plain") in run.stderr and "File too large" in run.stderr, run.stderr
    assert entries(out) == before
