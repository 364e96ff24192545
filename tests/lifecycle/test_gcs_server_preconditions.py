"""kmsflow's gs:// writes are safe because the *server* enforces their preconditions.

Each test lets a concurrent writer in at the one instant no client-side check can cover: after
kmsflow's own checks, just before its conditional upload reaches GCS. Only the server's
``ifGenerationMatch`` (HTTP 412) then stands between kmsflow and a silent clobber, so every test
here fails against the bare ``gcp-storage-emulator`` (which ignores preconditions) and passes
against ``kmsflow_emulator.gcs`` (the ``gcs_emulator`` fixture), as it would on real GCS.
"""

from __future__ import annotations

import importlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from inventory.builders import make_file

import kmsflow.lifecycle.reencryption.gcs as reencrypt_gcs
from kmsflow.audit.log import AuditLog, AuditLogError
from kmsflow.envelope import Envelope, encrypt, gcs_filesystem
from kmsflow.envelope.errors import DestinationExistsError
from kmsflow.envelope.storage import fs_open_write
from kmsflow.inventory.scanner import REENCRYPT_COMMIT
from kmsflow.kms import resources
from kmsflow.lifecycle import cas, reencrypt, rewrap
from kmsflow.lifecycle.cas import RecordConflictError, read_snapshot, swap
from kmsflow.lifecycle.targets import location_of
from lifecycle.test_reencrypt import make_envelope

THEIRS = b'{"written by": "a concurrent writer"}'

# Modules whose globals the tests patch (``kmsflow.envelope.encrypt`` is also a function's name).
encrypt_module = importlib.import_module("kmsflow.envelope.encrypt")
audit_log = importlib.import_module("kmsflow.audit.log")


def race_before_cas_upload(monkeypatch: pytest.MonkeyPatch, write: Any) -> list[str]:
    """Run ``write()`` (once) right before the first conditional record upload of
    :mod:`kmsflow.lifecycle.cas`, i.e. after ``swap`` re-checked the generation itself. Returns the
    paths the upload was aimed at."""
    real = cas._gcs_put_if_generation_match
    aimed: list[str] = []

    def racing(fs: Any, path: str, data: bytes, generation: str) -> None:
        if not aimed:
            write()
        aimed.append(path)
        real(fs, path, data, generation)

    monkeypatch.setattr(cas, "_gcs_put_if_generation_match", racing)
    return aimed


def cat(path: str) -> bytes:
    fs = gcs_filesystem()
    fs.invalidate_cache()
    return bytes(fs.cat_file(path))


def test_swap_loses_to_a_writer_that_came_after_its_generation_check(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_file(kms, key, tmp_path / "src", f"gs://{gcs_bucket}/a.enc")
    record = location_of(f"gs://{gcs_bucket}/a.enc.kmsflow.json", {})
    snapshot = read_snapshot(record)
    aimed = race_before_cas_upload(monkeypatch, lambda: gcs_filesystem().pipe_file(record.path, THEIRS))

    with pytest.raises(RecordConflictError, match="precondition failed"):
        swap(snapshot, b'{"ours": 1}')

    assert aimed == [record.path]
    assert cat(record.path) == THEIRS


def test_rewrap_reports_a_conflict_and_keeps_the_concurrent_record(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = make_file(kms, key, tmp_path / "src", f"gs://{gcs_bucket}/a.enc")
    record = f"{gcs_bucket}/a.enc.kmsflow.json"
    theirs = made.record.to_json() + b"\n"  # e.g. an operator restoring the record from a backup
    resources.rotate(kms, key)
    race_before_cas_upload(monkeypatch, lambda: gcs_filesystem().pipe_file(record, theirs))

    report = rewrap(kms, [made.dst])

    assert report.rewrapped == 0 and [c.error for c in report.conflicts] == ["RecordConflictError"]
    assert cat(record) == theirs


def test_encrypt_never_replaces_a_record_published_while_it_ran(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Encrypt checks that DST and its record are absent, then spends a KMS call and the data upload;
    another producer publishing the same DST meanwhile must win (``xb``: ``ifGenerationMatch=0``)."""
    src = tmp_path / "plain"
    src.write_bytes(b"plaintext " * 500)
    dst = f"gs://{gcs_bucket}/a.enc"
    record = f"{gcs_bucket}/a.enc.kmsflow.json"
    real = encrypt_module.wrap_key

    def racing(*args: Any, **kwargs: Any) -> Any:
        wrapped = real(*args, **kwargs)  # after encrypt's existence checks
        gcs_filesystem().pipe_file(record, THEIRS)
        return wrapped

    monkeypatch.setattr(encrypt_module, "wrap_key", racing)

    # gcsfs raises the 412 as FileExistsError; kmsflow reports it as for a local destination
    # that appears meanwhile.
    with pytest.raises(DestinationExistsError, match=r"a\.enc\.kmsflow\.json: appeared while writing"):
        encrypt(kms, key, str(src), dst)

    assert cat(record) == THEIRS
    assert not gcs_filesystem().exists(f"{gcs_bucket}/a.enc")  # our data object was withdrawn


@pytest.mark.parametrize("size", [5000, 9 << 20], ids=["one-shot-upload", "resumable-upload"])
def test_encrypt_data_object_published_while_it_ran_is_kept(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """As above, for the data object itself: theirs stays, no record of ours is published. A large
    object's 412 comes from the write that opens the resumable upload (on the write-behind
    thread, through Tink), a small one's from the final upload."""
    src = tmp_path / "plain"
    src.write_bytes(os.urandom(size))
    dst = f"gs://{gcs_bucket}/a.enc"
    real = encrypt_module.wrap_key

    def racing(*args: Any, **kwargs: Any) -> Any:
        wrapped = real(*args, **kwargs)
        gcs_filesystem().pipe_file(f"{gcs_bucket}/a.enc", THEIRS)
        return wrapped

    monkeypatch.setattr(encrypt_module, "wrap_key", racing)

    with pytest.raises(DestinationExistsError, match=r"a\.enc: appeared while writing"):
        encrypt(kms, key, str(src), dst)

    assert cat(f"{gcs_bucket}/a.enc") == THEIRS
    assert not gcs_filesystem().exists(f"{gcs_bucket}/a.enc.kmsflow.json")


def test_exclusive_open_loses_to_an_object_created_before_it_closes(gcs_bucket: str) -> None:
    fs = gcs_filesystem()
    path = f"{gcs_bucket}/marker"
    f = fs_open_write(fs, path)
    f.write(b"ours")
    fs.pipe_file(path, THEIRS)

    with pytest.raises(FileExistsError):
        f.close()
    assert cat(path) == THEIRS


def test_audit_append_never_overwrites_a_recorded_event(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two appends that land on the same object name (same time, colliding random suffix): the
    second fails loudly instead of erasing the first event from the log."""

    class Colliding:
        @staticmethod
        def token_hex(n: int) -> str:
            return "0" * (2 * n)

    monkeypatch.setattr(audit_log, "secrets", Colliding)
    location = f"gs://{gcs_bucket}/audit"
    log = AuditLog(location, actor="user:a@example.com", run="r")
    when = datetime(2026, 11, 30, tzinfo=UTC)
    log.append("disable", "v1", reason="first", time=when)

    with pytest.raises(AuditLogError, match="cannot append"):
        log.append("destroy", "v1", reason="second", time=when)
    assert [(e.action, e.reason) for e in log.events()] == [("disable", "first")]


def test_reencrypt_roll_forward_keeps_a_record_replaced_after_its_check(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone replaces the envelope (the record names neither envelope id) just before re-encrypt
    swaps its staged record in: the run stops as a conflict, their record stays, COMMIT is kept for
    a human (the module docstring of kmsflow.lifecycle.reencryption.gcs)."""
    dst = f"gs://{gcs_bucket}/a.enc"
    make_envelope(kms, key, dst, None, tmp_path, 1, file_size=5000)
    record = f"{gcs_bucket}/a.enc.kmsflow.json"
    resources.rotate(kms, key)
    aimed = race_before_cas_upload(monkeypatch, lambda: gcs_filesystem().pipe_file(record, THEIRS))

    report = reencrypt(kms, [dst], max_workers=1)

    assert aimed == [record]
    assert report.reencrypted == 0 and [c.url for c in report.conflicts] == [dst], report.to_dict()
    assert cat(record) == THEIRS
    fs = gcs_filesystem()
    fs.invalidate_cache()
    assert [p for p in fs.find(gcs_bucket) if p.endswith(REENCRYPT_COMMIT)] != []


def test_reencrypt_never_writes_its_commit_over_an_existing_one(
    kms: kms_v1.KeyManagementServiceClient,
    key: str,
    gcs_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The COMMIT marker is created with ``ifGenerationMatch=0``: if one appears at its name first
    (only a bug could put it there: the staging prefix name is random), the run does not commit and
    the live envelope stays as it was."""
    dst = f"gs://{gcs_bucket}/a.enc"
    plain = make_envelope(kms, key, dst, None, tmp_path, 1, file_size=5000)
    record = f"{gcs_bucket}/a.enc.kmsflow.json"
    before = json.loads(cat(record))
    resources.rotate(kms, key)
    real_open = reencrypt_gcs.fs_open_write

    def racing_open(fs: Any, path: str) -> Any:
        f = real_open(fs, path)
        if path.endswith("/" + REENCRYPT_COMMIT):
            fs.pipe_file(path, THEIRS)
        return f

    monkeypatch.setattr(reencrypt_gcs, "fs_open_write", racing_open)

    report = reencrypt(kms, [dst], max_workers=1)

    assert report.reencrypted == 0 and not report.ok, report.to_dict()
    assert json.loads(cat(record))["envelope_id"] == before["envelope_id"]
    out = tmp_path / "out"
    Envelope.open(dst).decrypt(kms, str(out))
    assert out.read_bytes() == plain[""]


def test_a_record_replaced_between_info_and_read_is_read_again(
    gcs_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned read of the generation ``info`` saw answers 404 once that generation is gone:
    the snapshot is taken again (the new bytes with their own generation), not reported missing."""
    record = location_of(f"gs://{gcs_bucket}/a.enc.kmsflow.json", {})
    gcs_filesystem().pipe_file(record.path, b'{"first": 1}')
    fs = record.fs
    assert fs is not None
    real = fs.cat_file
    pinned: list[str] = []

    def racing(path: str, *args: Any, **kwargs: Any) -> Any:
        if not pinned:
            gcs_filesystem().pipe_file(record.path, THEIRS)
        pinned.append(str(kwargs.get("generation")))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(fs, "cat_file", racing)
    snapshot = read_snapshot(record)

    assert snapshot.data == THEIRS
    assert len(pinned) == 2 and pinned[0] != pinned[1] == snapshot.generation


def test_reencrypt_source_reads_never_mix_two_generations(gcs_bucket: str) -> None:
    """An object overwritten while re-encrypt streams it: the rest of the read fails (404 for the
    generation being read) instead of continuing with the new object's bytes."""
    fs = gcs_filesystem()
    big = f"{gcs_bucket}/big.bin"
    fs.pipe_file(big, os.urandom(20 << 20))
    store = reencrypt_gcs.GcsStore(location_of(f"gs://{gcs_bucket}", {}), "dataset")
    with store.open_source("big.bin") as (raw, generation):
        first = raw.read(1 << 20)
        fs.pipe_file(big, b"x" * (20 << 20))
        with pytest.raises(FileNotFoundError):
            while raw.read(1 << 20):
                pass
    assert first and generation != str(fs.info(big)["generation"])
