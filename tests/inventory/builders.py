"""Helpers shared by the inventory and lifecycle tests: real keys and real envelopes on the emulator."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from google.cloud import kms_v1

from kmsflow.envelope import encrypt
from kmsflow.envelope.record import EnvelopeRecord

LOCATION = "projects/kmsflow-test/locations/us-central1"


def make_key(client: kms_v1.KeyManagementServiceClient, ring_id: str, key_id: str = "data") -> str:
    """Create key ring ``ring_id`` (if needed) and an ENCRYPT_DECRYPT key; return the key name."""
    ring = f"{LOCATION}/keyRings/{ring_id}"
    try:
        client.create_key_ring(request={"parent": LOCATION, "key_ring_id": ring_id, "key_ring": {}})
    except Exception as exc:  # AlreadyExists on the second key of a ring
        if "exist" not in str(exc).lower():
            raise
    key = client.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": key_id,
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    )
    return str(key.name)


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@dataclass
class Made:
    """An envelope made for a test: where, its plaintext source, and its record."""

    dst: str
    src: Path
    record: EnvelopeRecord


def make_file(
    client: kms_v1.KeyManagementServiceClient,
    key: str,
    src_dir: Path,
    dst: str,
    size: int = 1000,
    seed: int = 0,
) -> Made:
    src = src_dir / f"plain-{seed}-{os.path.basename(dst)}"
    write_random(src, size, seed)
    return Made(dst, src, encrypt(client, key, str(src), dst))


def make_dataset(
    client: kms_v1.KeyManagementServiceClient,
    key: str,
    src_dir: Path,
    dst: str,
    shards: dict[str, int],
    seed: int = 0,
) -> Made:
    src = src_dir / f"plain-ds-{seed}-{os.path.basename(dst)}"
    for i, (rel, size) in enumerate(sorted(shards.items())):
        write_random(src / rel, size, seed * 1000 + i)
    return Made(dst, src, encrypt(client, key, str(src), dst))


def fingerprint(root: Path, *, exclude_records: bool = True) -> dict[str, tuple[str, int]]:
    """SHA-256 and mtime_ns of every data file under ``root`` (records excluded by default)."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(root))
        if exclude_records and (rel.endswith(".kmsflow.json") or "_kmsflow" in p.parts):
            continue
        out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def same_tree(a: Path, b: Path) -> bool:
    """True when directories (or files) ``a`` and ``b`` hold the same bytes under the same names."""
    if a.is_file():
        return b.is_file() and a.read_bytes() == b.read_bytes()
    fa = {str(p.relative_to(a)): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    fb = {str(p.relative_to(b)): p.read_bytes() for p in b.rglob("*") if p.is_file()}
    return fa == fb
