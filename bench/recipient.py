"""Benchmark: recipient (public-key) envelopes against symmetric ones (docs/BENCHMARKS.md).

Measured in one process, against ``kmsflow-emulator`` started as a subprocess on loopback:

1. **Throughput** of one file of ``--size-mib`` on tmpfs (``/dev/shm``): encrypt and decrypt of the
   same file as a symmetric envelope (KMS Encrypt/Decrypt: the baseline) and as recipient envelopes
   for RSA-OAEP-3072-SHA256, ML-KEM-768 and X-Wing keys (local wrap; AsymmetricDecrypt/Decapsulate), each
   ``--runs`` times interleaved; medians and ratios to the symmetric median. Library calls
   (``encrypt``, ``encrypt_for``, ``decrypt``) timed in this process; outputs removed between runs.
2. **Wrap/unwrap cost per envelope**: ``--iterations`` wraps and unwraps of one serialized Tink
   keyset per algorithm: symmetric wrap = one KMS Encrypt RPC, recipient wrap = local (no RPC);
   symmetric unwrap = one KMS Decrypt, recipient unwrap = one AsymmetricDecrypt/Decapsulate RPC +
   HKDF + AES-GCM. Median and p90 per operation.

    .venv/bin/python bench/recipient.py [--size-mib 256] [--runs 5] [--iterations 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kmsflow import envelope
from kmsflow.envelope import recipient, wrap
from kmsflow.envelope.encrypt import encrypt_for, new_envelope_id
from kmsflow.envelope.keyset import DataKey
from kmsflow.kms import new_kms_client
from kmsflow.kms.public_key import PublicKey, fetch_public_key
from kmsflow_emulator.process import spawn

LOCATION = "projects/kmsflow-bench/locations/us-central1"
RECIPIENTS = {
    "RSA-OAEP-3072-SHA256": ("ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_3072_SHA256"),
    "ML-KEM-768": ("KEY_ENCAPSULATION", "ML_KEM_768"),
    "X-Wing": ("KEY_ENCAPSULATION", "KEM_XWING"),
}


def make_keys(client: Any) -> tuple[str, dict[str, PublicKey]]:
    ring = f"{LOCATION}/keyRings/bench-{uuid.uuid4().hex[:8]}"
    client.create_key_ring(
        request={"parent": LOCATION, "key_ring_id": ring.rsplit("/", 1)[1], "key_ring": {}}
    )
    symmetric = client.create_crypto_key(
        request={"parent": ring, "crypto_key_id": "sym", "crypto_key": {"purpose": "ENCRYPT_DECRYPT"}}
    ).name
    publics: dict[str, PublicKey] = {}
    for label, (purpose, algorithm) in RECIPIENTS.items():
        key = client.create_crypto_key(
            request={
                "parent": ring,
                "crypto_key_id": algorithm.lower().replace("_", "-"),
                "crypto_key": {"purpose": purpose, "version_template": {"algorithm": algorithm}},
            }
        ).name
        version = f"{key}/cryptoKeyVersions/1"
        deadline = time.monotonic() + 60
        while client.get_crypto_key_version(name=version).state.name != "ENABLED":
            if time.monotonic() > deadline:
                raise SystemExit(f"{version} never became ENABLED")
            time.sleep(0.05)
        publics[label] = fetch_public_key(client, version)
    return symmetric, publics


def throughput(client: Any, symmetric: str, publics: dict[str, PublicKey], size_mib: int, runs: int) -> None:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(tempfile.mkdtemp(prefix="kmsflow-bench-", dir=shm))
    src, enc, out = work / "model.bin", work / "enc", work / "out"
    try:
        with open(src, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        encrypts: dict[str, list[float]] = {"symmetric": [], **{k: [] for k in publics}}
        decrypts: dict[str, list[float]] = {k: [] for k in encrypts}
        for _ in range(runs):
            for label in encrypts:
                start = time.perf_counter()
                if label == "symmetric":
                    envelope.encrypt(client, symmetric, str(src), str(enc))
                else:
                    encrypt_for(publics[label], str(src), str(enc))
                encrypts[label].append(time.perf_counter() - start)
                start = time.perf_counter()
                envelope.decrypt(client, str(enc), str(out))
                decrypts[label].append(time.perf_counter() - start)
                for p in (enc, Path(f"{enc}.kmsflow.json"), out):
                    p.unlink()
        base_e, base_d = statistics.median(encrypts["symmetric"]), statistics.median(decrypts["symmetric"])
        print(f"\n### Throughput, {size_mib} MiB file, {runs} runs (median)\n")
        print("| envelope | encrypt s | MiB/s | vs symmetric | decrypt s | MiB/s | vs symmetric |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label in encrypts:
            e, d = statistics.median(encrypts[label]), statistics.median(decrypts[label])
            print(
                f"| {label} | {e:.3f} | {size_mib / e:,.0f} | {base_e / e:.2f}x | "
                f"{d:.3f} | {size_mib / d:,.0f} | {base_d / d:.2f}x |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def per_envelope(client: Any, symmetric: str, publics: dict[str, PublicKey], iterations: int) -> None:
    keyset = DataKey.generate().serialize()
    rows: list[tuple[str, list[float], list[float]]] = []
    sym_wrap, sym_unwrap = [], []
    for _ in range(iterations):
        eid = new_envelope_id()
        start = time.perf_counter()
        made = wrap.key_wrap(wrap.wrap_keyset(client, symmetric, keyset, eid))
        sym_wrap.append(time.perf_counter() - start)
        start = time.perf_counter()
        wrap.unwrap_keyset(client, made, eid, "bench")
        sym_unwrap.append(time.perf_counter() - start)
    rows.append(("symmetric (KMS Encrypt / Decrypt)", sym_wrap, sym_unwrap))
    for label, public in publics.items():
        wraps, unwraps = [], []
        for _ in range(iterations):
            eid = new_envelope_id()
            start = time.perf_counter()
            wrapped = recipient.wrap_keyset(public, keyset, eid)
            wraps.append(time.perf_counter() - start)
            start = time.perf_counter()
            unwrapped = recipient.unwrap_keyset(client, wrapped, eid, "bench")
            unwraps.append(time.perf_counter() - start)
            assert unwrapped == keyset
        rows.append((f"{label} (local / KMS + HKDF + GCM)", wraps, unwraps))

    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f}"

    print(f"\n### Wrap and unwrap per envelope, {iterations} each (ms: median / p90)\n")
    print("| wrap | wrap ms | unwrap ms |")
    print("|---|---:|---:|")
    for label, wraps, unwraps in rows:
        print(f"| {label} | {ms(wraps, 0.5)} / {ms(wraps, 0.9)} | {ms(unwraps, 0.5)} / {ms(unwraps, 0.9)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    process, endpoint = spawn()
    try:
        with new_kms_client(endpoint=endpoint) as client:
            symmetric, publics = make_keys(client)
            print(
                f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
                f"load {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
                file=sys.stderr,
            )
            per_envelope(client, symmetric, publics, args.iterations)
            throughput(client, symmetric, publics, args.size_mib, args.runs)
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
