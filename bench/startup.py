"""Benchmark: whole-process start-up of the ``kmsflow`` command (issue 23, docs/BENCHMARKS.md).

Each row is a fresh process, timed from spawn to exit (wall clock), ``--runs`` rounds; in every
round all rows run once, in a new random order, so a load change on a shared machine hits every
row alike. Reported: the median per row, its ratio to the median of the baseline ``B`` (a process
running ``import grpc, tink``) and, with ``--before``, the ratio of this tree's median to the other
tree's for the same command.

    .venv/bin/python bench/startup.py [--runs 15] [--before DIR]

``--before DIR`` names another checkout (``provider/src`` and ``emulator/src`` under it, e.g.
``git archive <commit> provider/src emulator/src | tar -x -C DIR``): its commands are run with
``PYTHONPATH`` pointing there, interleaved with this tree's. The commands are ``python -m
kmsflow.cli ...`` (the console script runs the same ``main``): ``--help``; ``inspect`` of a 1 KiB
file's envelope (no KMS call); ``audit`` of a one-event log; ``clean --dry-run`` of an empty
directory; ``encrypt`` and ``decrypt`` of the 1 KiB file against the KMS emulator (one KMS call
each, through the lean data path), started once as a subprocess on loopback. Both trees are
byte-compiled first (``compileall``): with ``PYTHONDONTWRITEBYTECODE`` set, as in this project's
shells, a fresh checkout would otherwise compile every module in every run, which inflated the
``before`` rows of runs made so. The import-only rows
show what the Cloud KMS package costs alone, that importing its narrowest module costs the same
(the package's ``__init__`` runs first and imports every service), what ``google.api_core.retry``
costs (it imports ``requests``; the lean path does without it) and what the lean path costs.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envelope_throughput import make_key  # a fresh ENCRYPT_DECRYPT key on the emulator

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024

IMPORT_ROWS = {
    "B: import grpc, tink": "import grpc, tink",
    "python -c pass": "pass",
    "import google.cloud.kms_v1": "import google.cloud.kms_v1",
    "import ...kms_v1.services.key_management_service": (
        "import google.cloud.kms_v1.services.key_management_service"
    ),
    "import grpc, google.api_core.retry": "import grpc, google.api_core.retry",
    "import kmsflow.kms.dataplane (grpc, protobuf)": "import kmsflow.kms.dataplane",
}
COMMANDS = ("--help", "inspect", "audit", "clean --dry-run", "encrypt", "decrypt")


def pythonpath(tree: Path) -> str:
    return f"{tree / 'provider' / 'src'}{os.pathsep}{tree / 'emulator' / 'src'}"


def argv_for(command: str, work: Path, key: str, tag: str) -> list[str]:
    cli = [sys.executable, "-m", "kmsflow.cli", "-q"]
    if command == "--help":
        return [sys.executable, "-m", "kmsflow.cli", "--help"]
    if command == "inspect":
        return [*cli, "inspect", str(work / "tiny.enc")]
    if command == "audit":
        return [*cli, "audit", str(work / "audit.log")]
    if command == "clean --dry-run":
        return [*cli, "clean", "--dry-run", str(work / "empty")]
    if command == "encrypt":
        return [*cli, "encrypt", "--key", key, str(work / "tiny.bin"), str(work / f"out-{tag}.enc")]
    if command == "decrypt":
        return [*cli, "decrypt", str(work / "tiny.enc"), str(work / f"out-{tag}.bin")]
    raise ValueError(command)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[3:]} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return wall


def clear_outputs(work: Path) -> None:
    for p in work.glob("out-*"):
        p.unlink()


def machine() -> str:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import platform

    return f"nproc={os.cpu_count()}, CPU {model!r}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", type=Path, help="another checkout to compare with, interleaved")
    args = parser.parse_args()

    from kmsflow_emulator.process import spawn

    trees = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    for path in trees.values():
        for src in pythonpath(path).split(os.pathsep):
            compileall.compile_dir(src, quiet=1)
    emulator, endpoint = spawn()
    work = Path(
        tempfile.mkdtemp(prefix="kmsflow-startup-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    )
    try:
        key = make_key(endpoint)
        (work / "tiny.bin").write_bytes(os.urandom(KIB))
        (work / "empty").mkdir()
        env = {**os.environ, "KMS_EMULATOR_HOST": endpoint, "PYTHONPATH": pythonpath(ROOT)}
        subprocess.run(
            [*argv_for("encrypt", work, key, "x")[:-1], str(work / "tiny.enc")], env=env, check=True
        )
        code = (
            "import sys; from kmsflow.audit import AuditLog; "
            "AuditLog(sys.argv[1], actor='bench').append('disable', sys.argv[2], reason='bench')"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(work / "audit.log"), f"{key}/cryptoKeyVersions/1"],
            env=env,
            check=True,
        )

        rows: list[tuple[str, str, list[str], dict[str, str]]] = []  # (tree, row, argv, env)
        for name, source in IMPORT_ROWS.items():
            rows.append(("-", name, [sys.executable, "-c", source], env))
        for tree, path in trees.items():
            tree_env = {**env, "PYTHONPATH": pythonpath(path)}
            for command in COMMANDS:
                rows.append((tree, command, [], tree_env))

        times: dict[tuple[str, str], list[float]] = {(t, r): [] for t, r, _, _ in rows}
        print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
        for n in range(args.runs):
            order = rows[:]
            random.shuffle(order)
            for tree, row, argv, row_env in order:
                argv = argv or argv_for(row, work, key, f"{tree}-{n}")
                times[(tree, row)].append(timed(argv, row_env))
            clear_outputs(work)
        print(f"load average at end {os.getloadavg()[0]:.1f}; {args.runs} rounds\n")

        base = statistics.median(times[("-", "B: import grpc, tink")])
        print(
            "| process | "
            + " | ".join(f"{t} median s | {t} /B" for t in trees)
            + (" | after/before |" if "before" in trees else "")
        )
        print("|---|" + "---:|---:|" * len(trees) + ("---:|" if "before" in trees else ""))
        for name in IMPORT_ROWS:
            m = statistics.median(times[("-", name)])
            print(f"| `{name}` | {m:.3f} | {m / base:.2f} |" + (" | | |" if "before" in trees else ""))
        for command in COMMANDS:
            cells = []
            meds = {t: statistics.median(times[(t, command)]) for t in trees}
            for t in trees:
                cells.append(f"{meds[t]:.3f} | {meds[t] / base:.2f}")
            ratio = f" {meds['after'] / meds['before']:.2f} |" if "before" in trees else ""
            print(f"| `kmsflow {command}` | " + " | ".join(cells) + " |" + ratio)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
