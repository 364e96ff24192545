"""A throw-away local Airflow (``airflow standalone``: scheduler, DAG processor, triggerer, API server)
for the demo: real scheduling, real task processes, a SQLite metadata DB under the demo directory.

By default only manual triggers run (``[scheduler] use_job_schedule = False``), so the @daily kmsflow
DAGs run when the caller says so; ``env`` may turn the scheduler's own runs on (timetables and asset
events: the demo's rotation event). DAGs are unpaused at creation. Runs are triggered and watched
through the ``airflow`` CLI, exactly as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kmsflow_connection(endpoint: str, principal: str, **extra: str) -> str:
    """An ``AIRFLOW_CONN_*`` value for a kmsflow connection to the emulator as ``principal``."""
    return json.dumps(
        {"conn_type": "kmsflow", "extra": {"endpoint": endpoint, "principal": principal, **extra}}
    )


class LocalAirflow:
    def __init__(self, home: Path, dags_folder: Path, env: dict[str, str]) -> None:
        port = free_port()
        self.home = home
        self.env = {
            **os.environ,
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            **env,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        self._process: subprocess.Popen[bytes] | None = None

    def airflow(self, *args: str) -> str:
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def start(self, dag_ids: list[str], timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        log = open(self.home / "standalone.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "standalone"],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited; see {self.home / 'standalone.log'}")
            listed = self._json("dags", "list", "-o", "json")
            if listed is not None and {d["dag_id"] for d in listed} >= set(dag_ids):
                return
            time.sleep(3)
        raise TimeoutError(f"DAGs {dag_ids} did not appear in {timeout:.0f}s")

    def _json(self, *args: str) -> Any:
        """The JSON an ``airflow ... -o json`` command prints (its stdout may carry warnings)."""
        try:
            out = self.airflow(*args)
        except RuntimeError:
            return None
        for line in out.splitlines():
            if line.startswith("["):
                return json.loads(line)
        return None

    def run_dag(
        self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 300
    ) -> tuple[str, str]:
        """Trigger ``dag_id`` with ``conf``, wait for the run to finish; returns (state, run_id)."""
        out = self.airflow("dags", "trigger", dag_id, "-c", json.dumps(conf or {}), "-o", "json")
        run_id = next(json.loads(line) for line in out.splitlines() if line.startswith("["))[0]["dag_run_id"]
        return self.wait_run(dag_id, str(run_id), timeout), str(run_id)

    def run_ids(self, dag_id: str) -> set[str]:
        return {str(r["run_id"]) for r in self._json("dags", "list-runs", dag_id, "-o", "json") or []}

    def next_run(self, dag_id: str, known: set[str], prefix: str, timeout: float = 300) -> tuple[str, str]:
        """Wait for a run of ``dag_id`` not in ``known`` whose id starts with ``prefix`` (its run type,
        e.g. ``asset_triggered__``: started by the scheduler, not by us), then for its end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(r for r in self.run_ids(dag_id) - known if r.startswith(prefix))
            if new:
                return self.wait_run(dag_id, new[0], deadline - time.monotonic()), new[0]
            time.sleep(2)
        raise TimeoutError(f"no {prefix}* run of {dag_id} started in {timeout:.0f}s")

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """The final state of the run (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self._json("dags", "list-runs", dag_id, "-o", "json") or []
            state = next((r["state"] for r in runs if r["run_id"] == run_id), None)
            if state in ("success", "failed"):
                return str(state)
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f}s")

    def wait_for_log(self, text: str, timeout: float = 180) -> None:
        """Wait until the output of ``airflow standalone`` (every component's: the triggerer's
        watchers log there) contains ``text``."""
        log = self.home / "standalone.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in log.read_text(errors="replace"):
                return
            time.sleep(1)
        raise TimeoutError(f"{text!r} not in {log} after {timeout:.0f}s")

    def messages(self, dag_id: str, run_id: str) -> list[tuple[str, str]]:
        """(task id, message) for what the run's tasks themselves logged (not Airflow's own lines)."""
        run_dir = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        found: list[tuple[float, str, str]] = []
        for path in run_dir.glob("task_id=*/**/*.log"):
            task_id = next(p.name for p in path.parents if p.name.startswith("task_id=")).split("=", 1)[1]
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                logger = str(record.get("logger", ""))
                if logger != "task" and not logger.startswith("airflow."):
                    found.append((path.stat().st_mtime, task_id, str(record.get("event", ""))))
        return [(task, message) for _, task, message in sorted(found, key=lambda f: f[0])]

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop ``airflow standalone`` and every process it started (its own process group)."""
        if self._process is None:
            return
        group = self._process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=30)
        # standalone may exit before its scheduler, API server or triggerer do: none outlives it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self._process.wait()
