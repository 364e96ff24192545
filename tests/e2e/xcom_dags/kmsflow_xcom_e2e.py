"""The DAG tests/e2e/test_xcom_cluster.py runs on a real scheduler with EncryptedXComBackend.

Values carry ``KMSFLOW_E2E_MARKER`` so the test can search the metadata database, the stored objects
and the task logs for it: a return value, a value pushed under its own key, a mapped task's values
(read back through the lazy sequence) and a consumer that checks each one arrived intact. ``gate``
holds ``consume`` back while the file named by the run's conf ``wait_for`` is missing (the test
tampers with the database meanwhile). ``flaky`` pushes a value and fails its first try: before the
second, the worker deletes (purges) what the first pushed.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

MARKER = os.environ.get("KMSFLOW_E2E_MARKER", "marker")
QUIET = {"show_return_value_in_logs": False}  # PythonOperator logs return values by default


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def kmsflow_xcom_e2e() -> None:
    @task(**QUIET)
    def produce() -> dict[str, Any]:
        get_current_context()["ti"].xcom_push(key="extra", value=f"{MARKER}-extra")
        return {"prompt": MARKER, "features": [0.5, 1.5], "pair": (1, 2)}

    @task(**QUIET)
    def embed(n: int) -> str:
        return f"{MARKER}-{n}"

    @task
    def gate() -> None:
        wait_for = get_current_context()["dag_run"].conf.get("wait_for")
        deadline = time.monotonic() + 300
        while wait_for and not os.path.exists(wait_for):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{wait_for} did not appear")
            time.sleep(1)

    @task(**QUIET)
    def consume(value: dict[str, Any], embedded: list[str]) -> int:
        extra = get_current_context()["ti"].xcom_pull(task_ids="produce", key="extra")
        if value != {"prompt": MARKER, "features": [0.5, 1.5], "pair": (1, 2)}:
            raise ValueError("produce's value arrived changed")
        if list(embedded) != [f"{MARKER}-{n}" for n in range(3)] or extra != f"{MARKER}-extra":
            raise ValueError("embed's or the extra value arrived changed")
        return len(embedded)

    @task(retries=1, retry_delay=timedelta(seconds=1), **QUIET)
    def flaky() -> str:
        ti = get_current_context()["ti"]
        ti.xcom_push(key="attempt", value=f"{MARKER}-try-{ti.try_number}")
        if ti.try_number == 1:
            raise RuntimeError("first try fails on purpose")
        return f"{MARKER}-flaky"

    produced, embedded = produce(), embed.expand(n=[0, 1, 2])
    [produced, embedded] >> gate() >> consume(produced, embedded)
    flaky()


kmsflow_xcom_e2e()
