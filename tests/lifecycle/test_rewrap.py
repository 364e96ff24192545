"""Rewrap over real envelopes on the KMS emulator: data untouched, records moved to the primary."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from google.cloud import kms_v1
from inventory.builders import Made, fingerprint, make_dataset, make_file, make_key, same_tree

from kmsflow.envelope import Envelope
from kmsflow.inventory import scan
from kmsflow.kms import resources
from kmsflow.kms.errors import KeyVersionUnavailableError
from kmsflow.lifecycle import rewrap, verify_unwraps


def record_path(made: Made) -> Path:
    dst = Path(made.dst)
    return dst / "_kmsflow" / "envelope.json" if dst.is_dir() else dst.with_name(dst.name + ".kmsflow.json")


def version_of(made: Made) -> str:
    return str(json.loads(record_path(made).read_bytes())["key"]["crypto_key_version"])


def assert_decrypts(client: kms_v1.KeyManagementServiceClient, made: Made, out: Path) -> None:
    Envelope.open(made.dst).decrypt(client, str(out))
    assert same_tree(made.src, out)


def make_mix(client: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> list[Made]:
    root = tmp_path / "root"
    src = tmp_path / "src"
    return [
        make_file(client, key, src, str(root / "a.enc"), 3000, seed=1),
        make_file(client, key, src, str(root / "sub" / "b.enc"), 0, seed=2),
        make_dataset(client, key, src, str(root / "ds"), {"s0": 2000, "dir/s1": 70_000, "s2": 1}, seed=3),
    ]


def test_rotate_rewrap_decrypts_and_never_touches_data(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    root = tmp_path / "root"
    v1 = made[0].record.key.crypto_key_version
    data_before = fingerprint(root)
    v2 = resources.rotate(kms, key).name

    report = rewrap(kms, [str(root)], max_workers=4)

    assert report.ok, report.to_dict()
    assert (report.envelopes, report.rewrapped, report.already_current) == (3, 3, 0)
    assert report.versions_before == {v1: 3} and report.versions_after == {v2: 3}
    assert fingerprint(root) == data_before  # SHA-256 and mtime_ns of every data file
    for m in made:
        assert version_of(m) == v2
        assert Envelope.open(m.dst).record.created == m.record.created
    for i, m in enumerate(made):
        assert_decrypts(kms, m, tmp_path / f"out{i}")
    assert not [p for p in root.rglob("*") if ".kmsflow-" in p.name]  # no temp left behind
    text = json.dumps(report.to_dict())
    assert all(m.record.key.wrapped_keyset not in text for m in made)

    records = {m.dst: record_path(m).read_bytes() for m in made}
    again = rewrap(kms, [str(root)])
    assert (again.rewrapped, again.already_current, again.ok) == (0, 3, True)
    assert {m.dst: record_path(m).read_bytes() for m in made} == records
    assert verify_unwraps(kms, [str(root)]) == []


def test_dry_run_changes_nothing_and_calls_no_kms_crypto(
    emulator: object, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    from lifecycle.conftest import counting_client

    made = make_mix(kms, key, tmp_path)
    v1 = made[0].record.key.crypto_key_version
    v2 = resources.rotate(kms, key).name
    records = {m.dst: record_path(m).read_bytes() for m in made}
    counted, counter = counting_client(emulator.endpoint)  # type: ignore[attr-defined]

    report = rewrap(counted, [str(tmp_path / "root")], dry_run=True)

    assert report.dry_run and report.ok
    assert (report.would_rewrap, report.rewrapped) == (3, 0)
    assert report.versions_before == {v1: 3} and report.versions_after == {v2: 3}
    assert {m.dst: record_path(m).read_bytes() for m in made} == records
    assert counter.calls["Encrypt"] == 0 and counter.calls["Decrypt"] == 0
    assert counter.calls["GetCryptoKey"] == 1  # one per distinct key per run


def test_one_kms_round_trip_per_envelope_and_one_get_per_key(
    emulator: object, kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    from lifecycle.conftest import counting_client

    other = make_key(kms, ring_id, "other")
    made = [
        *make_mix(kms, key, tmp_path),
        make_file(kms, other, tmp_path / "src", str(tmp_path / "root" / "o.enc")),
    ]
    resources.rotate(kms, key)
    resources.rotate(kms, other)
    counted, counter = counting_client(emulator.endpoint)  # type: ignore[attr-defined]
    report = rewrap(counted, [str(tmp_path / "root")], max_workers=8)
    assert report.rewrapped == len(made) == 4
    assert (counter.calls["Decrypt"], counter.calls["Encrypt"], counter.calls["GetCryptoKey"]) == (4, 4, 2)


def test_transient_faults_are_retried_and_the_run_succeeds(fresh_emulator: object, tmp_path: Path) -> None:
    client = fresh_emulator.client()  # type: ignore[attr-defined]
    key = make_key(client, "faults")
    src = tmp_path / "src"
    made = [make_file(client, key, src, str(tmp_path / "root" / f"f{i}.enc"), 100, seed=i) for i in range(30)]
    v2 = resources.rotate(client, key).name
    fresh_emulator.admin.set_faults(  # type: ignore[attr-defined]
        rate=0.3, codes=["UNAVAILABLE", "RESOURCE_EXHAUSTED"], methods=["Encrypt", "Decrypt"], seed=1
    )

    report = rewrap(client, [str(tmp_path / "root")], max_workers=8)

    assert report.ok, report.to_dict()
    assert report.rewrapped == 30 and report.versions_after == {v2: 30}
    assert int(fresh_emulator.admin.faults()["injected"]) >= 5  # type: ignore[attr-defined]
    fresh_emulator.admin.set_faults(rate=0.0)  # type: ignore[attr-defined]
    assert verify_unwraps(client, [str(tmp_path / "root")]) == []
    assert_decrypts(client, made[7], tmp_path / "out")


def test_record_changed_between_read_and_swap_is_a_conflict(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    v1 = made[0].record.key.crypto_key_version
    resources.rotate(kms, key)
    victim = record_path(made[0])
    edited = victim.read_bytes() + b"\n"  # someone else rewrote the record meanwhile

    def concurrent_writer(record_url: str) -> None:
        if record_url == str(victim):
            victim.write_bytes(edited)

    report = rewrap(kms, [str(tmp_path / "root")], before_swap=concurrent_writer)

    assert not report.ok
    assert report.rewrapped == 2 and len(report.conflicts) == 1 and report.failures == []
    assert report.conflicts[0].url == made[0].dst and report.conflicts[0].error == "RecordConflictError"
    assert victim.read_bytes() == edited  # their write survives, ours was not made
    assert report.versions_after[v1] == 1
    rerun = rewrap(kms, [made[0].dst])
    assert rerun.rewrapped == 1 and rerun.ok
    assert_decrypts(kms, made[0], tmp_path / "out")


def test_two_racing_rewraps_one_wins_one_conflicts(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "a.enc"))
    v2 = resources.rotate(kms, key).name
    barrier = threading.Barrier(2, timeout=30)
    reports = []

    def run() -> None:
        reports.append(rewrap(kms, [made.dst], before_swap=lambda _url: barrier.wait()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted((r.rewrapped, len(r.conflicts)) for r in reports) == [(0, 1), (1, 0)]
    assert version_of(made) == v2
    assert_decrypts(kms, made, tmp_path / "out")


def test_tampered_record_is_refused_not_resealed(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    resources.rotate(kms, key)
    victim = record_path(made[2])
    raw = json.loads(victim.read_bytes())
    raw["files"] = raw["files"][:1]  # drop shards from the record: rewrap must not make this authentic
    victim.write_text(json.dumps(raw, indent=2))
    tampered = victim.read_bytes()

    report = rewrap(kms, [m.dst for m in made])

    assert report.rewrapped == 2
    assert [(f.url, f.error) for f in report.failures] == [(made[2].dst, "TamperedError")]
    assert victim.read_bytes() == tampered


def test_targets_envelopes_records_and_bad_paths(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    (tmp_path / "plain.txt").write_text("not an envelope")
    garbage = tmp_path / "g.enc.kmsflow.json"
    garbage.write_text("{not json")
    resources.rotate(kms, key)

    report = rewrap(
        kms,
        [
            str(record_path(made[0])),  # a record path
            made[1].dst,  # a file envelope
            made[2].dst,  # a dataset envelope directory
            made[1].dst,  # duplicates are visited once
            str(tmp_path / "plain.txt"),
            str(garbage),
            str(tmp_path / "missing-root" / "x"),
        ],
    )

    assert report.rewrapped == 3
    errors = sorted((Path(f.url).name, f.error) for f in report.failures)
    assert errors == [
        ("g.enc", "RecordInvalidError"),
        ("plain.txt", "RecordNotFoundError"),
        ("x", "RecordNotFoundError"),
    ]
    assert all("\n" not in f.reason for f in report.failures)


def test_missing_path_and_incomplete_scan_make_the_report_not_ok(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_file(kms, key, tmp_path / "src", str(tmp_path / "root" / "a.enc"))
    (tmp_path / "root" / "junk.kmsflow.json").write_text("[]")
    resources.rotate(kms, key)

    report = rewrap(kms, [str(tmp_path / "root"), str(tmp_path / "nope")])

    assert not report.scan_complete and not report.ok
    assert [str(f.kind) for f in report.scan_findings] == ["invalid_record"]
    assert [(f.url, f.error) for f in report.failures] == [(str(tmp_path / "nope"), "RecordNotFoundError")]
    assert report.rewrapped == 1 and version_of(made) != made.record.key.crypto_key_version


def test_inventory_is_reused_without_rescanning(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    inv = scan([str(tmp_path / "root")])
    v2 = resources.rotate(kms, key).name
    report = rewrap(kms, [], inventory=inv)
    assert report.rewrapped == 3 and report.versions_after == {v2: 3}
    assert verify_unwraps(kms, inv) == []
    assert all(version_of(m) == v2 for m in made)


def test_old_version_disabled_after_rewrap_everything_still_decrypts(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    v1 = made[0].record.key.crypto_key_version
    resources.rotate(kms, key)
    before = verify_unwraps(kms, [str(tmp_path / "root")])
    assert sorted(i.error for i in before) == ["NotPrimary"] * 3
    assert rewrap(kms, [str(tmp_path / "root")]).ok

    resources.disable_version(kms, v1)

    assert verify_unwraps(kms, [str(tmp_path / "root")]) == []
    for i, m in enumerate(made):
        assert_decrypts(kms, m, tmp_path / f"out{i}")
    assert scan([str(tmp_path / "root")]).references(v1) == []


def test_unwrap_failure_is_reported_per_envelope(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    made = make_mix(kms, key, tmp_path)
    v1 = made[0].record.key.crypto_key_version
    resources.rotate(kms, key)
    # another key's envelope whose only version is disabled cannot be unwrapped: reported, not fatal
    other = make_key(kms, ring_id, "other")
    stuck = make_file(kms, other, tmp_path / "src", str(tmp_path / "root" / "stuck.enc"))
    resources.rotate(kms, other)
    resources.disable_version(kms, stuck.record.key.crypto_key_version)

    report = rewrap(kms, [str(tmp_path / "root")])

    assert report.rewrapped == 3
    assert [(f.url, f.error) for f in report.failures] == [(stuck.dst, "KeyVersionUnavailableError")]
    assert v1 not in report.versions_after
    with pytest.raises(KeyVersionUnavailableError):
        Envelope.open(stuck.dst).unlock(kms)
    assert os.path.exists(record_path(stuck))
