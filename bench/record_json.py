"""Benchmark: parsing and writing an envelope record in process (docs/BENCHMARKS.md, CLI start-up).

Inventory, rewrap and re-encrypt parse every record they meet (``EnvelopeRecord.from_json``) and
rewrap writes one per envelope (``to_json``); this measures both for a record of 1 file and of
``--files`` files, best of ``--repeat`` calls, in a fresh process per tree and round. With
``--before DIR`` (a checkout with ``provider/src``, as for ``bench/startup.py``) the rounds
alternate between that tree and this one.

    .venv/bin/python bench/record_json.py [--files 10000] [--rounds 5] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7"


def record(files: int) -> dict[str, object]:
    return {
        "format": "kmsflow.envelope",
        "version": 1,
        "envelope_id": "0" * 32,
        "kind": "dataset",
        "created": "2026-12-07T21:00:00Z",
        "key": {
            "crypto_key": VERSION.split("/cryptoKeyVersions/")[0],
            "crypto_key_version": VERSION,
            "wrapped_keyset": "A" * 200,
            "wrapped_at": "2026-12-07T21:00:00Z",
        },
        "manifest": "AAAA",
        "files": [
            {
                "path": f"shard-{i:06}.bin",
                "size": i,
                "ciphertext_size": i + 56,
                "ciphertext_crc32c": "mnG7TA==",
            }
            for i in range(files)
        ],
    }


def measure(files: int, repeat: int) -> dict[str, float]:
    """Best seconds per call of ``from_json`` and ``to_json`` (run in the child process)."""
    from kmsflow.envelope.record import EnvelopeRecord

    data = json.dumps(record(files), indent=2).encode()
    parsed = EnvelopeRecord.from_json(data, "r")

    def best(call: object) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    return {
        "parse": best(lambda: EnvelopeRecord.from_json(data, "r")),
        "write": best(parsed.to_json),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return

    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    cases = {"1 file": (1, 2000), f"{args.files} files": (args.files, 7)}
    results: dict[tuple[str, str, str], list[float]] = {}
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    for _ in range(args.rounds):
        for tree, path in trees.items():
            env = {**os.environ, "PYTHONPATH": str(path / "provider" / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
            for case, (files, repeat) in cases.items():
                argv = [sys.executable, __file__, "--child", str(files), str(repeat)]
                out = json.loads(subprocess.run(argv, env=env, capture_output=True, check=True).stdout)
                for op, seconds in out.items():
                    results.setdefault((tree, case, op), []).append(seconds)
    print(f"load average at end {os.getloadavg()[0]:.1f}; {args.rounds} rounds, medians of best-of\n")
    print(
        "| record | operation | "
        + " | ".join(f"{t} µs" for t in trees)
        + (" | after/before |" if len(trees) > 1 else " |")
    )
    print("|---|---|" + "---:|" * len(trees) + ("---:|" if len(trees) > 1 else ""))
    for case in cases:
        for op in ("parse", "write"):
            meds = {t: statistics.median(results[(t, case, op)]) * 1e6 for t in trees}
            ratio = f" {meds['after'] / meds['before']:.2f} |" if len(trees) > 1 else ""
            print(f"| {case} | {op} | " + " | ".join(f"{m:,.0f}" for m in meds.values()) + " |" + ratio)


if __name__ == "__main__":
    main()
