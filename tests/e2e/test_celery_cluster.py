"""Native distributed end to end: the docker-compose topology without containers (issue 18).

PostgreSQL + Redis + CeleryExecutor, api-server, scheduler, dag-processor, triggerer and two Celery
workers with distinct hostnames (``tests/e2e/celery_cluster.py``), the KMS emulator with IAM
enforced, and roots and the audit log on ``gs://`` (the GCS emulator): on separate machines local
paths are not shared. ``kmsflow_provision`` applies the spec, ``kmsflow_rotate_rewrap`` rotates and
re-wraps 5,000 envelopes in 8 mapped batches that run on both workers, ``kmsflow_shred`` (a manual
run: dry) proves its scan over the same roots.

Then a worker is killed -9 in the middle of a batch (some of its envelopes re-wrapped, some not):
its batches are retried on the other worker and the run converges with every envelope decrypting.

The envelopes are made through the library and copied to ``gs://`` in bulk
(``celery_cluster.seed_envelopes``); the DAGs read and write them through ``gs://`` only.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from celery_cluster import BIN, OWNER, Cluster, seed_envelopes, started

from kmsflow.audit import read_events
from kmsflow.envelope import Envelope, verify
from kmsflow.inventory import scan
from kmsflow.kms import new_kms_client

BUCKET = "kmsflow"
ROOT = f"gs://{BUCKET}/roots/data"
AUDIT = f"gs://{BUCKET}/audit"
KEY = "projects/kmsflow-e2e/locations/us-central1/keyRings/ring/cryptoKeys/data"
ENVELOPES = 5000
BATCH_SIZE = 625  # -> 8 mapped rewrap tasks
DAG_ID = "kmsflow_rotate_rewrap"
T = TypeVar("T")

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
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    with started(tmp_path, spec, BUCKET) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.gcs_host)  # this process reads gs:// too
        yield running


def version(n: int) -> str:
    return f"{KEY}/cryptoKeyVersions/{n}"


def on_version(url: str) -> str:
    return Envelope.open(url).record.key.crypto_key_version


def wait_for(what: str, condition: Callable[[], T | None], cluster: Cluster, timeout: float) -> T:
    """Poll ``condition`` until it returns something (not None); fail after ``timeout`` seconds, or
    at once if a component died."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found is not None:
            return found
        cluster.check_alive()
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s"
        time.sleep(0.2)


def verify_all(client: Any, urls: list[str]) -> None:
    """Every envelope authenticates end to end: KMS Decrypt of its data key, every byte of data."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda url: verify(client, url), urls))


@pytest.mark.timeout(2400)  # a hang guard: ~28 min on a 2-core machine at load 20+, far less idle
def test_lifecycle_on_celery_workers_with_gcs_roots(cluster: Cluster, tmp_path: Path) -> None:
    spec = str(tmp_path / "spec.yaml")
    state, _ = cluster.run_dag("kmsflow_provision", {"spec_path": spec})
    assert state == "success", cluster.log_tails()

    client = new_kms_client(endpoint=cluster.kms_endpoint, principal=OWNER)
    urls = seed_envelopes(client, KEY, ROOT, ENVELOPES, tmp_path / "seed")
    before = scan([ROOT])
    assert before.complete and set(before.by_version()) == {version(1)}
    assert before.by_version()[version(1)].envelopes == ENVELOPES

    conf = {"spec_path": spec, "rotate_first": True, "batch_size": BATCH_SIZE, "max_parallel": 8}
    state, run_id = cluster.run_dag(DAG_ID, conf, timeout=900)
    instances = cluster.task_instances(DAG_ID, run_id)
    assert state == "success", instances
    batches = [ti for ti in instances if ti["task_id"] == "rewrap"]
    assert len(batches) == ENVELOPES // BATCH_SIZE >= 8
    assert all(ti["state"] == "success" for ti in batches)
    assert {ti["hostname"] for ti in batches} == {"w1", "w2"}  # the batches ran on both workers
    checked = cluster.xcom(DAG_ID, run_id, "check")  # the DAG's own proof, after its fresh scan
    assert checked["ok"] and checked["envelopes"] == ENVELOPES and checked["not_primary"] == 0, checked

    after = scan([ROOT])
    assert after.complete
    versions = after.by_version()
    assert list(versions) == [version(2)]
    assert versions[version(2)].envelopes == ENVELOPES
    events = read_events(AUDIT)  # one log on gs:// whichever worker wrote
    assert [e.action for e in events if e.action == "rotate"] == ["rotate"]
    rewrapped = [e for e in events if e.action == "rewrap-batch"]
    assert len(rewrapped) == len(batches)
    assert all(e.run == f"{DAG_ID}/{run_id}" for e in rewrapped)

    shred = cluster.trigger("kmsflow_shred", {"spec_path": spec})
    verify_all(client, urls)  # every envelope still authenticates end to end (while shred runs)
    state = cluster.wait_run("kmsflow_shred", shred, timeout=600)
    assert state == "success", cluster.task_instances("kmsflow_shred", shred)

    # A worker lost in the middle of a batch. KMS Decrypt fails (UNAVAILABLE, retried inside the
    # tasks) until both workers hold running batches; KMS recovers, and once one of w1's batches
    # has re-wrapped some of its envelopes, w1 is killed -9 (its whole process group). Its batches
    # fail by heartbeat timeout and are retried on w2, which finishes what the lost attempt began.
    faults = [str(BIN / "kmsflow-emulator"), "faults", "--endpoint", cluster.kms_endpoint]
    subprocess.run([*faults, "--rate", "1", "--methods", "Decrypt"], check=True, timeout=60)
    run_id = cluster.trigger(DAG_ID, conf)

    def both_workers_busy() -> list[dict[str, str]] | None:
        running = [t for t in cluster.task_instances(DAG_ID, run_id) if t["state"] == "running"]
        return (
            running if {t["hostname"] for t in running if t["task_id"] == "rewrap"} == {"w1", "w2"} else None
        )

    running = wait_for("both workers running a batch", both_workers_busy, cluster, 300)
    killed = {int(t["map_index"]) for t in running if t["task_id"] == "rewrap" and t["hostname"] == "w1"}
    watched = cluster.xcom(DAG_ID, run_id, "batches")[min(killed)]
    subprocess.run([*faults, "--rate", "0"], check=True, timeout=60)
    sample = watched[::25]
    wait_for(
        "w1's batch under way",
        lambda: True if any(on_version(url) == version(3) for url in sample) else None,
        cluster,
        300,
    )
    cluster.kill("w1")
    with ThreadPoolExecutor(8) as pool:
        done = sum(v == version(3) for v in pool.map(on_version, watched))
    assert 0 < done < len(watched), f"{done} of the batch's {len(watched)} were re-wrapped when w1 died"
    state = cluster.wait_run(DAG_ID, run_id, timeout=900)
    instances = cluster.task_instances(DAG_ID, run_id)
    assert state == "success", instances
    batches_by_index = {int(t["map_index"]): t for t in instances if t["task_id"] == "rewrap"}
    assert len(batches_by_index) == ENVELOPES // BATCH_SIZE
    assert all(t["state"] == "success" for t in batches_by_index.values())
    for index in killed:  # retried elsewhere
        retried = batches_by_index[index]
        assert retried["hostname"] == "w2" and int(retried["try_number"]) >= 2, retried
    print(
        f"w1 killed with {done}/{len(watched)} of batch {min(killed)} re-wrapped; "
        f"retried on w2: {sorted(killed)}"
    )
    after = scan([ROOT])
    assert after.complete and list(after.by_version()) == [version(3)]
    assert after.by_version()[version(3)].envelopes == ENVELOPES
    verify_all(client, urls)  # nothing lost: every envelope decrypts under the new primary's wrap
