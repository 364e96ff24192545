"""Benchmark: full re-encrypt of a big file -- time against its baselines, and memory (docs/BENCHMARKS.md).

Re-encrypt (``kmsflow.lifecycle.reencrypt``) reads the old ciphertext once and writes the new one
(old key's decrypting stream -> new key's encrypting stream -> staging), then reads the staged copy
again to verify it before it replaces the old envelope. Measured on tmpfs, ``--runs`` times
interleaved, each step in a fresh worker process (imports and interpreter start-up excluded, as
in ``bench/envelope_throughput.py``, whose workers and helpers this script reuses):

1. ``cp`` of the plaintext (wall time of the process): the floor for any tool that reads and
   writes the file once.
2. ``kmsflow encrypt`` and ``kmsflow decrypt`` of the same file: what a person without re-encrypt
   would do (decrypt to a plaintext file, encrypt that anew), minus the plaintext left on disk
   and minus any verification. Their sum is the second baseline.
3. ``reencrypt`` of the envelope, with its KMS calls (Decrypt, Encrypt, Decrypt), staging,
   verification and the swap. Its output is then decrypted and checked by CRC32C against the
   original.

Every timed step has 2 GiB on tmpfs (its input and its output), as in the envelope benchmark
("Noise" in docs/BENCHMARKS.md). Then the peak RSS of the whole ``kmsflow reencrypt`` CLI process
for a 1 MiB and a ``--size-mib`` file (``ru_maxrss`` from ``os.wait4``).

    .venv/bin/python bench/reencrypt.py [--size-mib 1024] [--runs 5] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from envelope_throughput import (
    MiB,
    file_crc32c,
    print_medians,
    random_file,
    remove,
    restore,
    run_child,
    session,
)

HERE = Path(__file__).resolve().parent


def reencrypt_worker(target: str, endpoint: str) -> None:
    """Re-encrypt ``target`` after imports; print the library call's wall time as JSON."""
    from kmsflow.kms import new_kms_client
    from kmsflow.lifecycle import reencrypt

    client = new_kms_client(endpoint=endpoint)
    start = time.perf_counter()
    report = reencrypt(client, [target], max_workers=1)
    elapsed = time.perf_counter() - start
    if not report.ok or report.reencrypted != 1:
        raise SystemExit(f"reencrypt failed: {report.to_dict()['failures']}")
    print(json.dumps({"seconds": elapsed}))


def timings(work: Path, size: int, runs: int, endpoint: str, key: str) -> dict[str, list[float]]:
    src, enc, dec = work / "big.bin", work / "big.enc", work / "big.out"
    random_file(src, size)
    crc = file_crc32c(src)
    envelope_worker = [sys.executable, str(HERE / "envelope_throughput.py"), "--worker"]
    reencrypt_worker_argv = [sys.executable, str(HERE / "reencrypt.py"), "--worker"]
    times: dict[str, list[float]] = {}

    def timed(name: str, argv: list[str], from_stdout: bool = True) -> None:
        wall, _, out = run_child(argv)
        times.setdefault(name, []).append(json.loads(out)["seconds"] if from_stdout else wall)

    for _ in range(runs):
        timed("cp", ["cp", str(src), str(work / "big.cp")], from_stdout=False)
        remove(work / "big.cp")
        timed("kmsflow encrypt", [*envelope_worker, "kmsflow-encrypt", str(src), str(enc), endpoint, key, ""])
        remove(src)
        timed("kmsflow decrypt", [*envelope_worker, "kmsflow-decrypt", str(enc), str(dec), endpoint, key, ""])
        restore(dec, src, crc)
        remove(src)  # re-encrypt holds the old ciphertext and the staged new one: 2 GiB, like the rest
        timed("kmsflow reencrypt", [*reencrypt_worker_argv, str(enc), endpoint])
        # Untimed: the re-encrypted envelope must give the plaintext back (restore checks its CRC32C).
        run_child([*envelope_worker, "kmsflow-decrypt", str(enc), str(dec), endpoint, key, ""])
        restore(dec, src, crc)
        remove(enc)
    remove(src)
    return times


def peak_rss(work: Path, endpoint: str, key: str, sizes: list[int]) -> list[tuple[int, int]]:
    kmsflow = str(Path(sys.executable).with_name("kmsflow"))
    env = {**os.environ, "KMS_EMULATOR_HOST": endpoint}
    rows = []
    for size in sizes:
        src, enc = work / f"rss-{size}.bin", work / f"rss-{size}.enc"
        random_file(src, size)
        run_child([kmsflow, "encrypt", "--key", key, str(src), str(enc)], env)
        remove(src)
        _, rss, _ = run_child([kmsflow, "reencrypt", str(enc)], env)
        rows.append((size, rss))
        remove(enc)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--worker", nargs=2, metavar=("TARGET", "ENDPOINT"))
    args = parser.parse_args()
    if args.worker:
        reencrypt_worker(*args.worker)
        return

    with session(args.dir) as (endpoint, key, work):
        size = args.size_mib * MiB
        times = timings(work, size, args.runs, endpoint, key)
        times["decrypt + encrypt"] = [
            d + e for d, e in zip(times["kmsflow decrypt"], times["kmsflow encrypt"], strict=True)
        ]
        print(f"\n### {args.size_mib} MiB file on {args.dir}, median of {args.runs} interleaved runs\n")
        print_medians(times, args.size_mib, "step")
        print("\n### Paired within each run (median of the per-run ratios)\n")
        for label, base in (
            ("reencrypt vs cp", "cp"),
            ("reencrypt vs decrypt + encrypt", "decrypt + encrypt"),
        ):
            ratios = [b / r for b, r in zip(times[base], times["kmsflow reencrypt"], strict=True)]
            each = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"* {label}: **{statistics.median(ratios):.2f}x** ({each})")
        print("\n### Peak RSS of the whole `kmsflow reencrypt` CLI process\n")
        print("| file | peak RSS MiB |")
        print("|---|---:|")
        for fsize, rss in peak_rss(work, endpoint, key, [MiB, size]):
            print(f"| {fsize // MiB} MiB | {rss / 1024:.1f} |")


if __name__ == "__main__":
    main()
