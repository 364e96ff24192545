"""Inventory over real envelopes made with kmsflow.envelope.encrypt on the KMS emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from google.cloud import kms_v1

from inventory.builders import make_dataset, make_file, make_key
from kmsflow.envelope.storage import Location
from kmsflow.inventory import FindingKind, Inventory, scan
from kmsflow.kms import resources


def kinds(inv) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(str(f.kind) for f in inv.findings)


def test_counts_per_key_and_version_across_file_and_dataset_envelopes(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    src = tmp_path / "src"
    f1 = make_file(kms, key, src, str(root / "a.enc"), 1000, seed=1)
    f2 = make_file(kms, key, src, str(root / "deep" / "b.enc"), 10, seed=2)
    d1 = make_dataset(
        kms, key, src, str(root / "ds1"), {"s0": 100, "sub/s1": 200, "x.kmsflow.json": 5}, seed=3
    )
    v1 = f1.record.key.crypto_key_version
    v2 = resources.rotate(kms, key).name
    f3 = make_file(kms, key, src, str(root / "c.enc"), 7, seed=4)
    d2 = make_dataset(kms, key, src, str(root / "deep" / "ds2"), {"p": 1, "q": 2}, seed=5)
    other = make_key(kms, ring_id, "other")
    f4 = make_file(kms, other, src, str(tmp_path / "root2" / "z.enc"), 3, seed=6)

    inv = scan([str(root), str(tmp_path / "root2")], max_workers=4)

    assert inv.complete, inv.findings
    assert inv.findings == ()
    assert len(inv.scan_id) == 32 and inv.started_at <= inv.finished_at
    stats = inv.by_version()
    assert set(stats) == {v1, v2, f4.record.key.crypto_key_version}
    assert (stats[v1].envelopes, stats[v1].files) == (3, 5)
    assert stats[v1].plaintext_bytes == 1000 + 10 + 305
    assert stats[v1].ciphertext_bytes == sum(m.record.ciphertext_size for m in (f1, f2, d1))
    assert (stats[v2].envelopes, stats[v2].files, stats[v2].plaintext_bytes) == (2, 3, 10)
    assert stats[v1].oldest_created == min(m.record.created for m in (f1, f2, d1))
    assert stats[v2].newest_wrapped_at == max(m.record.key.wrapped_at for m in (f3, d2))
    by_key = inv.by_key()
    assert by_key[key].envelopes == 5 and by_key[other].envelopes == 1

    refs = inv.references(v1)
    assert sorted(r.url for r in refs) == sorted([f1.dst, f2.dst, d1.dst])
    ds_ref = next(r for r in refs if r.kind == "dataset")
    assert ds_ref.record_url == os.path.join(d1.dst, "_kmsflow", "envelope.json")
    assert ds_ref.envelope_id == d1.record.envelope_id and ds_ref.files == 3
    assert inv.references(f"{key}/cryptoKeyVersions/99") == []

    doc = inv.to_dict()
    text = json.dumps(doc)  # JSON-safe
    assert doc["complete"] is True and len(doc["envelopes"]) == 6
    assert doc["keys"][key]["versions"] == sorted([v1, v2])
    again = Inventory.from_dict(json.loads(text))
    assert again == inv and again.complete and again.references(v1) == refs
    with pytest.raises(ValueError):
        Inventory.from_dict(inv.to_dict(include_envelopes=False))
    small = inv.to_dict(include_envelopes=False)
    assert "envelopes" not in small and small["envelope_count"] == 6 and small["versions"] == doc["versions"]
    for made in (f1, f2, f3, f4, d1, d2):
        assert made.record.key.wrapped_keyset not in text  # no key material
        assert made.record.manifest not in text


def test_garbage_and_invalid_records_are_blocking_findings(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    good = make_file(kms, key, tmp_path / "src", str(root / "good.enc"))
    (root / "junk.bin").write_bytes(b"data")
    (root / "junk.bin.kmsflow.json").write_bytes(b"\x00garbage{")
    ds = make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"a": 3})
    (Path(ds.dst) / "_kmsflow" / "envelope.json").write_text(json.dumps({"format": "other"}))
    # a file record found where a dataset record belongs (wrong kind)
    ds2 = make_dataset(kms, key, tmp_path / "src", str(root / "ds2"), {"b": 3}, seed=9)
    (Path(ds2.dst) / "_kmsflow" / "envelope.json").write_bytes(good.record.to_json())

    inv = scan([str(root)])

    assert not inv.complete
    assert kinds(inv) == ["invalid_record"] * 3  # the data beside them is not double-reported
    urls = {f.url for f in inv.findings}
    assert str(root / "junk.bin.kmsflow.json") in urls
    assert os.path.join(ds.dst, "_kmsflow", "envelope.json") in urls
    assert [r.url for r in inv.envelopes] == [good.dst]


def test_record_without_data_missing_and_truncated(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    gone = make_file(kms, key, tmp_path / "src", str(root / "gone.enc"), seed=1)
    short = make_file(kms, key, tmp_path / "src", str(root / "short.enc"), seed=2)
    ds = make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"a": 10, "b": 20}, seed=3)
    os.unlink(gone.dst)
    with open(short.dst, "r+b") as f:
        f.truncate(100)
    os.unlink(os.path.join(ds.dst, "b"))

    inv = scan([str(root)])

    assert not inv.complete
    assert kinds(inv) == ["record_without_data"] * 3
    detail = {f.url: f.detail for f in inv.findings}
    assert "missing" in detail[gone.dst]
    assert "100 bytes" in detail[short.dst] and str(short.record.ciphertext_size) in detail[short.dst]
    assert "'ds/b'" in detail[ds.dst]
    # conservative: a damaged envelope still references its version (shredding stays blocked)
    assert len(inv.references(gone.record.key.crypto_key_version)) == 3


def test_data_without_record(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    ds = make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"a": 10})
    (root / "loose.bin").write_bytes(b"plaintext?")
    (Path(ds.dst) / "smuggled").write_bytes(b"x")
    (root / "orphan.enc.kmsflow.json.bak").write_bytes(b"x")

    inv = scan([str(root)])

    assert not inv.complete
    found = {f.url: f for f in inv.findings}
    assert set(found) == {
        str(root / "loose.bin"),
        os.path.join(ds.dst, "smuggled"),
        str(root / "orphan.enc.kmsflow.json.bak"),
    }
    assert all(f.kind is FindingKind.DATA_WITHOUT_RECORD for f in found.values())
    assert "inside dataset envelope" in found[os.path.join(ds.dst, "smuggled")].detail


def test_unreachable_root_blocks_but_other_roots_are_scanned(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    made = make_file(kms, key, tmp_path / "src", str(root / "a.enc"))
    (tmp_path / "afile").write_bytes(b"x")
    missing = str(tmp_path / "no-such-root")

    inv = scan([missing, str(root), str(tmp_path / "afile"), "nosuchscheme-xyz://bucket/p"])

    assert not inv.complete
    assert kinds(inv) == ["unreachable_root"] * 3
    assert {f.url for f in inv.findings} == {missing, str(tmp_path / "afile"), "nosuchscheme-xyz://bucket/p"}
    assert [r.url for r in inv.envelopes] == [made.dst]


def test_stale_temps_are_informational(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    made = make_file(kms, key, tmp_path / "src", str(root / "a.enc"))
    ds = make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"a": 1})
    (root / ".a.enc.kmsflow.json.kmsflow-0a1b2c3d4e5f.part").write_bytes(made.record.to_json())
    (root / ".b.enc.kmsflow-00ff00ff00ff.part").write_bytes(b"partial ciphertext")
    (root / ".ds2.kmsflow-abcdef012345.tmp" / "_kmsflow").mkdir(parents=True)
    (root / ".ds2.kmsflow-abcdef012345.tmp" / "shard").write_bytes(b"x")
    (root / ".ds2.kmsflow-abcdef012345.tmp" / "_kmsflow" / "envelope.json").write_bytes(b"{}")
    (Path(ds.dst) / "_kmsflow" / ".envelope.json.kmsflow-123456abcdef.part").write_bytes(b"{")

    inv = scan([str(root)])

    assert inv.complete, inv.blocking_findings
    assert kinds(inv) == ["stale_temp"] * 4
    assert all(not f.blocking for f in inv.findings)
    assert str(root / ".ds2.kmsflow-abcdef012345.tmp") in {f.url for f in inv.findings}
    assert len(inv.envelopes) == 2  # a temp copy of a record is never counted as an envelope
    assert inv.to_dict()["findings"][0]["blocking"] is False
    assert Inventory.from_dict(inv.to_dict()) == inv


def test_reencrypt_backups_block_and_are_never_counted(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """A re-encrypt backup may hold the only data its record decrypts (kill mid-replacement), and a
    dataset backup's record names a version no reference counts: blocking until a rerun resolves it."""
    root = tmp_path / "root"
    made = make_file(kms, key, tmp_path / "src", str(root / "a.enc"))
    ds = make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"s": 3})
    os.link(made.dst, root / f".a.enc.kmsflow-{made.record.envelope_id}.old")
    os.rename(ds.dst, root / f".ds.kmsflow-{ds.record.envelope_id}.old")  # "moved aside", D absent
    (root / ".x.kmsflow-0123.old").write_bytes(b"not an envelope id: ordinary data")

    inv = scan([str(root)])

    assert not inv.complete
    assert kinds(inv) == ["data_without_record", "reencrypt_backup", "reencrypt_backup"]
    backups = {f.url: f for f in inv.findings if f.kind is FindingKind.REENCRYPT_BACKUP}
    assert set(backups) == {
        str(root / f".a.enc.kmsflow-{made.record.envelope_id}.old"),
        str(root / f".ds.kmsflow-{ds.record.envelope_id}.old"),
    }
    assert all(f.blocking and "rerun reencrypt" in f.detail for f in backups.values())
    assert str(root / "ds") in backups[str(root / f".ds.kmsflow-{ds.record.envelope_id}.old")].detail
    assert [r.url for r in inv.envelopes] == [made.dst]  # a backup's record is not an envelope
    assert Inventory.from_dict(inv.to_dict()) == inv


def test_file_envelope_named_like_a_sidecar(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "odd.kmsflow.json"))
    inv = scan([str(tmp_path / "root")])
    assert inv.complete, inv.findings
    assert [r.url for r in inv.envelopes] == [made.dst]


def test_root_that_is_a_dataset_envelope(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    ds = make_dataset(kms, key, tmp_path / "src", str(tmp_path / "ds"), {"a": 1, "b/c": 2})
    inv = scan([ds.dst])
    assert inv.complete and [r.url for r in inv.envelopes] == [ds.dst]


def test_unreadable_record_is_blocking(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kmsflow.inventory.scanner as scan_module

    root = tmp_path / "root"
    made = make_file(kms, key, tmp_path / "src", str(root / "a.enc"))
    real = scan_module.read_record_bytes

    def flaky_storage(loc: Location) -> bytes:  # the storage fails, as a revoked ACL or I/O error would
        if loc.path.endswith("a.enc.kmsflow.json"):
            raise PermissionError(13, "Permission denied")
        return real(loc)

    monkeypatch.setattr(scan_module, "read_record_bytes", flaky_storage)
    inv = scan([str(root)])
    assert not inv.complete
    assert [(str(f.kind), f.url) for f in inv.findings] == [("unreadable_record", made.dst + ".kmsflow.json")]
    assert "Permission denied" in inv.findings[0].detail
