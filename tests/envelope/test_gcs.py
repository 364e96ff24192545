"""gs:// envelopes through gcsfs against gcp-storage-emulator: a multi-hundred-MB object streamed
both ways, datasets, and failures that must leave no object behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from kmsflow import envelope
from kmsflow.envelope import TamperedError, gcs_filesystem

BIG = 300 * (1 << 20) + 12345  # not a multiple of anything


class InjectedError(Exception):
    pass


class FailAfter:
    """A progress sink that raises once ``limit`` bytes went through: an exception mid-stream."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        self.seen += n
        if self.seen > self.limit:
            raise InjectedError("interrupted mid-stream")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def test_emulator_filesystem_is_configured_in_one_place(gcs_bucket: str) -> None:
    import gcsfs.core

    fs = gcs_filesystem()
    assert type(fs) is gcsfs.core.GCSFileSystem  # the classic class: no gRPC bucket-type probe
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    assert os.environ["STORAGE_EMULATOR_HOST"] in fs._endpoint  # type: ignore[attr-defined]
    assert fs.ls(gcs_bucket) == []


def test_large_object_round_trip(kms: Any, key: str, gcs_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    digest = hashlib.sha256()
    with open(src, "wb") as f:  # generated in 1 MiB pieces, never held whole
        left = BIG
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    url = f"gs://{gcs_bucket}/models/model.bin"
    record = envelope.encrypt(kms, key, str(src), url)
    src.unlink()
    fs = gcs_filesystem()
    assert fs.size(f"{gcs_bucket}/models/model.bin") == record.files[0].ciphertext_size > BIG
    assert fs.exists(f"{gcs_bucket}/models/model.bin.kmsflow.json")
    assert envelope.inspect(url)["plaintext_size"] == BIG
    envelope.decrypt(kms, url, str(tmp_path / "back.bin"))
    assert sha256_file(tmp_path / "back.bin") == digest.hexdigest()


def test_dataset_gs_to_gs_and_back(kms: Any, key: str, gcs_bucket: str, tmp_path: Path) -> None:
    fs = gcs_filesystem()
    for i in range(5):
        fs.pipe(f"{gcs_bucket}/raw/part-{i % 2}/shard-{i}", os.urandom(1000 + i))
    envelope.encrypt(kms, key, f"gs://{gcs_bucket}/raw", f"gs://{gcs_bucket}/enc")
    assert fs.exists(f"{gcs_bucket}/enc/_kmsflow/envelope.json")
    envelope.verify(kms, f"gs://{gcs_bucket}/enc")
    envelope.decrypt(kms, f"gs://{gcs_bucket}/enc", f"gs://{gcs_bucket}/plain")
    for i in range(5):
        rel = f"part-{i % 2}/shard-{i}"
        assert fs.cat(f"{gcs_bucket}/plain/{rel}") == fs.cat(f"{gcs_bucket}/raw/{rel}")
    envelope.decrypt(kms, f"gs://{gcs_bucket}/enc", str(tmp_path / "local"))
    assert sorted(p.name for p in (tmp_path / "local").rglob("shard-*")) == [f"shard-{i}" for i in range(5)]


def test_failures_leave_no_object_behind(kms: Any, key: str, gcs_bucket: str, tmp_path: Path) -> None:
    fs = gcs_filesystem()
    src = tmp_path / "ds"
    for i in range(3):
        (src / f"s{i}").parent.mkdir(parents=True, exist_ok=True)
        (src / f"s{i}").write_bytes(os.urandom(3 << 20))  # > one 1 MiB block each
    # an exception in the middle of the second file, after the first object was finalized
    with pytest.raises(InjectedError):
        envelope.encrypt(kms, key, str(src), f"gs://{gcs_bucket}/enc", progress=FailAfter(4 << 20))
    assert fs.find(f"{gcs_bucket}/enc") == []

    envelope.encrypt(kms, key, str(src), f"gs://{gcs_bucket}/enc")
    with pytest.raises(InjectedError):
        envelope.decrypt(
            kms, f"gs://{gcs_bucket}/enc", f"gs://{gcs_bucket}/plain", progress=FailAfter(7 << 20)
        )
    assert fs.find(f"{gcs_bucket}/plain") == []

    # a flipped bit in the last shard: the first two plaintext objects must not survive either
    data = bytearray(fs.cat(f"{gcs_bucket}/enc/s2"))
    data[len(data) // 2] ^= 1
    fs.pipe(f"{gcs_bucket}/enc/s2", bytes(data))
    with pytest.raises(TamperedError, match="s2"):
        envelope.decrypt(kms, f"gs://{gcs_bucket}/enc", f"gs://{gcs_bucket}/plain")
    assert fs.find(f"{gcs_bucket}/plain") == []
