"""The public-key cache is keyed by KMS endpoint and version: two KMSs (here two emulators) that
each have a ``.../cryptoKeyVersions/1`` of a different key never share an entry, so a producer
against each wraps for that KMS's key. ``pubkey export`` always asks KMS and writes through."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from envelope.recipients import make_recipient_key
from kmsflow.kms import public_key
from kmsflow.kms.public_key_cache import PublicKeyCache

from .conftest import write_random
from .test_cli import KMSFLOW

RING = "shared-name-ring"


@pytest.fixture
def two_kms(shared: ModuleType) -> Iterator[tuple[Any, Any, str]]:
    """Two emulators holding an ML-KEM-768 key of the same name (so the same version names) but
    different key material; yields both and the key name."""
    first = shared.start_emulator()
    try:
        second = shared.start_emulator()
        try:
            names = {make_recipient_key(e.client(), "ML_KEM_768", RING) for e in (first, second)}
            (key,) = names
            yield first, second, key
        finally:
            shared.stop_emulator(second)
    finally:
        shared.stop_emulator(first)


def kmsflow(endpoint: str, cache: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "STORAGE_EMULATOR_HOST")}
    env.update(KMS_EMULATOR_HOST=endpoint, KMSFLOW_CACHE_DIR=str(cache))
    return subprocess.run([KMSFLOW, *args], capture_output=True, env=env, timeout=120)


def test_producers_against_two_kms_wrap_for_each_ones_key(
    two_kms: tuple[Any, Any, str], tmp_path: Path
) -> None:
    first, second, key = two_kms
    version = f"{key}/cryptoKeyVersions/1"
    keys = {e.endpoint: public_key.fetch_public_key(e.client(), version).key for e in (first, second)}
    assert len(set(keys.values())) == 2  # same version name, two keys

    # In one process, one cache directory: each client's endpoint gets its own entry.
    for emulator in (first, second):
        client = emulator.client()
        cache = PublicKeyCache.for_client(client, tmp_path / "lib-cache")
        assert public_key.load(key, client, cache=cache).key == keys[emulator.endpoint]
        cached = cache.get(version)
        assert cached is not None and cached.key == keys[emulator.endpoint]
    assert len(list((tmp_path / "lib-cache" / "public-keys").iterdir())) == 2

    # Through the CLI with one shared cache: each envelope opens on its own KMS (Decapsulate).
    cache = tmp_path / "cli-cache"
    plain = write_random(tmp_path / "in", 5000)
    for n, emulator in enumerate((first, second)):
        made = kmsflow(
            emulator.endpoint, cache, "encrypt", "--recipient", key, str(tmp_path / "in"), f"{tmp_path}/e{n}"
        )
        assert made.returncode == 0, made.stderr
        out = tmp_path / f"out{n}"
        opened = kmsflow(emulator.endpoint, cache, "decrypt", f"{tmp_path}/e{n}", str(out))
        assert opened.returncode == 0, opened.stderr
        assert out.read_bytes() == plain


def test_pubkey_export_always_asks_kms_and_writes_through(
    two_kms: tuple[Any, Any, str], tmp_path: Path
) -> None:
    """A cache entry that is well-formed and private but holds another key (the key was re-made
    under the same name): ``encrypt --recipient KEY`` trusts it, ``pubkey export`` does not read
    it, prints KMS's key and replaces the entry, after which encrypt wraps for the right key."""
    first, second, key = two_kms
    version = f"{key}/cryptoKeyVersions/1"
    cache_dir = tmp_path / "cache"
    right = public_key.fetch_public_key(first.client(), version)
    stale = public_key.fetch_public_key(second.client(), version)
    entry = PublicKeyCache.for_client(first.client(), cache_dir).put(stale)  # as if fetched earlier

    write_random(tmp_path / "in", 100)
    made = kmsflow(
        first.endpoint,
        cache_dir,
        "encrypt",
        "--recipient",
        key,
        str(tmp_path / "in"),
        f"{tmp_path}/stale.enc",
    )
    assert made.returncode == 0, made.stderr
    refused = kmsflow(first.endpoint, cache_dir, "decrypt", f"{tmp_path}/stale.enc", str(tmp_path / "o1"))
    assert refused.returncode != 0 and not (tmp_path / "o1").exists()  # wrong key: refused, nothing lost

    exported = kmsflow(first.endpoint, cache_dir, "pubkey", "export", key)
    assert exported.returncode == 0, exported.stderr
    assert public_key.PublicKey.from_file_bytes(exported.stdout, "stdout") == right
    assert entry.read_bytes() == right.to_file_bytes()  # written through
    made = kmsflow(
        first.endpoint, cache_dir, "encrypt", "--recipient", key, str(tmp_path / "in"), f"{tmp_path}/ok.enc"
    )
    assert made.returncode == 0, made.stderr
    opened = kmsflow(first.endpoint, cache_dir, "decrypt", f"{tmp_path}/ok.enc", str(tmp_path / "o2"))
    assert opened.returncode == 0, opened.stderr
    assert (tmp_path / "o2").read_bytes() == (tmp_path / "in").read_bytes()
