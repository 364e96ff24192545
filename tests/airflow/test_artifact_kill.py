"""A killed artifact task leaves no partial output.

Airflow 3's task runner answers SIGTERM by calling ``task.on_kill()`` from its signal handler in
the main thread and then returning (``airflow.sdk.execution_time.task_runner``, ``_on_term``); the
supervisor sends SIGKILL a few seconds later. The first test reproduces exactly that handler; the
second calls ``on_kill`` from another thread, as other runners or a test harness may.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowTaskTerminated
from test_artifact_operators import roles, run  # noqa: F401  (roles is a fixture)

from kmsflow.airflow.operators import DecryptArtifactOperator, EncryptArtifactOperator
from kmsflow.airflow.operators.artifacts import LogProgress

MIB = 1 << 20


def make_source(tmp_path: Path, kind: str) -> Path:
    src = tmp_path / "src"
    if kind == "file":
        src.write_bytes(os.urandom(12 * MIB))
    else:
        for name in ("a", "b"):
            (src / name).mkdir(parents=True)
            (src / name / "shard").write_bytes(os.urandom(6 * MIB))
    return src


@pytest.fixture
def sdk_sigterm_handler() -> Iterator[list[Any]]:
    """Installs the task runner's SIGTERM handler for the operator put in the yielded list."""
    task: list[Any] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: task[0].on_kill())
    try:
        yield task
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("kind", ["file", "dataset"])
def test_sigterm_during_decrypt_removes_the_partial_plaintext(
    roles: dict[str, str],  # noqa: F811
    key: str,
    tmp_path: Path,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    sdk_sigterm_handler: list[Any],
) -> None:
    enc = tmp_path / "enc"
    src = str(make_source(tmp_path, kind))
    run(
        EncryptArtifactOperator(
            task_id="e", key_name=key, src=src, dst=str(enc), kmsflow_conn_id=roles["producer"]
        )
    )
    out = tmp_path / "out"
    dec = DecryptArtifactOperator(
        task_id="d", src=str(enc), dst=str(out / "plain"), kmsflow_conn_id=roles["consumer"]
    )
    sdk_sigterm_handler.append(dec)
    seen = [0]

    def advance(self: LogProgress, n: int) -> None:
        seen[0] += n
        if seen[0] >= 3 * MIB:
            assert list(out.glob(".plain.kmsflow-*.plain")), "the plaintext temp exists while writing"
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
            time.sleep(30)  # the handler interrupts this sleep

    monkeypatch.setattr(LogProgress, "advance", advance)
    with pytest.raises(AirflowTaskTerminated, match="partial output was removed"):
        run(dec)
    assert not out.exists()  # no temp, no destination, not even the parent it created
    assert dec.on_kill() is None  # nothing live any more: a no-op


@pytest.mark.parametrize(("op", "kind"), [("decrypt", "dataset"), ("decrypt", "file"), ("encrypt", "file")])
def test_on_kill_from_another_thread_removes_the_output_and_stops_the_task(
    roles: dict[str, str],  # noqa: F811
    key: str,
    tmp_path: Path,
    op: str,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = str(make_source(tmp_path, kind))
    out = tmp_path / "out"
    if op == "encrypt":
        task: Any = EncryptArtifactOperator(
            task_id="e", key_name=key, src=src, dst=str(out / "enc"), kmsflow_conn_id=roles["producer"]
        )
    else:
        enc = str(tmp_path / "enc")
        run(
            EncryptArtifactOperator(
                task_id="e", key_name=key, src=src, dst=enc, kmsflow_conn_id=roles["producer"]
            )
        )
        task = DecryptArtifactOperator(
            task_id="d", src=enc, dst=str(out / "plain"), kmsflow_conn_id=roles["consumer"]
        )
    writing, killed = threading.Event(), threading.Event()

    def advance(self: LogProgress, n: int) -> None:
        if not writing.is_set():
            writing.set()
            assert killed.wait(30)

    def kill() -> None:
        assert writing.wait(30)
        task.on_kill()
        assert not out.exists()  # removed at once, while execute is still running
        killed.set()

    monkeypatch.setattr(LogProgress, "advance", advance)
    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(AirflowTaskTerminated, match="aborted"):
            run(task)
    finally:
        killer.join(30)
    assert killed.is_set() and not out.exists()
