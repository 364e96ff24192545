"""Benchmark: rewrap and inventory at scale, against the KMS emulator on loopback.

Three measurements (results in docs/BENCHMARKS.md, section "Rewrap and inventory"):

1. **Rewrap vs bare KMS round trips.** N real envelopes (1 KiB each, made with
   ``kmsflow.envelope.encrypt``) are wrapped under version 1; the key is rotated. Then, with the
   same client and the same thread count: the bare cost -- one KMS Decrypt + one KMS Encrypt per
   envelope with ``kmsflow.kms.crypto``, records preloaded in memory, nothing written -- and the
   real ``rewrap`` (record read, parse, manifest check and re-seal, compare-and-swap write, fsyncs).
   The ratio bare/rewrap is the share of the KMS-bound ceiling rewrap reaches (goal >= 0.7).
   The inventory scan is timed separately and reported with and without it.
2. **Artifact size does not matter.** Rewrap of 1 KiB envelopes vs 100 MiB envelopes (same count,
   repeated after a fresh rotation each round, median reported): data is never read, so equal.
3. **Inventory of many envelopes.** Records are synthesized cheaply: one real record is copied
   with a different envelope id per copy, beside a sparse data file of the recorded ciphertext size
   (inventory reads only records and the listing; it never authenticates data or manifests).

Everything is written under ``--dir`` (default ``/dev/shm``, as for the envelope benchmark: the
figures are about kmsflow, not about the VM's disk; ``--dir /tmp`` measures a disk as well).

    .venv/bin/python bench/rewrap.py [--envelopes 10000] [--workers 16] [--passes 1] [--big-mib 100]
                                     [--sizes-count 3] [--rounds 5] [--inventory 100000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import KeyManagementServiceGrpcTransport

from kmsflow.envelope import encrypt
from kmsflow.envelope.aad import keyset_aad
from kmsflow.envelope.record import EnvelopeRecord
from kmsflow.inventory import scan
from kmsflow.inventory.mounts import filesystem_type
from kmsflow.kms import crypto, new_kms_client, resources
from kmsflow.kms.client import emulator_channel
from kmsflow.kms.dataplane import data_client
from kmsflow.lifecycle import rewrap
from kmsflow_emulator.process import spawn

LOCATION = "projects/kmsflow-bench/locations/us-central1"
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    return spawn()


def make_key(client: kms_v1.KeyManagementServiceClient) -> str:
    ring_id = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring_id, "key_ring": {}})
    key = client.create_crypto_key(
        request={
            "parent": f"{LOCATION}/keyRings/{ring_id}",
            "crypto_key_id": "data",
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    )
    return str(key.name)


def make_envelopes(
    client: kms_v1.KeyManagementServiceClient,
    key: str,
    work: Path,
    root: Path,
    count: int,
    size: int,
    workers: int,
) -> list[EnvelopeRecord]:
    src = work / f"plain-{size}"
    with open(src, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            f.write(block)
            remaining -= len(block)
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        return list(
            pool.map(lambda i: encrypt(client, key, str(src), str(root / f"e{i:06}.enc")), range(count))
        )


def bare_round_trips(
    client: kms_v1.KeyManagementServiceClient, records: list[EnvelopeRecord], workers: int
) -> None:
    """What rewrap cannot avoid: one Decrypt + one Encrypt per envelope, nothing else, through the
    same path rewrap's calls take (``envelope.wrap``: the lean client over ``client``'s channel)."""
    lean = data_client(client)

    def one(record: EnvelopeRecord) -> None:
        aad = keyset_aad(record.envelope_id)
        keyset = crypto.decrypt(lean, record.key.crypto_key, record.key.wrapped_bytes(), aad)
        crypto.encrypt(lean, record.key.crypto_key, keyset, aad)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, records))


def row(step: str, seconds: float, n: int, ratio: str = "") -> str:
    return f"| {step} | {seconds:.2f} s | {seconds / n * 1e3:.3f} ms | {n / seconds:.0f} | {ratio} |"


def bench_ratio(client: kms_v1.KeyManagementServiceClient, work: Path, args: argparse.Namespace) -> list[str]:
    return passes(lambda root: ratio(client, root, args.envelopes, args, ""), work / "ratio", args.passes)


def bench_rtt(client: kms_v1.KeyManagementServiceClient, work: Path, args: argparse.Namespace) -> list[str]:
    """The same comparison with a simulated network round trip on every KMS call (real Cloud KMS)."""
    slow = delayed_client(args.endpoint, args.rtt_ms / 1000)
    note = f" Every KMS call delayed by {args.rtt_ms} ms in a client interceptor (simulated RTT)."
    return passes(lambda root: ratio(slow, root, args.rtt_envelopes, args, note), work / "rtt", args.passes)


def passes(one: Callable[[Path], tuple[list[str], float]], work: Path, count: int) -> list[str]:
    """``count`` passes of a ratio measurement, each on fresh envelopes and a fresh key, then the
    median: on this noisy 2-vCPU VM one pass spreads by +-0.03, so the verdict is the median."""
    lines: list[str] = []
    ratios: list[float] = []
    work.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pass_lines, value = one(work / f"pass-{i}")
        shutil.rmtree(work / f"pass-{i}")
        lines += ([f"Pass {i + 1} of {count}.", ""] if count > 1 else []) + pass_lines + [""]
        ratios.append(value)
    if count > 1:
        each = ", ".join(f"{r:.2f}" for r in ratios)
        lines.append(
            f"Rewrap vs bare over {count} passes: {each}; **median {statistics.median(ratios):.2f}** "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})."
        )
    return lines


class Delay(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Sleeps before each unary call: a stand-in for the network latency of real Cloud KMS."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        time.sleep(self.seconds)
        return continuation(details, request)


def delayed_client(endpoint: str, seconds: float) -> kms_v1.KeyManagementServiceClient:
    channel = grpc.intercept_channel(emulator_channel(endpoint), Delay(seconds))
    transport = KeyManagementServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return kms_v1.KeyManagementServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
    )


def ratio(
    client: kms_v1.KeyManagementServiceClient, root: Path, count: int, args: argparse.Namespace, note: str
) -> tuple[list[str], float]:
    """One pass: the table for ``count`` new envelopes under ``root``, and bare/rewrap."""
    key = make_key(client)
    work = root.parent
    records, made_s = timed(lambda: make_envelopes(client, key, work, root, count, 1024, 16))
    resources.rotate(client, key)
    inv, scan_s = timed(lambda: scan([str(root)], max_workers=args.workers))
    by_id = {r.envelope_id: r for r in records}
    bare_round_trips(client, records[:500], args.workers)  # warm up channel, threads and emulator
    # Interleave bare and rewrap over blocks of the same envelopes, so that load from anything else
    # on the machine hits both about equally.
    bare_s = rewrap_s = 0.0
    cpu = {"bare": [0.0, 0.0], "rewrap": [0.0, 0.0]}  # [client CPU s, emulator CPU s]
    step = -(-len(inv.envelopes) // args.blocks)
    for start in range(0, len(inv.envelopes), step):
        block = inv.envelopes[start : start + step]
        wrapped = [by_id[r.envelope_id] for r in block]
        (_, seconds), used = cpu_of(
            args.emulator_pid,
            lambda wrapped=wrapped: timed(lambda: bare_round_trips(client, wrapped, args.workers)),
        )  # type: ignore[misc]
        bare_s += seconds
        cpu["bare"] = [a + b for a, b in zip(cpu["bare"], used, strict=True)]
        part = dataclasses.replace(inv, envelopes=block)
        (report, seconds), used = cpu_of(
            args.emulator_pid,
            lambda part=part: timed(lambda: rewrap(client, [], inventory=part, max_workers=args.workers)),
        )  # type: ignore[misc]
        assert report.ok and report.rewrapped == len(block), report.to_dict()
        rewrap_s += seconds
        cpu["rewrap"] = [a + b for a, b in zip(cpu["rewrap"], used, strict=True)]
    again, noop_s = timed(lambda: rewrap(client, [str(root)], max_workers=args.workers))
    assert again.already_current == count
    n = count
    return [
        f"Envelopes: {n} x 1 KiB (made in {made_s:.1f} s); threads: {args.workers}; one client; "
        f"bare and rewrap interleaved over {args.blocks} blocks; load average before: {load()}.{note}",
        "",
        "| step | time | per envelope | envelopes/s | ratio bare/step |",
        "|---|---:|---:|---:|---:|",
        row("bare KMS Decrypt+Encrypt", bare_s, n, "1.00"),
        row("rewrap (inventory given)", rewrap_s, n, f"**{bare_s / rewrap_s:.2f}**"),
        row("inventory scan of the root", scan_s, n),
        row("scan + rewrap", scan_s + rewrap_s, n, f"{bare_s / (scan_s + rewrap_s):.2f}"),
        row("second rewrap of the root (no-op)", noop_s, n),
        "",
        "CPU per envelope (load-independent): "
        + "; ".join(
            f"{name}: client {c / n * 1e3:.2f} ms + emulator {e / n * 1e3:.2f} ms"
            for name, (c, e) in cpu.items()
        )
        + ".",
    ], bare_s / rewrap_s


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(emulator_pid: int, fn: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """Run ``fn``; return its value and (this process's CPU, the emulator's CPU) it used."""
    c0, e0 = time.process_time(), process_cpu(emulator_pid)
    value = fn()
    return value, (time.process_time() - c0, process_cpu(emulator_pid) - e0)


def load() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def bench_sizes(client: kms_v1.KeyManagementServiceClient, work: Path, args: argparse.Namespace) -> list[str]:
    key = make_key(client)
    small, big = work / "small", work / "big"
    make_envelopes(client, key, work, small, args.sizes_count, 1024, 2)
    _, made_big_s = timed(
        lambda: make_envelopes(client, key, work, big, args.sizes_count, args.big_mib << 20, 2)
    )
    times: dict[str, list[float]] = {"1 KiB": [], f"{args.big_mib} MiB": []}
    for _ in range(args.rounds):
        resources.rotate(client, key)
        for label, root in (("1 KiB", small), (f"{args.big_mib} MiB", big)):
            report, seconds = timed(lambda root=root: rewrap(client, [str(root)], max_workers=args.workers))  # type: ignore[misc]
            assert report.ok and report.rewrapped == args.sizes_count, report.to_dict()
            times[label].append(seconds)
    lines = [
        f"{args.sizes_count} envelopes per size; {args.rounds} rounds (rotate, then rewrap each root; "
        f"scan of the root included); making the big ones took {made_big_s:.1f} s.",
        "",
        "| artifact size | median rewrap of the root | min | max |",
        "|---|---:|---:|---:|",
    ]
    for label, values in times.items():
        lines.append(
            f"| {label} | {statistics.median(values) * 1e3:.1f} ms | {min(values) * 1e3:.1f} ms "
            f"| {max(values) * 1e3:.1f} ms |"
        )
    shutil.rmtree(big)
    return lines


def synthesize_envelopes(
    client: kms_v1.KeyManagementServiceClient, work: Path, count: int
) -> tuple[str, Path, float]:
    """``count`` envelopes under ``work/inventory`` in directories of 1,000: one real record copied
    with a new envelope id each, beside a sparse data file. (key, root, seconds to write them)."""
    key = make_key(client)
    seed_root = work / "seed"
    (record,) = make_envelopes(client, key, work, seed_root, 1, 1024, 1)
    template = record.to_json().decode()
    root = work / "inventory"

    def write(i: int) -> None:
        d = root / f"d{i // 1000:03}"
        data = d / f"e{i:06}.enc"
        new_id = uuid.uuid4().hex
        (d / f"e{i:06}.enc.kmsflow.json").write_text(template.replace(record.envelope_id, new_id))
        with open(data, "wb") as f:
            f.truncate(record.ciphertext_size)  # sparse: inventory only compares the listed size

    for i in range(0, count, 1000):
        (root / f"d{i // 1000:03}").mkdir(parents=True)
    _, made_s = timed(lambda: [write(i) for i in range(count)])
    return key, root, made_s


def bench_inventory(
    client: kms_v1.KeyManagementServiceClient, work: Path, args: argparse.Namespace
) -> list[str]:
    _, root, made_s = synthesize_envelopes(client, work, args.inventory)
    lines = [
        f"{args.inventory} synthetic envelopes in {args.inventory // 1000} directories (written in "
        f"{made_s:.1f} s): one real record copied with a new envelope id each, beside a sparse data file.",
        "",
        "| threads | scan time | records/s | complete |",
        "|---:|---:|---:|---|",
    ]
    for workers in (args.workers, 4):
        inv, seconds = timed(lambda workers=workers: scan([str(root)], max_workers=workers))  # type: ignore[misc]
        assert len(inv.envelopes) == args.inventory, inv.findings[:3]
        lines.append(f"| {workers} | {seconds:.2f} s | {args.inventory / seconds:.0f} | {inv.complete} |")
    return lines


def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envelopes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--passes", type=int, default=1, help="ratio/rtt passes; the median is the verdict")
    parser.add_argument("--rtt-ms", type=float, default=10.0)
    parser.add_argument("--rtt-envelopes", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=100)
    parser.add_argument("--sizes-count", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inventory", type=int, default=100_000)
    parser.add_argument("--only", choices=["ratio", "rtt", "sizes", "inventory"], action="append")
    parser.add_argument("--dir", default="/dev/shm", help="where envelopes are written (default /dev/shm)")
    args = parser.parse_args(argv)
    proc, endpoint = start_emulator()
    args.endpoint = endpoint
    args.emulator_pid = proc.pid
    client = new_kms_client(endpoint=endpoint)
    out: list[str] = [
        f"Machine: {machine()}; KMS emulator in a subprocess on loopback; envelopes under {args.dir} "
        f"({filesystem_type(args.dir)}); load {load()}.",
        "",
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="kmsflow-bench-", dir=args.dir) as tmp:
            work = Path(tmp)
            benches: dict[str, Any] = {
                "ratio": bench_ratio,
                "rtt": bench_rtt,
                "sizes": bench_sizes,
                "inventory": bench_inventory,
            }
            for name in args.only or list(benches):
                lines, seconds = timed(lambda name=name: benches[name](client, work, args))  # type: ignore[misc]
                out += [f"### {name} ({seconds:.0f} s)", "", *lines, ""]
                print("\n".join(out[-len(lines) - 3 :]), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
