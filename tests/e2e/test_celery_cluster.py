"""Native distributed end to end: the docker-compose topology without containers (issue 18).

PostgreSQL + Redis + CeleryExecutor, api-server, scheduler, dag-processor, triggerer and two Celery
workers with distinct hostnames (``tests/e2e/celery_cluster.py``), the KMS emulator with IAM
enforced, and roots and the audit log on ``gs://`` (the GCS emulator): on separate machines local
paths are not shared. ``kmsflow_provision`` applies the spec, ``kmsflow_rotate_rewrap`` rotates and
re-wraps every envelope in mapped batches that run on both workers, ``kmsflow_shred`` (a manual run:
dry) proves its scan over the same roots.

Then a worker is killed -9 while both hold running batches: its batches are retried on the other
and the run converges with every envelope verifying.

Scale: a few dozen envelopes in 8 batches, so the test stays within a few minutes on a small
machine. Not covered yet (issue 18): the 5,000-envelope scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from celery_cluster import BIN, OWNER, Cluster

from kmsflow.audit import read_events
from kmsflow.envelope import encrypt, verify
from kmsflow.inventory import scan
from kmsflow.kms import new_kms_client

BUCKET = "kmsflow"
ROOT = f"gs://{BUCKET}/roots/data"
AUDIT = f"gs://{BUCKET}/audit"
KEY = "projects/kmsflow-e2e/locations/us-central1/keyRings/ring/cryptoKeys/data"
ENVELOPES = 80
BATCH_SIZE = 10  # -> 8 mapped rewrap tasks
DAGS = {"kmsflow_provision", "kmsflow_rotate_rewrap", "kmsflow_shred", "kmsflow_erase", "kmsflow_ml_pipeline"}

SPEC = f"""
project: kmsflow-e2e
location: us-central1
audit_log: {AUDIT}
key_rings:
  - id: ring
    keys:
      - id: data
        rotation_period: null
        roots: [{ROOT}]
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        running.start_postgres()
        running.start_redis()
        running.start_emulators(BUCKET)
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        connection = json.dumps(
            # deadline: a task stalled by injected KMS faults waits instead of failing
            {
                "conn_type": "kmsflow",
                "extra": {"endpoint": running.kms_endpoint, "principal": OWNER, "deadline": 600},
            }
        )
        running.start_airflow(
            {
                "KMSFLOW_SPEC": str(spec),
                "STORAGE_EMULATOR_HOST": running.gcs_host,
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": connection,
                # A lost worker's task instances fail (and are retried) 20 s after their last heartbeat.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            }
        )
        running.wait_for_dags(DAGS)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.gcs_host)  # this process reads gs:// too
        yield running
    except BaseException:
        print(running.log_tails())
        raise
    finally:
        running.stop()


@pytest.mark.timeout(900)
def test_lifecycle_on_celery_workers_with_gcs_roots(cluster: Cluster, tmp_path: Path) -> None:
    spec = str(tmp_path / "spec.yaml")
    state, _ = cluster.run_dag("kmsflow_provision", {"spec_path": spec})
    assert state == "success", cluster.log_tails()

    client = new_kms_client(endpoint=cluster.kms_endpoint, principal=OWNER)
    src = tmp_path / "plain"
    src.mkdir()
    for i in range(ENVELOPES):
        (src / f"f{i}").write_bytes(os.urandom(256) + str(i).encode())
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda i: encrypt(client, KEY, str(src / f"f{i}"), f"{ROOT}/f{i}.enc"), range(ENVELOPES))
        )
    before = scan([ROOT])
    assert before.complete and set(before.by_version()) == {f"{KEY}/cryptoKeyVersions/1"}

    conf = {"spec_path": spec, "rotate_first": True, "batch_size": BATCH_SIZE, "max_parallel": 4}
    state, run_id = cluster.run_dag("kmsflow_rotate_rewrap", conf, timeout=420)
    instances = cluster.task_instances("kmsflow_rotate_rewrap", run_id)
    assert state == "success", instances
    batches = [ti for ti in instances if ti["task_id"] == "rewrap"]
    assert len(batches) == ENVELOPES // BATCH_SIZE >= 8
    assert all(ti["state"] == "success" for ti in batches)
    assert {ti["hostname"] for ti in batches} == {"w1", "w2"}  # the batches ran on both workers

    after = scan([ROOT])
    assert after.complete
    versions = after.by_version()
    assert list(versions) == [f"{KEY}/cryptoKeyVersions/2"]
    assert versions[f"{KEY}/cryptoKeyVersions/2"].envelopes == ENVELOPES
    for i in range(ENVELOPES):  # every envelope still authenticates end to end
        verify(client, f"{ROOT}/f{i}.enc")
    events = read_events(AUDIT)  # one log on gs:// whichever worker wrote
    assert [e.action for e in events if e.action == "rotate"] == ["rotate"]
    rewrapped = [e for e in events if e.action == "rewrap-batch"]
    assert len(rewrapped) == len(batches)
    assert all(e.run == f"kmsflow_rotate_rewrap/{run_id}" for e in rewrapped)

    state, run_id = cluster.run_dag("kmsflow_shred", {"spec_path": spec}, timeout=240)
    assert state == "success", cluster.task_instances("kmsflow_shred", run_id)

    # A worker lost in the middle of batches: KMS Decrypt fails (UNAVAILABLE, retried inside the
    # tasks) until both workers hold running batches, w1 is killed -9 (its whole process group),
    # KMS recovers; w1's batches fail by heartbeat timeout and are retried on w2.
    faults = [str(BIN / "kmsflow-emulator"), "faults", "--endpoint", cluster.kms_endpoint]
    subprocess.run([*faults, "--rate", "1", "--methods", "Decrypt"], check=True, timeout=60)
    run_id = cluster.trigger("kmsflow_rotate_rewrap", conf)
    deadline = time.monotonic() + 240
    while True:
        running = [
            t for t in cluster.task_instances("kmsflow_rotate_rewrap", run_id) if t["state"] == "running"
        ]
        hosts = {t["hostname"] for t in running if t["task_id"] == "rewrap"}
        if hosts == {"w1", "w2"}:
            break
        assert time.monotonic() < deadline, cluster.task_instances("kmsflow_rotate_rewrap", run_id)
        time.sleep(1)
    killed = {t["map_index"] for t in running if t["task_id"] == "rewrap" and t["hostname"] == "w1"}
    assert killed
    cluster.kill("w1")
    subprocess.run([*faults, "--rate", "0"], check=True, timeout=60)
    state = cluster.wait_run("kmsflow_rotate_rewrap", run_id, timeout=420)
    instances = cluster.task_instances("kmsflow_rotate_rewrap", run_id)
    assert state == "success", instances
    batches = {t["map_index"]: t for t in instances if t["task_id"] == "rewrap"}
    assert len(batches) == ENVELOPES // BATCH_SIZE and all(t["state"] == "success" for t in batches.values())
    for index in killed:  # retried elsewhere
        assert batches[index]["hostname"] == "w2" and int(batches[index]["try_number"]) >= 2, batches[index]
    print(f"killed on w1 and retried on w2: batches {sorted(killed)}; {batches}")
    after = scan([ROOT])
    assert after.complete and list(after.by_version()) == [f"{KEY}/cryptoKeyVersions/3"]
    for i in range(ENVELOPES):  # nothing lost: every envelope decrypts under the new primary's wrap
        verify(client, f"{ROOT}/f{i}.enc")
