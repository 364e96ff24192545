"""Benchmark: Encrypt, AsymmetricSign (EC P-256) and Decapsulate (ML-KEM-768) RPCs per second
against the KMS emulator on loopback, through the real client.

Starts ``kmsflow-emulator serve`` (a subprocess by default, as tests and DAGs run it; ``--in-process``
puts the server in this process, sharing its GIL), creates a key of each kind, then for each client
thread count runs Encrypt, AsymmetricSign (a SHA-256 digest) and Decapsulate calls through
``google-cloud-kms`` (default retry settings, one client per thread) for a fixed time. For
comparison it also measures a trivial raw gRPC call (the emulator's Admin
``GetClock``) from this same process: the gap between the two is what the client library and the
KMS handler cost on top of gRPC itself. CPU time per call, client and server side, shows which end
is the bottleneck. Prints a markdown table (see docs/BENCHMARKS.md).

    .venv/bin/python bench/emulator_rpc.py [--duration 5] [--threads 1,16] [--payload 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from cryptography.hazmat.primitives.asymmetric import mlkem
from google.protobuf import struct_pb2

from kmsflow.kms import new_kms_client
from kmsflow_emulator.process import spawn

LOCATION = "projects/kmsflow-bench/locations/us-central1"
GET_CLOCK = "/kmsflow.emulator.v1.Admin/GetClock"

Call = Callable[[], object]


@dataclass
class Result:
    rpc: str
    threads: int
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def cpu_us(self, seconds: float | None) -> str:
        """CPU time per call in microseconds, as a table cell."""
        return f"{seconds / self.calls * 1e6:,.0f}" if seconds is not None and self.calls else "-"


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), or None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_for(
    rpc: str, threads: int, duration: float, make_call: Callable[[], Call], server_pid: int | None = None
) -> Result:
    """Run ``threads`` workers, each calling its own ``make_call()`` in a loop for ``duration`` s."""
    result = Result(rpc, threads)
    lock = threading.Lock()
    calls = [make_call() for _ in range(threads)]
    ready = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(call: Call) -> None:
        latencies: list[float] = []
        errors = 0
        ready.wait()
        while (start := time.perf_counter()) < stop_at[0]:
            try:
                call()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
        with lock:
            result.latencies += latencies
            result.errors += errors

    workers = [threading.Thread(target=work, args=(c,), daemon=True) for c in calls]
    for worker in workers:
        worker.start()
    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    begin = time.perf_counter()
    stop_at[0] = begin + duration
    ready.wait()
    for worker in workers:
        worker.join()
    result.seconds = time.perf_counter() - begin
    result.client_cpu = time.process_time() - client_before
    server_after = cpu_seconds(server_pid)
    if server_before is not None and server_after is not None:
        result.server_cpu = server_after - server_before
    result.calls = len(result.latencies)
    return result


def start_subprocess() -> tuple[str, Callable[[], None], int | None]:
    process, endpoint = spawn()

    def stop() -> None:
        process.terminate()
        process.wait(timeout=10)

    return endpoint, stop, process.pid


def start_in_process() -> tuple[str, Callable[[], None], int | None]:
    from kmsflow_emulator.server import EmulatorServer

    server = EmulatorServer(port=0).start()
    return server.endpoint, server.stop, None


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"load average {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--threads", default="1,16", help="comma-separated client thread counts")
    parser.add_argument("--payload", type=int, default=1024, help="plaintext bytes per Encrypt")
    parser.add_argument("--endpoint", help="use a running emulator at host:port instead of starting one")
    parser.add_argument("--in-process", action="store_true", help="serve from this process (shares the GIL)")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]

    server_pid: int | None = None
    if args.endpoint:
        endpoint, stop = args.endpoint, (lambda: None)
    else:
        endpoint, stop, server_pid = start_in_process() if args.in_process else start_subprocess()
    channels: list[grpc.Channel] = []
    try:
        setup = new_kms_client(endpoint=endpoint)
        ring = setup.create_key_ring(
            request={"parent": LOCATION, "key_ring_id": f"bench-{uuid.uuid4().hex[:8]}", "key_ring": {}}
        ).name
        key = setup.create_crypto_key(
            request={"parent": ring, "crypto_key_id": "bench", "crypto_key": {"purpose": "ENCRYPT_DECRYPT"}}
        ).name
        plaintext = os.urandom(args.payload)
        signer = setup.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": "bench-sign",
                "crypto_key": {
                    "purpose": "ASYMMETRIC_SIGN",
                    "version_template": {"algorithm": "EC_SIGN_P256_SHA256"},
                },
            }
        ).name
        kem = setup.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": "bench-kem",
                "crypto_key": {
                    "purpose": "KEY_ENCAPSULATION",
                    "version_template": {"algorithm": "ML_KEM_768"},
                },
            }
        ).name
        signer_version, kem_version = f"{signer}/cryptoKeyVersions/1", f"{kem}/cryptoKeyVersions/1"
        digest = os.urandom(32)  # a SHA-256 digest, as a caller would send
        # One encapsulation against the served public key; Decapsulate is deterministic per ciphertext.
        kem_public = setup.get_public_key(request={"name": kem_version, "public_key_format": "NIST_PQC"})
        _, encapsulated = mlkem.MLKEM768PublicKey.from_public_bytes(kem_public.public_key.data).encapsulate()

        def encrypt_call() -> Call:
            client = new_kms_client(endpoint=endpoint)  # one client (and channel) per thread
            channels.append(client.transport.grpc_channel)
            return lambda: client.encrypt(request={"name": key, "plaintext": plaintext})

        def sign_call() -> Call:
            client = new_kms_client(endpoint=endpoint)
            channels.append(client.transport.grpc_channel)
            request = {"name": signer_version, "digest": {"sha256": digest}}
            return lambda: client.asymmetric_sign(request=request)

        def decapsulate_call() -> Call:
            client = new_kms_client(endpoint=endpoint)
            channels.append(client.transport.grpc_channel)
            return lambda: client.decapsulate(request={"name": kem_version, "ciphertext": encapsulated})

        def get_clock_call() -> Call:
            channel = grpc.insecure_channel(endpoint)
            channels.append(channel)
            rpc = channel.unary_unary(
                GET_CLOCK,
                request_serializer=struct_pb2.Struct.SerializeToString,
                response_deserializer=struct_pb2.Struct.FromString,
            )
            request = struct_pb2.Struct()
            return lambda: rpc(request, timeout=10)

        # Warm up both paths (channel set-up, first-call imports) before timing anything.
        run_for("warm-up", 2, 0.5, encrypt_call)
        run_for("warm-up", 2, 0.5, get_clock_call)
        run_for("warm-up", 2, 0.5, sign_call)
        run_for("warm-up", 2, 0.5, decapsulate_call)

        results = [
            run_for("Encrypt (google-cloud-kms client)", n, args.duration, encrypt_call, server_pid)
            for n in thread_counts
        ]
        for label, make_call in (
            ("AsymmetricSign EC P-256 (google-cloud-kms client)", sign_call),
            ("Decapsulate ML-KEM-768 (google-cloud-kms client)", decapsulate_call),
        ):
            results += [run_for(label, n, args.duration, make_call, server_pid) for n in thread_counts]
        results += [
            run_for("Admin GetClock (raw gRPC)", n, args.duration, get_clock_call, server_pid)
            for n in thread_counts
        ]
    finally:
        for channel in channels:
            channel.close()
        stop()

    where = "in-process" if args.in_process else ("at " + endpoint if args.endpoint else "subprocess")
    print(
        f"KMS emulator ({where}) on loopback; {machine()}; {args.payload} B Encrypt plaintext; "
        f"{args.duration:g} s per row\n"
    )
    client_label = "bench process" if args.in_process else "client"
    print(
        f"| RPC | client threads | calls | errors | RPC/s | p50 ms | p99 ms "
        f"| {client_label} CPU µs/call | server CPU µs/call |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.rpc} | {r.threads} | {r.calls} | {r.errors} | {r.rate:,.0f} | "
            f"{r.percentile_ms(0.50):.2f} | {r.percentile_ms(0.99):.2f} | "
            f"{r.cpu_us(r.client_cpu)} | {r.cpu_us(r.server_cpu)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
