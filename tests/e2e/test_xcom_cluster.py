"""EncryptedXComBackend on a real scheduler: PostgreSQL, CeleryExecutor, api-server, scheduler,
dag-processor and a Celery worker (``tests/e2e/celery_cluster.py``), the KMS emulator with IAM
enforced and ``xcom_path`` on ``gs://`` (the GCS emulator).

``kmsflow_xcom_e2e`` (``tests/e2e/xcom_dags``) passes values carrying a marker between tasks —
a return value, an extra key, a mapped task's values read through the lazy sequence — and checks
each arrived intact. Then the test reads what was stored: every ``xcom`` row of the metadata
database is a reference, and the marker is nowhere in a ``pg_dump`` of the database (with
``[core] max_templated_field_length = 0``: see docs/AIRFLOW.md), in the task logs, or in the
objects on ``gs://`` (kmsflow envelopes, found by inventory); a task that pushed and failed had its
first try's envelope purged before its retry. Then, in a second run, someone with database access
copies one row's reference into another's while the reader waits: the reader fails naming the
mismatch.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from celery_cluster import HERE, OWNER, Cluster, free_port, postgres_bin

from kmsflow.envelope import Envelope, gcs_filesystem
from kmsflow.inventory import scan
from kmsflow.kms import new_kms_client

BUCKET = "kmsflow"
XCOM_PATH = f"gs://{BUCKET}/xcom"
MARKER = "KMSFLOW-E2E-PLAINTEXT-5c1d"
DAG_ID = "kmsflow_xcom_e2e"
RING = "xcom-ring"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Cluster, str]]:
    running = Cluster(tmp_path)
    try:
        running.start_postgres()
        running.start_redis()
        running.start_emulators(BUCKET)
        client = new_kms_client(endpoint=running.kms_endpoint, principal=OWNER)
        location = "projects/kmsflow-e2e/locations/us-central1"
        client.create_key_ring(request={"parent": location, "key_ring_id": RING, "key_ring": {}})
        key = client.create_crypto_key(
            request={
                "parent": f"{location}/keyRings/{RING}",
                "crypto_key_id": "xcom",
                "crypto_key": {"purpose": "ENCRYPT_DECRYPT"},
            }
        ).name
        connection = {"conn_type": "kmsflow", "extra": {"endpoint": running.kms_endpoint, "principal": OWNER}}
        running.start_airflow(
            {
                "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "xcom_dags"),
                "AIRFLOW__CORE__XCOM_BACKEND": "kmsflow.airflow.xcom.EncryptedXComBackend",
                "AIRFLOW__KMSFLOW__XCOM_KEY": key,
                "AIRFLOW__KMSFLOW__XCOM_PATH": XCOM_PATH,
                # Rendered template fields (a TaskFlow task's arguments) would keep pulled values.
                "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH": "0",
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": json.dumps(connection),
                "STORAGE_EMULATOR_HOST": running.gcs_host,
                "KMSFLOW_E2E_MARKER": MARKER,
                # The REST API as the UI calls it, without a login: any token is an admin's.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # A loaded machine (shared CI) answers the worker's Execution API calls slowly.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            },
            workers=("w1",),
        )
        running.wait_for_dags({DAG_ID})
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.gcs_host)  # this process reads gs:// too
        yield running, key
    except BaseException:
        print(running.log_tails(40))
        raise
    finally:
        running.stop()


def xcom_rows(cluster: Cluster, run_id: str) -> dict[tuple[str, int, str], str]:
    rows = cluster.rows(
        f"select task_id, map_index, key, value from xcom where dag_id = '{DAG_ID}' and run_id = '{run_id}'"
    )
    return {(task, int(index), key): value for task, index, key, value in rows}


def stored_objects() -> dict[str, bytes]:
    fs = gcs_filesystem()
    fs.invalidate_cache()
    return {f"gs://{path}": fs.cat(path) for path in fs.find(f"{BUCKET}/xcom")}


def whole_database(cluster: Cluster) -> str:
    dump = subprocess.run(
        [
            str(postgres_bin() / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.pg_port),
            "-U",
            "airflow",
            "airflow",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dump.stdout


def api_xcom(cluster: Cluster, run_id: str, task_id: str, key: str) -> dict[str, Any]:
    """The XCom entry as the UI fetches it (deserialized and stringified for display)."""
    base = f"http://127.0.0.1:{cluster.api_port}"
    with urllib.request.urlopen(f"{base}/auth/token", timeout=30) as answer:
        token = json.load(answer)["access_token"]
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
    request = urllib.request.Request(
        f"{base}{path}?deserialize=true&stringify=true", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.load(answer))


def task_logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (tmp_path / "airflow" / "logs").rglob("*.log"))


@pytest.mark.timeout(900)
def test_encrypted_xcom_on_a_real_scheduler(cluster: tuple[Cluster, str], tmp_path: Path) -> None:
    airflow, key = cluster
    state, run_id = airflow.run_dag(DAG_ID, {}, timeout=300)
    instances = airflow.task_instances(DAG_ID, run_id)
    assert state == "success", (instances, airflow.log_tails(60))

    rows = xcom_rows(airflow, run_id)
    expected = {("produce", -1, "return_value"), ("produce", -1, "extra"), ("consume", -1, "return_value")}
    expected |= {("embed", i, "return_value") for i in range(3)} | {("flaky", -1, "attempt")}
    assert expected <= set(rows)
    references = {}
    for (task_id, map_index, xcom_key), value in rows.items():
        assert MARKER not in value
        reference = json.loads(value)
        assert reference["kmsflow_xcom"] == 1 and reference["crypto_key"] == key
        assert reference["context"] == {
            "dag_id": DAG_ID,
            "run_id": run_id,
            "task_id": task_id,
            "map_index": map_index,
            "key": xcom_key,
        }
        assert reference["url"].startswith(XCOM_PATH + "/")
        references[(task_id, map_index, xcom_key)] = reference
    assert MARKER not in whole_database(airflow)
    shown = api_xcom(airflow, run_id, "produce", "return_value")  # what the UI's XCom view shows
    assert MARKER not in json.dumps(shown)
    assert references[("produce", -1, "return_value")]["envelope_id"] in str(shown["value"])
    assert MARKER not in task_logs(tmp_path)

    # Data + record per row, nothing else: flaky's first try's value was purged before its second.
    objects = stored_objects()
    assert len(objects) == 2 * len(rows)
    assert all(MARKER.encode() not in data for data in objects.values())
    flaky = [t for t in instances if t["task_id"] == "flaky"]
    assert [t["try_number"] for t in flaky] == ["2"]
    found = scan([XCOM_PATH])
    assert found.complete
    assert {e.envelope_id for e in found.envelopes} == {r["envelope_id"] for r in references.values()}
    assert all(Envelope.open(r["url"]).record.key.crypto_key == key for r in references.values())

    # Someone with database access copies embed[0]'s reference into produce's row while consume
    # waits at the gate: consume fails naming what it asked for, and shows no value.
    gate = tmp_path / "go"
    run_id = airflow.trigger(DAG_ID, {"wait_for": str(gate)})
    deadline = time.monotonic() + 300
    while not any(
        t["task_id"] == "gate" and t["state"] == "running" for t in airflow.task_instances(DAG_ID, run_id)
    ):
        assert time.monotonic() < deadline, airflow.task_instances(DAG_ID, run_id)
        time.sleep(1)
    rows = xcom_rows(airflow, run_id)
    stolen = rows[("embed", 0, "return_value")].replace("'", "''")
    airflow.psql(
        f"update xcom set value = '{stolen}' where dag_id = '{DAG_ID}' and run_id = '{run_id}' "
        "and task_id = 'produce' and key = 'return_value'"
    )
    gate.touch()
    state = airflow.wait_run(DAG_ID, run_id, timeout=300)
    consume = [t for t in airflow.task_instances(DAG_ID, run_id) if t["task_id"] == "consume"]
    assert state == "failed" and consume[0]["state"] == "failed", consume
    logs = task_logs(tmp_path)
    assert "XComMismatchError" in logs and "task_id='produce'" in logs
    assert MARKER not in logs
