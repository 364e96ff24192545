"""An unwritable destination is an ordinary storage failure: exit 7 and one actionable line naming
the path and the reason, never exit 1 ("a bug"), and nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kmsflow import envelope

from .conftest import write_random
from .test_cli import in_process


@pytest.fixture
def envelopes(kms: Any, key: str, tmp_path: Path) -> dict[str, Path]:
    write_random(tmp_path / "src" / "file", 3000)
    write_random(tmp_path / "src" / "ds" / "a" / "shard", 3000)
    envelope.encrypt(kms, key, str(tmp_path / "src" / "file"), str(tmp_path / "file.enc"))
    envelope.encrypt(kms, key, str(tmp_path / "src" / "ds"), str(tmp_path / "ds.enc"))
    return {"file": tmp_path / "file.enc", "dataset": tmp_path / "ds.enc"}


@pytest.mark.parametrize("kind", ["file", "dataset"])
@pytest.mark.parametrize("dst", ["blocker/out", "blocker/deeper/out"])
def test_a_parent_that_is_a_regular_file_is_exit_7(
    emulator: Any,
    key: str,
    envelopes: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    dst: str,
) -> None:
    monkeypatch.setenv("KMS_EMULATOR_HOST", emulator.endpoint)
    (tmp_path / "blocker").write_bytes(b"not a directory")
    src = tmp_path / "src" / ("file" if kind == "file" else "ds")
    for args in (
        ("decrypt", str(envelopes[kind]), str(tmp_path / dst)),
        ("encrypt", "--key", key, str(src), str(tmp_path / dst)),
    ):
        code, out, err = in_process(capsys, *args)
        assert (code, out) == (7, ""), err
        assert err.startswith(f"kmsflow: error: {tmp_path / dst}: cannot create ") and err.count("\n") == 1
        assert "Not a directory" in err and "writable directory" in err, err
    assert (tmp_path / "blocker").read_bytes() == b"not a directory"


_UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


@pytest.mark.skipif(bool(_UNPRIVILEGED) and shutil.which("setpriv") is None, reason="needs setpriv as root")
@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_a_read_only_directory_is_exit_7(
    emulator: Any, envelopes: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Root ignores directory permissions: the CLI runs without CAP_DAC_OVERRIDE then."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    env = {**os.environ, "KMS_EMULATOR_HOST": emulator.endpoint}
    for dst in (ro / "out", ro / "new" / "out"):
        run = subprocess.run(
            [*_UNPRIVILEGED, sys.executable, "-m", "kmsflow.cli", "decrypt", str(envelopes[kind]), str(dst)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert run.returncode == 7, run.stderr
        assert run.stderr.startswith(f"kmsflow: error: {dst}: cannot create ") and run.stderr.count("\n") == 1
        assert "Permission denied" in run.stderr, run.stderr
    assert list(ro.iterdir()) == []
