"""Benchmark: whole-process throughput of the ``kmsflow`` CLI, locally and through gs://
(docs/BENCHMARKS.md, "Whole process").

What a user of the CLI waits for, start-up and imports included, against a plain process doing
only the copy, timed as the wall time of each child process, ``--runs`` times interleaved:

1. **tmpfs**: ``kmsflow encrypt`` / ``decrypt`` of a ``--size-mib`` file (1 GiB) on ``/dev/shm``
   against ``cp`` of the same file. Every timed step has only its input and its output on tmpfs
   (a decrypt runs with the plaintext set aside; why: docs/BENCHMARKS.md, "Noise").
2. **gs://** on the GCS emulator (``kmsflow_emulator.gcs``, in memory): ``kmsflow encrypt
   local -> gs://`` against a plain gcsfs upload process of the same file (``put_file``), and
   ``kmsflow decrypt gs:// -> local`` against a plain gcsfs download process of the envelope's
   data object (``get_file``), both of ``--gcs-size-mib`` (256 MiB). The plain processes import
   only gcsfs; kmsflow's talk to the same emulator through gcsfs as kmsflow configures it.
3. **gs:// with latency**: the same against a second emulator that holds every request
   ``--gcs-latency-ms`` (20 ms; ``--latency-ms`` of the emulator, concurrent requests wait
   together). Loopback answers in well under a millisecond, which hides what a client waiting for
   one request before sending the next pays against a remote store (gcsfs's download keeps four
   ranges in flight, and so does kmsflow's read, ``streams.RangedReader``). 0 leaves it out.
4. **small objects with latency**: the same pairs for a ``--gcs-small-kib`` (1 KiB) file three
   folders down, as a pipeline's metrics are written: here round trips are the whole cost
   (kmsflow's destination checks, its record, the KMS call). 0 leaves it out.

Baseline rows ``B``: ``python -c "import grpc, tink"`` and ``python -c "import gcsfs"``, the
start-up any Python tool of this kind pays; ratios are paired within each run (median of the
per-run ratios) and are the goals of issue 23 (>= 0.6x ``cp`` on tmpfs, >= 0.9x gcsfs on gs://).

    .venv/bin/python bench/cli_throughput.py [--runs 5] [--size-mib 1024] [--gcs-size-mib 256] \
        [--gcs-latency-ms 20] [--gcs-small-kib 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envelope_throughput import MiB, file_crc32c, machine, make_key, random_file, remove, restore

from kmsflow_emulator.gcs import spawn as spawn_gcs
from kmsflow_emulator.process import spawn as spawn_kms

BUCKET = "bench"
GCSFS = (
    "import os, sys; os.environ['GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT'] = 'false'; import gcsfs.core; "
    "fs = gcsfs.core.GCSFileSystem(endpoint_url='http://' + os.environ['STORAGE_EMULATOR_HOST'], "
    "token='anon'); "
)
UPLOAD = GCSFS + "fs.put_file(sys.argv[1], sys.argv[2])"
DOWNLOAD = GCSFS + "fs.get_file(sys.argv[1], sys.argv[2])"


def wall(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of the process ``argv``; fails the bench if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed


def tmpfs_rows(work: Path, size: int, runs: int, key: str, env: dict[str, str]) -> dict[str, list[float]]:
    kmsflow = str(Path(sys.executable).with_name("kmsflow"))
    src, enc, dec, copy = work / "big.bin", work / "big.enc", work / "big.out", work / "big.cp"
    random_file(src, size)
    crc = file_crc32c(src)
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        times.setdefault("B: python -c 'import grpc, tink'", []).append(
            wall([sys.executable, "-c", "import grpc, tink"], env)
        )
        times.setdefault("cp", []).append(wall(["cp", str(src), str(copy)], env))
        remove(copy)
        times.setdefault("kmsflow encrypt", []).append(
            wall([kmsflow, "encrypt", "--key", key, str(src), str(enc)], env)
        )
        remove(src)
        subprocess.run(["cp", str(enc), str(copy)], check=True)  # as envelope_throughput: the freed GiB
        remove(copy)
        times.setdefault("kmsflow decrypt", []).append(wall([kmsflow, "decrypt", str(enc), str(dec)], env))
        restore(dec, src, crc)
        remove(enc)
    remove(src)
    return times


def gcs_rows(
    work: Path, size: int, runs: int, key: str, env: dict[str, str], folder: str = ""
) -> dict[str, list[float]]:
    """Paired gcsfs and kmsflow processes, ``size`` bytes each way, objects under ``folder``."""
    kmsflow = str(Path(sys.executable).with_name("kmsflow"))
    src, out = work / "gcs.bin", work / "gcs.out"
    random_file(src, size)
    crc = file_crc32c(src)
    times: dict[str, list[float]] = {}
    for run in range(runs):
        plain, envelope = f"{BUCKET}/{folder}plain-{run}.bin", f"gs://{BUCKET}/{folder}enc-{run}.bin"
        times.setdefault("B: python -c 'import gcsfs'", []).append(
            wall([sys.executable, "-c", "import gcsfs"], env)
        )
        upload = [sys.executable, "-c", UPLOAD, str(src), plain]
        times.setdefault("gcsfs upload", []).append(wall(upload, env))
        times.setdefault("kmsflow encrypt -> gs://", []).append(
            wall([kmsflow, "encrypt", "--key", key, str(src), envelope], env)
        )
        # The plain download fetches the envelope's data object: as many bytes as kmsflow reads.
        times.setdefault("gcsfs download", []).append(
            wall([sys.executable, "-c", DOWNLOAD, envelope.removeprefix("gs://"), str(out)], env)
        )
        remove(out)
        times.setdefault("kmsflow decrypt gs:// ->", []).append(
            wall([kmsflow, "decrypt", envelope, str(out)], env)
        )
        if file_crc32c(out) != crc:
            raise SystemExit(f"{out}: decrypted output differs from the plaintext")
        remove(out)
    remove(src)
    return times


SMALL_FOLDER = "runs/2026-12-08/metrics/"  # where a pipeline's small outputs go: three levels down
GCS_PAIRS = [
    ("encrypt -> gs:// vs gcsfs upload", "gcsfs upload", "kmsflow encrypt -> gs://"),
    ("decrypt gs:// -> vs gcsfs download", "gcsfs download", "kmsflow decrypt gs:// ->"),
]


def print_rows(times: dict[str, list[float]], size_mib: int, pairs: list[tuple[str, str, str]]) -> None:
    print("| process | median s | MiB/s | all runs (s) |")
    print("|---|---:|---:|---|")
    for name, values in times.items():
        med = statistics.median(values)
        rate = f"{size_mib / med:,.0f}" if size_mib and not name.startswith("B:") else ""
        print(f"| {name} | {med:.2f} | {rate} | {', '.join(f'{v:.2f}' for v in values)} |")
    print("\nPaired within each run (median of the per-run ratios; >1 is faster than the baseline):\n")
    for label, base, tool in pairs:
        ratios = [b / t for b, t in zip(times[base], times[tool], strict=True)]
        print(f"* {label}: **{statistics.median(ratios):.2f}x** ({', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--gcs-size-mib", type=int, default=256)
    parser.add_argument("--gcs-latency-ms", type=float, default=20.0)
    parser.add_argument("--gcs-small-kib", type=int, default=1)
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    kms, kms_endpoint = spawn_kms()
    gcs, gcs_endpoint = spawn_gcs("--default-bucket", BUCKET)
    servers = [kms, gcs]
    work = Path(tempfile.mkdtemp(prefix="kmsflow-cli-bench-", dir=args.dir))
    env = {**os.environ, "KMS_EMULATOR_HOST": kms_endpoint, "STORAGE_EMULATOR_HOST": gcs_endpoint}
    try:
        key = make_key(kms_endpoint)
        local = tmpfs_rows(work, args.size_mib * MiB, args.runs, key, env)
        print(f"\n### Whole process, {args.size_mib} MiB file on {args.dir}, {args.runs} runs\n")
        print_rows(
            local,
            args.size_mib,
            [("encrypt vs cp", "cp", "kmsflow encrypt"), ("decrypt vs cp", "cp", "kmsflow decrypt")],
        )
        remote = gcs_rows(work, args.gcs_size_mib * MiB, args.runs, key, env)
        print(f"\n### Whole process, {args.gcs_size_mib} MiB through gs:// (GCS emulator), {args.runs} runs")
        print()
        print_rows(remote, args.gcs_size_mib, GCS_PAIRS)
        if args.gcs_latency_ms:
            slow, slow_endpoint = spawn_gcs(
                "--default-bucket", BUCKET, "--latency-ms", str(args.gcs_latency_ms)
            )
            servers.append(slow)
            slow_env = {**env, "STORAGE_EMULATOR_HOST": slow_endpoint}
            remote = gcs_rows(work, args.gcs_size_mib * MiB, args.runs, key, slow_env)
            print(
                f"\n### Whole process, {args.gcs_size_mib} MiB through gs://, {args.gcs_latency_ms:g} ms per "
                f"request (GCS emulator --latency-ms), {args.runs} runs\n"
            )
            print_rows(remote, args.gcs_size_mib, GCS_PAIRS)
            if args.gcs_small_kib:
                small = gcs_rows(work, args.gcs_small_kib << 10, args.runs, key, slow_env, SMALL_FOLDER)
                print(
                    f"\n### Whole process, {args.gcs_small_kib} KiB through gs://{BUCKET}/{SMALL_FOLDER}, "
                    f"{args.gcs_latency_ms:g} ms per request, {args.runs} runs\n"
                )
                print_rows(small, 0, GCS_PAIRS)
    finally:
        remove(work)
        for process in servers:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
