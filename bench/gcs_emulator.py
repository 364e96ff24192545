"""Benchmark: uploads and prefix listings per second on the GCS emulator as the bucket fills up,
``kmsflow_emulator.gcs`` against the bare ``gcp-storage-emulator`` it serves (docs/BENCHMARKS.md,
"GCS emulator").

Both run in memory as subprocesses on loopback, each started fresh by this script, and are driven
the same way: gcsfs (as kmsflow configures it, ``kmsflow.envelope.gcs_filesystem``) from a pool
of ``--threads`` threads, one small object per upload (``pipe_file``, a multipart upload) followed
by the existence check gcsfs makes before opening an object (``info``: a GET and a prefix
listing). The rate is printed per ``--step`` objects, so growth with the objects held shows; the
CPU time of the emulator process comes from ``/proc/<pid>/stat``.

    .venv/bin/python bench/gcs_emulator.py [--objects 5000] [--step 1000] [--threads 8]
                                           [--emulators bare,kmsflow]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from startup import machine

from kmsflow_emulator.gcs import spawn

BUCKET = "bench"


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare() -> tuple[subprocess.Popen[str], str]:
    """The package's own server (in memory), on a free port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory", "-q", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("gcp_storage_emulator did not start") from None
            time.sleep(0.2)


def run(name: str, start: object, objects: int, step: int, threads: int) -> list[str]:
    process, host = start()  # type: ignore[operator]
    os.environ["STORAGE_EMULATOR_HOST"] = host
    from kmsflow.envelope import gcs_filesystem

    fs = gcs_filesystem()
    fs.invalidate_cache()
    rows = []

    def one(i: int) -> None:
        path = f"{BUCKET}/roots/data/f{i}.enc"
        fs.pipe_file(path, os.urandom(256))
        fs.invalidate_cache(path)
        fs.info(path)

    try:
        fs.mkdir(BUCKET)
        with ThreadPoolExecutor(threads) as pool:
            for first in range(0, objects, step):
                t, c = time.monotonic(), cpu_seconds(process)
                list(pool.map(one, range(first, min(objects, first + step))))
                n = min(objects, first + step) - first
                wall, cpu = time.monotonic() - t, cpu_seconds(process) - c
                rows.append(f"| {name} | {first:,}-{first + n:,} | {n / wall:,.0f} | {1000 * cpu / n:.2f} |")
                print(rows[-1], flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--emulators", default="bare,kmsflow", help="which to run, in order (the bare one is quadratic)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print("| emulator | objects held | uploads+checks/s | emulator CPU ms per object |")
    print("|---|---|---:|---:|")
    emulators = {"bare": ("gcp-storage-emulator (bare)", bare), "kmsflow": ("kmsflow_emulator.gcs", spawn)}
    for choice in args.emulators.split(","):
        name, start = emulators[choice]
        run(name, start, args.objects, args.step, args.threads)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
