"""Benchmark: one rewrap through the CLI in one process vs through ``kmsflow_rotate_rewrap`` on two
Celery workers, and the fixed cost of a mapped rewrap task (docs/BENCHMARKS.md, "Rewrap on a
Celery cluster").

The deployment is the end-to-end test's (``tests/e2e/celery_cluster.py``, ``started``):
PostgreSQL, Redis, CeleryExecutor with api-server, scheduler, dag-processor, triggerer and two
workers (``--concurrency 2`` each), the KMS emulator (IAM enforced) and the GCS emulator. The
envelopes (256 bytes of data each) live on ``gs://`` in every measurement, since a cluster shares
nothing else; ``seed_envelopes`` makes them once: ``--envelopes`` under one root, ``--small``
under another. Before each measurement the key is rotated (a new primary through the KMS API), so
each run re-wraps every envelope of the root it is given:

1. **CLI**: ``kmsflow rewrap gs://.../data --workers W`` in one process (its scan included);
2. **DAG**: ``kmsflow_rotate_rewrap`` over the same root (``roots`` param), ``batch_size`` B and
   ``max_parallel`` W, from trigger to success (plan, detect, inventory, batches, rewrap, check,
   publish), and its rewrap phase alone (first mapped task start to last end);
3. **Fixed cost per mapped task**: two DAG runs over the small root, one batch vs ``--small-tasks``
   batches (same envelopes, same work). From the ``task_instance`` table: the difference in the
   mapped tasks' summed run time, and in the runs' wall time, per extra task.

    .venv/bin/python bench/rewrap_cluster.py [--envelopes 20000] [--batch-size 2500] [--workers 8]
                                             [--small 200] [--small-tasks 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # the cluster harness, shared with the e2e test

from celery_cluster import BIN, OWNER, Cluster, seed_envelopes, started  # noqa: E402
from google.cloud import kms_v1  # noqa: E402
from startup import machine  # noqa: E402

from kmsflow.kms import new_kms_client  # noqa: E402

BUCKET = "kmsflow"
DATA = f"gs://{BUCKET}/roots/data"
SMALL = f"gs://{BUCKET}/roots/small"
KEY = "projects/kmsflow-bench/locations/us-central1/keyRings/ring/cryptoKeys/data"
DAG_ID = "kmsflow_rotate_rewrap"
SPEC = f"""
project: kmsflow-bench
location: us-central1
audit_log: gs://{BUCKET}/audit
key_rings:
  - id: ring
    keys:
      - id: data
        rotation_period: null
        roots: [{DATA}, {SMALL}]
"""


def rotate(client: kms_v1.KeyManagementServiceClient, key: str) -> None:
    """A new primary version of ``key`` (what ``rotate_first`` does, without the audit event)."""
    version = client.create_crypto_key_version(request={"parent": key, "crypto_key_version": {}})
    client.update_crypto_key_primary_version(
        request={"name": key, "crypto_key_version_id": version.name.rsplit("/", 1)[1]}
    )


def cli_rewrap(cluster: Cluster, workers: int) -> tuple[float, dict[str, object]]:
    env = {
        **os.environ,
        "KMS_EMULATOR_HOST": cluster.kms_endpoint,
        "KMSFLOW_PRINCIPAL": OWNER,
        "STORAGE_EMULATOR_HOST": cluster.gcs_host,
    }
    start = time.monotonic()
    done = subprocess.run(
        [str(BIN / "kmsflow"), "rewrap", DATA, "--workers", str(workers), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"kmsflow rewrap exited {done.returncode}: {done.stderr[-2000:]}")
    report: dict[str, object] = json.loads(done.stdout)
    return elapsed, report


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def dag_rewrap(cluster: Cluster, spec: Path, root: str, batch_size: int, workers: int) -> dict[str, float]:
    conf = {"spec_path": str(spec), "roots": [root], "batch_size": batch_size, "max_parallel": workers}
    start = time.monotonic()
    state, run_id = cluster.run_dag(DAG_ID, conf, timeout=3600)
    wall = time.monotonic() - start
    if state != "success":
        raise RuntimeError(f"{DAG_ID} {run_id}: {state}: {cluster.task_instances(DAG_ID, run_id)}")
    rows = cluster.rows(
        "select queued_dttm, start_date, end_date from task_instance "
        f"where dag_id = '{DAG_ID}' and run_id = '{run_id}' and task_id = 'rewrap'"
    )
    queued, started_at, ended = zip(*rows, strict=True)
    return {
        "tasks": len(rows),
        "wall": wall,
        "phase": seconds(min(started_at), max(ended)),
        "task_sum": sum(seconds(s, e) for s, e in zip(started_at, ended, strict=True)),
        "queued_sum": sum(seconds(q, s) for q, s in zip(queued, started_at, strict=True)),
    }


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envelopes", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2500, help="of the DAG run over --envelopes")
    parser.add_argument("--workers", type=int, default=8, help="CLI --workers and the DAG's max_parallel")
    parser.add_argument("--small", type=int, default=200, help="envelopes of the fixed-cost runs")
    parser.add_argument("--small-tasks", type=int, default=20, help="batches of the second fixed-cost run")
    args = parser.parse_args()
    n, small = args.envelopes, args.small

    print(f"machine: {machine()}; load average at start {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kmsflow-bench-cluster-") as tmp:
        base = Path(tmp)
        spec = base / "spec.yaml"
        spec.write_text(SPEC)
        with started(base, spec, BUCKET) as cluster:
            os.environ["STORAGE_EMULATOR_HOST"] = cluster.gcs_host  # seed_envelopes writes gs://
            state, _ = cluster.run_dag("kmsflow_provision", {"spec_path": str(spec)})
            if state != "success":
                raise RuntimeError(f"kmsflow_provision: {state}")
            client = new_kms_client(endpoint=cluster.kms_endpoint, principal=OWNER)
            start = time.monotonic()
            seed_envelopes(client, KEY, DATA, n, base / "seed")
            seed_envelopes(client, KEY, SMALL, small, base / "seed-small")
            print(
                f"seeded {n} + {small} envelopes in {time.monotonic() - start:.0f} s; load {load()}",
                flush=True,
            )

            rotate(client, KEY)
            cli_s, report = cli_rewrap(cluster, args.workers)
            print(f"CLI: {cli_s:.1f} s, {report.get('rewrapped')} rewrapped; load {load()}", flush=True)
            rotate(client, KEY)
            dag = dag_rewrap(cluster, spec, DATA, args.batch_size, args.workers)
            print(f"DAG: {dag}; load {load()}", flush=True)
            rotate(client, KEY)
            one = dag_rewrap(cluster, spec, SMALL, small, args.workers)
            print(f"DAG, small root, 1 batch: {one}; load {load()}", flush=True)
            rotate(client, KEY)
            many = dag_rewrap(cluster, spec, SMALL, -(-small // args.small_tasks), args.workers)
            print(f"DAG, small root, {many['tasks']:.0f} batches: {many}; load {load()}", flush=True)

    print(f"\n{n:,} envelopes on gs://, CLI --workers = DAG max_parallel = {args.workers}\n")
    print("| run | mapped tasks | wall s | rewrap phase s | envelopes/s (wall) | CLI wall / this wall |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| CLI `kmsflow rewrap`, one process | - | {cli_s:.1f} | - | {n / cli_s:,.0f} | 1.00 |")
    print(
        f"| DAG on 2 Celery workers, batch_size {args.batch_size:,} | {dag['tasks']:.0f} | "
        f"{dag['wall']:.1f} | {dag['phase']:.1f} | {n / dag['wall']:,.0f} | {cli_s / dag['wall']:.2f} |"
    )
    extra = many["tasks"] - one["tasks"]
    print(f"\nFixed cost per mapped task ({small} envelopes as 1 batch vs {many['tasks']:.0f}):\n")
    print("| run | mapped tasks | wall s | summed task run time s | summed queued time s |")
    print("|---|---:|---:|---:|---:|")
    for run in (one, many):
        print(
            f"| {small} envelopes | {run['tasks']:.0f} | {run['wall']:.1f} | {run['task_sum']:.1f} | "
            f"{run['queued_sum']:.1f} |"
        )
    print(
        f"\nper extra mapped task: {(many['task_sum'] - one['task_sum']) / extra:.2f} s of task run time, "
        f"{(many['wall'] - one['wall']) / extra:.2f} s of wall (2 workers x 2 slots)"
    )
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
