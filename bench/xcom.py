"""Benchmark: per-XCom overhead of EncryptedXComBackend against Airflow's default backend (issue 20).

One XCom = push + pull, timed in this process as the task runner calls them:

* **default**: ``BaseXCom.serialize_value`` (Airflow's serde), ``json.dumps`` of the result (what
  crosses to the API server and lands in the database), then ``json.loads`` and
  ``BaseXCom.deserialize_value``;
* **encrypted**: ``EncryptedXComBackend.serialize_value`` (serde, frame, one KMS Encrypt of a fresh
  data key, Tink streaming AEAD, the envelope written under ``xcom_path``), ``json.dumps`` of the
  reference, then ``json.loads`` and ``deserialize_value`` (record read, one KMS Decrypt, every byte
  authenticated, serde back).

Not timed, for either: the Execution API call and the database write/read. They are the same
request for both backends for small values; for a large value the default backend sends and stores
all of it, the encrypted one a ~600-byte reference, so the ratios for 10 MiB overstate the overhead.

Rows run interleaved (default, encrypted, default, ...), ``--runs`` rounds each, on a local
``xcom_path`` under ``--dir`` (tmpfs by default) with the KMS emulator on loopback; reported: the
median push, pull and push+pull per row and the ratio encrypted/default in the same run.

    .venv/bin/python bench/xcom.py [--runs-small 200] [--runs-large 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import string
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from envelope_throughput import machine, make_key, start_emulator

MIB = 1 << 20
CONTEXT: dict[str, Any] = {
    "dag_id": "bench",
    "run_id": "manual__2026-12-07",
    "task_id": "t",
    "map_index": -1,
    "key": "v",
}


class Stored:
    def __init__(self, value: Any) -> None:
        self.value = value


def values() -> dict[str, Any]:
    rng = random.Random(0)
    small = {
        "prompt": "".join(rng.choices(string.ascii_letters, k=200)),
        "scores": [rng.random() for _ in range(8)],
    }
    large = "".join(rng.choices(string.ascii_letters, k=10 * MIB))
    return {"small (~400 B dict)": small, "10 MiB str": large}


def one_xcom(backend: Any, value: Any) -> tuple[float, float]:
    """Seconds for push (serialise + JSON) and pull (JSON + deserialise); checks the round trip."""
    start = time.perf_counter()
    stored = json.dumps(backend.serialize_value(value, **CONTEXT))
    pushed = time.perf_counter()
    back = backend.deserialize_value(Stored(json.loads(stored)))
    pulled = time.perf_counter()
    if back != value:
        raise AssertionError("round trip changed the value")
    return pushed - start, pulled - pushed


def kms_round_trip(key: str) -> tuple[float, float]:
    """Seconds for the KMS Encrypt and Decrypt of one data key alone: the part of an encrypted XCom
    that a per-task data key cache would save."""
    from kmsflow.airflow.xcom import _kms
    from kmsflow.envelope.keyset import DataKey
    from kmsflow.envelope.wrap import unwrap_key, wrap_key

    client, retry = _kms("kmsflow_default")
    data_key = DataKey.generate()
    start = time.perf_counter()
    wrap = wrap_key(client, key, data_key, "0" * 32, retry=retry)
    wrapped = time.perf_counter()
    unwrap_key(client, wrap, "0" * 32, "(bench)", retry=retry)
    return wrapped - start, time.perf_counter() - wrapped


def measure(
    rows: dict[str, Callable[[], tuple[float, float]]], runs: int
) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for _ in range(runs):
        for name, run in rows.items():
            times[name].append(run())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-small", type=int, default=200)
    parser.add_argument("--runs-large", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kmsflow-bench-xcom-", dir=args.dir))
    os.environ["AIRFLOW_HOME"] = str(work / "airflow")
    proc, endpoint = start_emulator()
    try:
        key = make_key(endpoint)
        os.environ.update(
            {
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": json.dumps(
                    {"conn_type": "kmsflow", "extra": {"endpoint": endpoint}}
                ),
                "KMSFLOW_XCOM_KEY": key,
                "KMSFLOW_XCOM_PATH": str(work / "xcom"),
                "AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH": "0",
            }
        )
        from airflow.sdk.bases.xcom import BaseXCom

        from kmsflow.airflow.xcom import EncryptedXComBackend

        print(f"machine: {machine()}")
        print(f"xcom_path on {work} (dir {args.dir}); KMS emulator on {endpoint}\n")
        print("| value | backend | runs | push ms | pull ms | push+pull ms | encrypted/default |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for (label, value), runs in zip(values().items(), (args.runs_small, args.runs_large), strict=True):
            one_xcom(EncryptedXComBackend, value)  # warm: client channel, imports, caches
            rows: dict[str, Callable[[], tuple[float, float]]] = {
                "default": partial(one_xcom, BaseXCom, value),
                "encrypted": partial(one_xcom, EncryptedXComBackend, value),
                "(KMS Encrypt + Decrypt alone)": partial(kms_round_trip, key),
            }
            times = measure(rows, runs)
            medians = {}
            for name, samples in times.items():
                push = statistics.median(p for p, _ in samples) * 1e3
                pull = statistics.median(q for _, q in samples) * 1e3
                both = statistics.median(p + q for p, q in samples) * 1e3
                medians[name] = both
                ratio = "" if name == "default" else f"{both / medians['default']:.1f}x"
                print(f"| {label} | {name} | {runs} | {push:.3f} | {pull:.3f} | {both:.3f} | {ratio} |")
            shutil.rmtree(work / "xcom", ignore_errors=True)
        print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
