"""Benchmark: envelope encrypt/decrypt throughput, memory and KMS calls (docs/BENCHMARKS.md).

Measured in one run, on tmpfs (``/dev/shm``) so the disk is not the bottleneck:

1. **Throughput** of a 1 GiB file: ``cp`` of the same file (the baseline, wall time of the
   process), kmsflow encrypt and decrypt (the library call timed inside a fresh worker process:
   the KMS call, hashing, staging and publishing are included; interpreter start-up and imports
   are not: an untimed 1 KiB encrypt + decrypt first loads what kmsflow imports on first use, and
   its time is reported apart), raw Tink streaming AEAD with kmsflow's 256 KiB pieces but nothing
   else (no KMS, no checksum, no staging; also with 1 MiB pieces and the output discarded, for
   comparison), and ``age`` (process wall time) when installed. Each is run ``--runs`` times,
   interleaved, and the median is reported with its ratio to the median ``cp``; the goal
   ratios are also given paired within each run. Every timed step has the same 2 GiB on tmpfs
   (its input and its output): a decrypt runs with the plaintext set aside, and its output,
   checked by CRC32C, becomes the plaintext again.
2. **Peak RSS** of the whole ``kmsflow encrypt``/``decrypt`` CLI process for a 1 MiB and a 1 GiB
   file (``ru_maxrss`` of each child from ``os.wait4``).
3. **KMS calls** for a dataset of ``--files`` small files: a gRPC interceptor on the client's
   channel counts RPCs by method during encrypt and decrypt.

    .venv/bin/python bench/envelope_throughput.py [--size-mib 1024] [--runs 3] [--files 10000]

The KMS emulator is started as a subprocess on loopback (``KMS_EMULATOR_HOST`` semantics).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MiB = 1 << 20
TINK_CHUNK = 256 << 10  # kmsflow.envelope.storage.TINK_CHUNK_SIZE (not imported: Tink rows stay plain)
ROOT = Path(__file__).resolve().parents[1]
LOCATION = "projects/bench/locations/us-central1"


# ----------------------------------------------------------------------------- worker processes


def worker(op: str, src: str, dst: str, endpoint: str, key: str, keyset_file: str) -> None:
    """Run one operation after imports; print its wall time, and the minor page faults and CPU
    seconds (user + system) of the timed step (every thread of this process), as JSON."""
    import resource

    first_call: float | None = None
    threads: dict[str, float] = {}
    if op.startswith("kmsflow"):
        from kmsflow import envelope
        from kmsflow.kms import new_kms_client

        client = new_kms_client(endpoint=endpoint)
        first_call = warm_up(envelope, client, key, Path(dst).parent)
        writer = timed_writer_thread()
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        feeding = time.thread_time()
        if op == "kmsflow-encrypt":
            envelope.encrypt(client, key, src, dst)
        else:
            envelope.decrypt(client, src, dst)
        elapsed = time.perf_counter() - start
        threads = {"feeding": time.thread_time() - feeding, "writing": sum(writer)}
    elif op == "python-copy":  # the floor for any Python tool: 1 MiB reads and writes, nothing else
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while block := fin.read(MiB):
                fout.write(block)
        elapsed = time.perf_counter() - start
    elif op == "crc32c":  # the ciphertext checksum kmsflow records, alone: read + CRC32C
        import google_crc32c

        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        crc = 0
        with open(src, "rb") as fin:
            while block := fin.read(MiB):
                crc = google_crc32c.extend(crc, block)
        elapsed = time.perf_counter() - start
    else:
        import io

        import tink
        from tink import secret_key_access, streaming_aead

        class Null(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                return len(b)

        streaming_aead.register()
        if op.startswith("tink-encrypt"):
            handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
            Path(keyset_file).write_bytes(tink.proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
        else:
            handle = tink.proto_keyset_format.parse(Path(keyset_file).read_bytes(), secret_key_access.TOKEN)
        primitive = handle.primitive(streaming_aead.StreamingAead)
        piece = MiB if op.endswith("-1mib") else TINK_CHUNK
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        with open(src, "rb") as fin:
            fout: Any = Null() if "-null" in op else open(dst, "wb")  # noqa: SIM115
            if op.startswith("tink-encrypt"):
                with primitive.new_encrypting_stream(fout, b"bench") as enc:
                    while block := fin.read(piece):
                        enc.write(block)
            else:
                with primitive.new_decrypting_stream(fin, b"bench") as dec:
                    while block := dec.read(piece):
                        fout.write(block)
            fout.close()
        elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    report = {"seconds": elapsed, "minflt": after.ru_minflt - before.ru_minflt, "cpu": cpu}
    if first_call is not None:
        report["first_call"] = first_call
    report.update(threads)
    print(json.dumps(report))


def timed_writer_thread() -> list[float]:
    """Record the CPU seconds of each write-behind thread from now on (``time.thread_time`` inside
    it); the list they are appended to. The thread feeding Tink and the one writing its output
    share the work of a large file, and which of the two is longer decides the wall time."""
    from kmsflow.envelope import streams

    seconds: list[float] = []
    run = streams.WriteBehind._run

    def timed(self: Any) -> None:
        begin = time.thread_time()
        try:
            run(self)
        finally:
            seconds.append(time.thread_time() - begin)

    streams.WriteBehind._run = timed  # type: ignore[method-assign]
    return seconds


def warm_up(envelope: Any, client: Any, key: str, directory: Path) -> float:
    """Encrypt and decrypt a 1 KiB file once; return how long that took.

    Why: kmsflow imports Tink, the record model and the KMS data path on first use (so that
    ``--help`` and ``inspect`` start fast), so the first call of a process pays ~0.3 s of imports
    that used to be paid at ``import kmsflow``. The in-process rows measure the data path, as they
    always did; the import cost is reported as its own row and is in the whole-process rows."""
    scratch = Path(tempfile.mkdtemp(prefix="warm-", dir=directory))
    try:
        (scratch / "in").write_bytes(os.urandom(1024))
        start = time.perf_counter()
        envelope.encrypt(client, key, str(scratch / "in"), str(scratch / "enc"))
        envelope.decrypt(client, str(scratch / "enc"), str(scratch / "out"))
        return time.perf_counter() - start
    finally:
        shutil.rmtree(scratch)


# ----------------------------------------------------------------------------- orchestration


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``argv``; return (wall seconds, peak RSS in KiB of that child alone, stdout).

    The child's minor page faults (``ru_minflt``) and CPU seconds (user + system), whole process,
    are kept in ``CHILD_FAULTS`` and ``CHILD_CPU``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}): {err.strip()}")
    CHILD_FAULTS.append(int(usage.ru_minflt))
    CHILD_CPU.append(usage.ru_utime + usage.ru_stime)
    return wall, int(usage.ru_maxrss), out


CHILD_FAULTS: list[int] = []
CHILD_CPU: list[float] = []


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    from kmsflow_emulator.process import spawn

    return spawn()


def make_key(endpoint: str) -> str:
    from google.cloud import kms_v1

    from kmsflow.kms import new_kms_client

    client = new_kms_client(endpoint=endpoint)
    ring = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring, "key_ring": {}})
    key = client.create_crypto_key(
        request={
            "parent": f"{LOCATION}/keyRings/{ring}",
            "crypto_key_id": "bench",
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    )
    return str(key.name)


def random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MiB))
            f.write(block)
            left -= len(block)


def file_crc32c(path: Path) -> int:
    import google_crc32c

    crc = 0
    with open(path, "rb") as f:
        while block := f.read(MiB):
            crc = google_crc32c.extend(crc, block)
    return int(crc)


def restore(decrypted: Path, src: Path, crc: int) -> None:
    """Make a decrypted output the plaintext again, after checking it is exactly that."""
    if file_crc32c(decrypted) != crc:
        raise SystemExit(f"{decrypted}: decrypted output differs from the plaintext")
    decrypted.rename(src)


def remove(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        side = Path(f"{p}.kmsflow.json")
        if side.exists():
            side.unlink()


FAULTS: dict[str, list[float]] = {}
"""Minor page faults per MiB of input, per row of :func:`throughput`, one entry per run."""
CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system, all threads) of the timed step, per row, one entry per run."""
THREADS: dict[str, list[tuple[float, float]]] = {}
"""CPU seconds of kmsflow's two busy threads in the timed step, per row, one (feeding Tink,
writing behind) pair per run."""
FIRST_CALL: dict[str, list[float]] = {}
"""Seconds of a worker's untimed first call (1 KiB encrypt + decrypt: imports on first use)."""


def throughput(work: Path, size: int, runs: int, endpoint: str, key: str) -> dict[str, list[float]]:
    src, enc, dec = work / "big.bin", work / "big.enc", work / "big.out"
    keyset, tenc, tdec = work / "tink.keyset", work / "big.tink", work / "big.tink.out"
    aenc, adec, akey = work / "big.age", work / "big.age.out", work / "age.key"
    random_file(src, size)
    crc = file_crc32c(src)
    have_age = shutil.which("age") is not None and shutil.which("age-keygen") is not None
    recipient = ""
    if have_age:
        subprocess.run(["age-keygen", "-o", str(akey)], check=True, capture_output=True)
        recipient = subprocess.run(
            ["age-keygen", "-y", str(akey)], check=True, capture_output=True, text=True
        ).stdout.strip()
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    times: dict[str, list[float]] = {}

    def timed(name: str, argv: list[str], from_stdout: bool) -> None:
        wall, _, out = run_child(argv)
        times.setdefault(name, []).append(json.loads(out)["seconds"] if from_stdout else wall)
        # Minor faults per MiB of input: a fresh tmpfs page faults once per 4 KiB on first touch
        # (256 per MiB) unless tmpfs hands out huge pages; buffers the tool allocates and frees
        # again fault again when malloc returns them to the kernel. Workers report their timed
        # step only; cp (and age) the whole process, which for them is the step.
        report = json.loads(out) if from_stdout else {"minflt": CHILD_FAULTS[-1], "cpu": CHILD_CPU[-1]}
        FAULTS.setdefault(name, []).append(report["minflt"] / (size / MiB))
        CPU.setdefault(name, []).append(report["cpu"])
        if "writing" in report:
            THREADS.setdefault(name, []).append((report["feeding"], report["writing"]))
        if "first_call" in report:
            FIRST_CALL.setdefault(name, []).append(report["first_call"])

    for _ in range(runs):
        timed("cp", ["cp", str(src), str(work / "big.cp")], False)
        remove(work / "big.cp")
        timed("kmsflow encrypt", [*me, "kmsflow-encrypt", str(src), str(enc), endpoint, key, ""], True)
        # Every decrypt runs with its input alone on tmpfs, as every cp and encrypt does (2 GiB in
        # all): the plaintext is set aside and the decrypted output becomes it again, checked by
        # its CRC32C. Writing a third GiB into tmpfs is often several times slower on this VM
        # (docs/BENCHMARKS.md, "Noise"), which would measure the VM, not the tool. The untimed cp
        # gives decrypt what every other timed step gets: the GiB just freed by the step before.
        remove(src)
        subprocess.run(["cp", str(enc), str(work / "big.cp")], check=True)
        remove(work / "big.cp")
        timed("kmsflow decrypt", [*me, "kmsflow-decrypt", str(enc), str(dec), endpoint, key, ""], True)
        restore(dec, src, crc)
        remove(enc)
        timed("tink encrypt", [*me, "tink-encrypt", str(src), str(tenc), endpoint, key, str(keyset)], True)
        remove(src)
        timed("tink decrypt", [*me, "tink-decrypt", str(tenc), str(tdec), endpoint, key, str(keyset)], True)
        restore(tdec, src, crc)
        timed(
            "tink decrypt, no output",
            [*me, "tink-decrypt-null", str(tenc), "", endpoint, key, str(keyset)],
            True,
        )
        timed(
            "tink decrypt, no output, 1 MiB pieces",
            [*me, "tink-decrypt-null-1mib", str(tenc), "", endpoint, key, str(keyset)],
            True,
        )
        remove(tenc)
        timed(
            "tink encrypt, no output",
            [*me, "tink-encrypt-null", str(src), "", endpoint, key, str(keyset)],
            True,
        )
        timed(
            "tink encrypt, no output, 1 MiB pieces",
            [*me, "tink-encrypt-null-1mib", str(src), "", endpoint, key, str(keyset)],
            True,
        )
        timed(
            "python copy loop", [*me, "python-copy", str(src), str(work / "big.py"), endpoint, key, ""], True
        )
        remove(work / "big.py")
        timed("read + crc32c", [*me, "crc32c", str(src), "", endpoint, key, ""], True)
        if have_age:
            timed("age encrypt", ["age", "-r", recipient, "-o", str(aenc), str(src)], False)
            remove(src)
            timed("age decrypt", ["age", "-d", "-i", str(akey), "-o", str(adec), str(aenc)], False)
            restore(adec, src, crc)
            remove(aenc)
    remove(src, keyset, akey)
    return times


def peak_rss(work: Path, endpoint: str, key: str, sizes: list[int]) -> list[tuple[int, str, int]]:
    kmsflow = str(Path(sys.executable).with_name("kmsflow"))
    env = {**os.environ, "KMS_EMULATOR_HOST": endpoint}
    rows = []
    for size in sizes:
        src, enc, dec = work / f"rss-{size}.bin", work / f"rss-{size}.enc", work / f"rss-{size}.out"
        random_file(src, size)
        _, rss_e, _ = run_child([kmsflow, "encrypt", "--key", key, str(src), str(enc)], env)
        _, rss_d, _ = run_child([kmsflow, "decrypt", str(enc), str(dec)], env)
        rows += [(size, "encrypt", rss_e), (size, "decrypt", rss_d)]
        remove(src, enc, dec)
    return rows


def kms_calls(work: Path, endpoint: str, key: str, files: int) -> dict[str, Any]:
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms_v1
    from google.cloud.kms_v1.services.key_management_service.transports import (
        KeyManagementServiceGrpcTransport,
    )

    from kmsflow import envelope
    from kmsflow.kms.client import emulator_channel

    class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.calls: Counter[str] = Counter()

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            self.calls[details.method.rsplit("/", 1)[-1]] += 1
            return continuation(details, request)

    counter = Count()
    channel = grpc.intercept_channel(emulator_channel(endpoint), counter)
    transport = KeyManagementServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    client = kms_v1.KeyManagementServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=endpoint)
    )
    src = work / "many"
    for i in range(files):
        d = src / f"part-{i // 1000:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"shard-{i:06d}.bin").write_bytes(os.urandom(1024))
    start = time.perf_counter()
    envelope.encrypt(client, key, str(src), str(work / "many.enc"))
    enc_s = time.perf_counter() - start
    enc_calls = dict(counter.calls)
    counter.calls.clear()
    start = time.perf_counter()
    envelope.decrypt(client, str(work / "many.enc"), str(work / "many.out"))
    dec_s = time.perf_counter() - start
    dec_calls = dict(counter.calls)
    remove(src, work / "many.enc", work / "many.out")
    return {"files": files, "encrypt": enc_calls, "decrypt": dec_calls, "enc_s": enc_s, "dec_s": dec_s}


def machine() -> str:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (
        f"nproc={os.cpu_count()}, CPU {model!r}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average at start {load[0]:.1f}, "
        f"tmpfs huge pages: {tmpfs_huge_pages()}"
    )


def tmpfs_huge_pages() -> str:
    """Whether tmpfs may back files with huge pages (fewer first-touch faults): the system-wide
    ``shmem_enabled`` setting and the ``huge=`` option of the ``/dev/shm`` mount."""
    try:
        setting = Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read_text().strip()
    except OSError:
        setting = "unknown"
    options = "default"
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 3 and fields[1] == "/dev/shm":
                options = next((o for o in fields[3].split(",") if o.startswith("huge=")), "huge=never")
    return f"shmem_enabled {setting!r}, /dev/shm {options}"


@contextlib.contextmanager
def session(directory: str) -> Iterator[tuple[str, str, Path]]:
    """Print the machine; yield the emulator's endpoint, a fresh key and a scratch directory under
    ``directory``; remove the directory and stop the emulator afterwards, however the run ended."""
    print(f"machine: {machine()}")
    emulator, endpoint = start_emulator()
    work = Path(tempfile.mkdtemp(prefix="kmsflow-bench-", dir=directory))
    try:
        yield endpoint, make_key(endpoint), work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        emulator.terminate()
        emulator.wait(timeout=10)


def print_medians(times: dict[str, list[float]], size_mib: int, first: str) -> None:
    """One markdown row per step: median seconds, MiB/s, its ratio to the median ``cp``, every run."""
    cp = statistics.median(times["cp"])
    print(f"| {first} | median s | MiB/s | ratio to cp | all runs (s) |")
    print("|---|---:|---:|---:|---|")
    for name, values in times.items():
        med = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {med:.2f} | {size_mib / med:,.0f} | {cp / med:.2f}x | {runs} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--worker", nargs=6, metavar=("OP", "SRC", "DST", "ENDPOINT", "KEY", "KEYSET"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    with session(args.dir) as (endpoint, key, work):
        size = args.size_mib * MiB
        times = throughput(work, size, args.runs, endpoint, key)
        print(f"\n### Throughput, {args.size_mib} MiB file on {args.dir}, median of {args.runs}\n")
        print_medians(times, args.size_mib, "tool")
        if "age encrypt" not in times:
            print("\n`age` is not installed: no age rows.")
        print("\n### Goal ratios, paired within each run (median of the per-run ratios)\n")
        for label, base, tool in (
            ("encrypt vs cp", "cp", "kmsflow encrypt"),
            ("decrypt vs cp", "cp", "kmsflow decrypt"),
        ):
            ratios = [b / t for b, t in zip(times[base], times[tool], strict=True)]
            spread = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"* {label}: **{statistics.median(ratios):.2f}x** ({spread})")
        print(
            "\nThe ceiling on this host: Tink's AES-GCM alone, in memory, its output discarded (no "
            "read, no write, no checksum), against the same `cp`. Nothing that runs Tink's streaming "
            "AEAD (one segment after another, on one core) passes it, and it moves with the CPU's "
            "AES-GCM speed while `cp` (a copy in the kernel) does not, which is what makes the ratio "
            "differ from host to host:\n"
        )
        for label, tool in (("encrypt", "tink encrypt, no output"), ("decrypt", "tink decrypt, no output")):
            ratios = [b / t for b, t in zip(times["cp"], times[tool], strict=True)]
            spread = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"* {label} ceiling: **{statistics.median(ratios):.2f}x** ({spread})")

        print(
            "\n### Minor page faults per MiB of input and CPU seconds of the timed step (medians; "
            "256 faults/MiB = one per fresh 4 KiB page)\n"
        )
        print("| tool | faults/MiB | all runs | CPU s (user + sys) | all runs |")
        print("|---|---:|---|---:|---|")
        for name, values in FAULTS.items():
            spread = ", ".join(f"{v:.0f}" for v in values)
            cpu = ", ".join(f"{v:.2f}" for v in CPU[name])
            print(
                f"| {name} | {statistics.median(values):.0f} | {spread} "
                f"| {statistics.median(CPU[name]):.2f} | {cpu} |"
            )
        print(
            "\nCPU seconds per thread of kmsflow's timed step: the main thread (reads, Tink) and the "
            "write-behind thread (writes, and the CRC32C on encrypt); the longer decides the wall time:\n"
        )
        for name, pairs in THREADS.items():
            spread = ", ".join(f"{f:.2f} / {w:.2f}" for f, w in pairs)
            print(f"* {name}: main / writing {spread}")
        print(
            "\nFirst call in each worker, untimed (1 KiB encrypt + decrypt; Tink, the record model and "
            "the KMS data path are imported on first use):"
        )
        for name, values in FIRST_CALL.items():
            spread = ", ".join(f"{v:.2f}" for v in values)
            print(f"* {name} worker: median {statistics.median(values):.2f} s ({spread})")

        print("\n### Peak RSS of the whole `kmsflow` CLI process\n")
        print("| file | operation | peak RSS MiB |")
        print("|---|---|---:|")
        for fsize, op, rss in peak_rss(work, endpoint, key, [MiB, size]):
            print(f"| {fsize // MiB} MiB | {op} | {rss / 1024:.1f} |")

        calls = kms_calls(work, endpoint, key, args.files)
        print(f"\n### KMS calls for a {calls['files']:,}-file dataset (1 KiB files)\n")
        print("| operation | KMS RPCs | wall s | files/s |")
        print("|---|---|---:|---:|")
        for op, s in (("encrypt", calls["enc_s"]), ("decrypt", calls["dec_s"])):
            print(f"| {op} | {calls[op]} | {s:.1f} | {calls['files'] / s:,.0f} |")


if __name__ == "__main__":
    main()
