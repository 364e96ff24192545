"""Inventory and rewrap of envelopes on gs:// through the GCS emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import kms_v1
from inventory.builders import make_dataset, make_file

from kmsflow.envelope import Envelope, gcs_filesystem
from kmsflow.inventory import scan
from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap, verify_unwraps
from kmsflow.lifecycle.cas import RecordConflictError, read_snapshot, swap
from kmsflow.lifecycle.targets import location_of


def data_objects(fs: object, prefix: str) -> dict[str, tuple[str, str]]:
    """(generation, md5) of every non-record object under ``prefix``."""
    found = fs.find(prefix, detail=True)  # type: ignore[attr-defined]
    return {
        name: (str(info["generation"]), str(info.get("md5Hash")))
        for name, info in found.items()
        if not name.endswith(".kmsflow.json") and "/_kmsflow/" not in name
    }


def test_gcs_inventory_and_rewrap(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    root = f"gs://{gcs_bucket}/models"
    made = [
        make_file(kms, key, tmp_path / "src", f"{root}/a.enc", 5000, seed=1),
        make_dataset(kms, key, tmp_path / "src", f"{root}/ds", {"s0": 100, "d/s1": 3000}, seed=2),
    ]
    fs = gcs_filesystem()
    fs.pipe_file(f"{gcs_bucket}/models/.x.enc.kmsflow-0123456789ab.part", b"leftover")
    v1 = made[0].record.key.crypto_key_version

    inv = scan([root, f"gs://{gcs_bucket}/no-such-prefix"])
    assert [str(f.kind) for f in inv.findings] == ["stale_temp", "unreachable_root"]
    assert sorted(r.url for r in inv.references(v1)) == [f"{root}/a.enc", f"{root}/ds"]
    assert inv.by_version()[v1].files == 3

    v2 = resources.rotate(kms, key).name
    before = data_objects(fs, f"{gcs_bucket}/models")
    report = rewrap(kms, [root], max_workers=4)

    assert report.ok, report.to_dict()
    assert report.rewrapped == 2 and report.versions_after == {v2: 2}
    fs.invalidate_cache()
    assert data_objects(fs, f"{gcs_bucket}/models") == before  # data objects never rewritten
    assert verify_unwraps(kms, [root]) == []
    for i, m in enumerate(made):
        env = Envelope.open(m.dst)
        assert env.record.key.crypto_key_version == v2
        out = tmp_path / f"out{i}"
        env.decrypt(kms, str(out))
        assert out.is_file() or out.is_dir()
    assert rewrap(kms, [root]).already_current == 2


def test_gcs_swap_refuses_a_changed_generation(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    made = make_file(kms, key, tmp_path / "src", f"gs://{gcs_bucket}/a.enc")
    record = location_of(f"gs://{gcs_bucket}/a.enc.kmsflow.json", {})
    snapshot = read_snapshot(record)
    assert snapshot.generation and snapshot.data == made.record.to_json()
    fs = gcs_filesystem()
    fs.pipe_file(record.path, snapshot.data + b"\n")  # a concurrent writer

    with pytest.raises(RecordConflictError, match="generation"):
        swap(snapshot, b"{}")
    assert fs.cat_file(record.path) == snapshot.data + b"\n"

    resources.rotate(kms, key)

    def writer(_url: str) -> None:
        fs.pipe_file(record.path, made.record.to_json())  # same bytes, new generation

    report = rewrap(kms, [made.dst], before_swap=writer)
    assert [c.error for c in report.conflicts] == ["RecordConflictError"]


def test_gcs_inventory_catches_a_replaced_object_by_its_listed_crc32c(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """Same size, other bytes: only the CRC32C GCS lists for the object can tell, and the inventory
    uses it without reading any data (a size check alone would pass)."""
    root = f"gs://{gcs_bucket}/crc"
    make_file(kms, key, tmp_path / "src", f"{root}/ok.enc", 3000, seed=1)
    make_dataset(kms, key, tmp_path / "src", f"{root}/ds", {"s0": 100, "d/s1": 3000}, seed=2)
    fs = gcs_filesystem()
    assert scan([root]).complete

    shard = f"{gcs_bucket}/crc/ds/d/s1"
    original = fs.cat_file(shard)
    fs.pipe_file(shard, bytes(b ^ 0xFF for b in original))  # bit rot, or an overwrite by mistake
    inv = scan([root])

    assert not inv.complete
    [finding] = inv.findings
    assert finding.url == f"{root}/ds" and "corrupted or replaced (stored CRC32C)" in finding.detail
    assert str(finding.kind) == "record_without_data" and "'ds/d/s1'" in finding.detail
    # still counted as a reference to its key version: a damaged envelope never frees a version
    assert sorted(r.url for r in inv.envelopes) == [f"{root}/ds", f"{root}/ok.enc"]
