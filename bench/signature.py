"""Benchmark: what signing costs per envelope, per algorithm, against the KMS emulator on loopback.

Per algorithm, in one process, interleaved round by round so that load on the machine hits both
alike (median of ``--rounds``):

* **encrypt** of a small file (``--size`` bytes) without signing: the baseline;
* **encrypt --sign-with** of the same file: baseline + GetPublicKey (cached after the first) +
  statement + one AsymmetricSign + the local check of the returned signature;
* **verify --signer** offline with the public key (no KMS call): signature, statement, SHA-256 of
  the ciphertext;
* **sign** of an existing envelope (``kmsflow sign``: KMS Decrypt, every byte authenticated and
  hashed, AsymmetricSign);
* the bare **AsymmetricSign RPC** (same client, an 88-byte message): the share of the signing
  cost that is the KMS call (the emulator's, here), not kmsflow.

And once, the streaming cost of the ciphertext SHA-256 on a large file (``--big-mib``): encrypt
throughput unsigned vs signed (the digest runs on the write-behind thread).

Everything is written under ``--dir`` (default ``/dev/shm``: the figures are about kmsflow, not the
disk). Results: docs/BENCHMARKS.md, "Signed envelopes".

    .venv/bin/python bench/signature.py [--envelopes 50] [--rounds 3] [--size 1024] [--big-mib 256]
                                        [--algorithms EC_SIGN_P256_SHA256,...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from envelope_throughput import LOCATION, make_key, random_file

from kmsflow.envelope import Envelope, encrypt, sign_envelope, verify_signature
from kmsflow.envelope.signature import DIGESTS
from kmsflow.kms import new_kms_client
from kmsflow.kms.public_key import PublicKey, fetch_public_key
from kmsflow_emulator.process import spawn

ALGORITHMS = (
    "EC_SIGN_P256_SHA256",
    "EC_SIGN_P384_SHA384",
    "RSA_SIGN_PSS_2048_SHA256",
    "RSA_SIGN_PSS_3072_SHA256",
    "PQ_SIGN_ML_DSA_65",
)


Step = Callable[[int], object]


def make_signing_key(client: object, algorithm: str) -> str:
    ring = f"bench-sign-{uuid.uuid4().hex[:8]}"
    client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring, "key_ring": {}})  # type: ignore[attr-defined]
    key = client.create_crypto_key(  # type: ignore[attr-defined]
        request={
            "parent": f"{LOCATION}/keyRings/{ring}",
            "crypto_key_id": "signing",
            "crypto_key": {"purpose": "ASYMMETRIC_SIGN", "version_template": {"algorithm": algorithm}},
        }
    )
    return f"{key.name}/cryptoKeyVersions/1"


def per_envelope_ms(n: int, step: Step) -> float:
    """Wall-clock ms per call of ``step(0) .. step(n - 1)``."""
    start = time.perf_counter()
    for i in range(n):
        step(i)
    return (time.perf_counter() - start) * 1000 / n


def steps(client: object, key: str, src: Path, out: Path, version: str, public: PublicKey) -> dict[str, Step]:
    """The four measured operations on envelope number ``i`` under ``out``."""

    def plain(i: int) -> object:
        return encrypt(client, key, str(src), str(out / f"p{i}"))  # type: ignore[arg-type]

    def signed(i: int) -> object:
        return encrypt(client, key, str(src), str(out / f"s{i}"), sign_with=version)  # type: ignore[arg-type]

    def sign(i: int) -> object:
        return sign_envelope(client, Envelope.open(str(out / f"p{i}")), version)  # type: ignore[arg-type]

    def verify(i: int) -> object:
        return verify_signature(Envelope.open(str(out / f"s{i}")), public)

    def rpc(i: int) -> object:  # the bare AsymmetricSign of a statement-sized message: the KMS share
        message = b"%d" % i + bytes(87)
        digest = DIGESTS[public.algorithm]
        request = (
            {"data": message}
            if digest is None
            else {"digest": {digest: hashlib.new(digest, message).digest()}}
        )
        return client.asymmetric_sign(request={"name": version, **request})  # type: ignore[attr-defined]

    return {"plain": plain, "signed": signed, "sign": sign, "verify": verify, "rpc": rpc}


def algorithm_row(
    client: object, key: str, src: Path, work: Path, algorithm: str, n: int, rounds: int
) -> dict[str, float]:
    """Median ms per envelope of each measurement for ``algorithm`` (after one warm-up of each)."""
    version = make_signing_key(client, algorithm)
    public = fetch_public_key(client, version)  # type: ignore[arg-type]
    rows: dict[str, list[float]] = {"plain": [], "signed": [], "sign": [], "verify": [], "rpc": []}
    for r in range(rounds + 1):
        out = work / f"{algorithm}-{r}"
        out.mkdir()
        for name, step in steps(client, key, src, out, version, public).items():
            ms = per_envelope_ms(1 if r == 0 else n, step)
            if r:  # round 0 warms up (imports, connections, caches)
                rows[name].append(ms)
        shutil.rmtree(out)
    return {k: statistics.median(v) for k, v in rows.items()}


def big_file_speeds(client: object, key: str, work: Path, mib: int, rounds: int) -> tuple[float, float]:
    """Median encrypt MiB/s of a ``mib`` MiB file, unsigned and signed (EC P-256)."""
    big = work / "big.bin"
    random_file(big, mib << 20)
    version = make_signing_key(client, "EC_SIGN_P256_SHA256")
    fetch_public_key(client, version)  # type: ignore[arg-type]  # cached: not part of the stream
    speeds: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for r in range(rounds):
        for label, sign_with in (("unsigned", None), ("signed", version)):
            dst = work / f"big-{label}-{r}.enc"
            start = time.perf_counter()
            encrypt(client, key, str(big), str(dst), sign_with=sign_with)  # type: ignore[arg-type]
            speeds[label].append(mib / (time.perf_counter() - start))
            for extra in ("", ".kmsflow.json", ".kmsflow.sig.json"):
                Path(f"{dst}{extra}").unlink(missing_ok=True)
    return statistics.median(speeds["unsigned"]), statistics.median(speeds["signed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envelopes", type=int, default=50, help="envelopes per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="bytes of each small file")
    parser.add_argument("--big-mib", type=int, default=256, help="0 skips the large-file measurement")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()

    process, endpoint = spawn()
    work = Path(tempfile.mkdtemp(prefix="kmsflow-bench-sign-", dir=args.dir))
    try:
        key = make_key(endpoint)
        client = new_kms_client(endpoint=endpoint)
        src = work / "small.bin"
        random_file(src, args.size)
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, dir {work}")
        print(
            f"# {args.envelopes} envelopes of {args.size} B per measurement, median of {args.rounds} rounds"
        )
        columns = ["encrypt", "encrypt + sign", "sign adds", "AsymmetricSign RPC", "sign existing", "verify"]
        print("| algorithm | " + " | ".join(columns) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for algorithm in args.algorithms.split(","):
            m = algorithm_row(client, key, src, work, algorithm, args.envelopes, args.rounds)
            cells = [m["plain"], m["signed"], m["signed"] - m["plain"], m["rpc"], m["sign"], m["verify"]]
            print(f"| {algorithm} | " + " | ".join(f"{ms:.2f} ms" for ms in cells) + " |")
        if args.big_mib:
            unsigned, signed = big_file_speeds(client, key, work, args.big_mib, args.rounds)
            print(f"\n{args.big_mib} MiB file, encrypt MiB/s, median of {args.rounds}:", end=" ")
            print(f"unsigned {unsigned:.0f}, signed {signed:.0f} (ratio {signed / unsigned:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
