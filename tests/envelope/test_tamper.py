"""Every way of altering an envelope is rejected with a clear error, and leaves no plaintext behind.

Each test alters a copy of a fresh envelope, then asserts that ``decrypt`` raises a typed error with
a one-line message and that neither the destination nor any kmsflow temp file exists afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow import envelope
from kmsflow.envelope import DataKey, Envelope, EnvelopeError, RecordInvalidError, TamperedError, manifest

from .conftest import listing, write_random

LAYOUT = DataKey.generate().layout()
SEG = LAYOUT.ciphertext_segment_size  # ciphertext segment boundaries sit at multiples of this
HEADER = LAYOUT.header_size
PLAIN_SIZE = LAYOUT.first_segment_plaintext + LAYOUT.segment_plaintext + 12345  # 3 segments
CT_SIZE = LAYOUT.ciphertext_size(PLAIN_SIZE)


def rejected(kms: Any, src: Path, dst: Path, error: type[Exception] = TamperedError) -> str:
    """Decrypt must fail with ``error`` and leave nothing at (or next to) ``dst``; returns the message."""
    with pytest.raises(error) as info:
        envelope.decrypt(kms, str(src), str(dst))
    message = str(info.value)
    assert message and "\n" not in message
    leftovers = [
        p.name for p in dst.parent.iterdir() if p.name == dst.name or p.name.startswith(f".{dst.name}.")
    ]
    assert leftovers == [], f"plaintext left behind: {leftovers}"
    with pytest.raises(error):
        envelope.verify(kms, str(src))
    return message


@pytest.fixture
def file_env(kms: Any, key: str, tmp_path: Path) -> Path:
    write_random(tmp_path / "plain", PLAIN_SIZE, seed=7)
    envelope.encrypt(kms, key, str(tmp_path / "plain"), str(tmp_path / "enc"))
    assert (tmp_path / "enc").stat().st_size == CT_SIZE
    return tmp_path / "enc"


def make_dataset(kms: Any, key: str, root: Path, name: str, seed: int = 0) -> Path:
    for i, rel in enumerate(["a/shard-0", "a/shard-1", "b/shard-2"]):
        write_random(root / f"{name}.src" / rel, 4096, seed=seed + i)
    envelope.encrypt(kms, key, str(root / f"{name}.src"), str(root / name))
    return root / name


@pytest.fixture
def dataset_env(kms: Any, key: str, tmp_path: Path) -> Path:
    return make_dataset(kms, key, tmp_path, "ds")


def flip(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


# ----------------------------------------------------------------------------------- data bytes

DATA_OFFSETS = [0, 1, HEADER - 1, HEADER, HEADER + 1, SEG - 17, SEG - 1, SEG, SEG + 1, 2 * SEG - 1, 2 * SEG]
DATA_OFFSETS += [CT_SIZE - 17, CT_SIZE - 16, CT_SIZE - 1]


@pytest.mark.parametrize("offset", DATA_OFFSETS)
def test_flipped_data_bit_is_rejected(kms: Any, file_env: Path, offset: int) -> None:
    flip(file_env, offset, bit=offset % 8)
    assert "failed authentication" in rejected(kms, file_env, file_env.parent / "out")


@pytest.mark.parametrize("length", [0, 1, HEADER - 1, HEADER, SEG - 1, SEG, SEG + 1, 2 * SEG, CT_SIZE - 1])
def test_truncation_at_and_between_segment_boundaries_is_rejected(
    kms: Any, file_env: Path, length: int
) -> None:
    with open(file_env, "r+b") as f:
        f.truncate(length)
    rejected(kms, file_env, file_env.parent / "out")


@pytest.mark.parametrize("extra", [1, 16, SEG])
def test_appended_bytes_are_rejected(kms: Any, file_env: Path, extra: int) -> None:
    with open(file_env, "ab") as f:
        f.write(b"\0" * extra)
    rejected(kms, file_env, file_env.parent / "out")


def test_data_replaced_by_another_envelope_of_same_size_is_rejected(
    kms: Any, key: str, file_env: Path
) -> None:
    other = file_env.parent / "other"
    write_random(file_env.parent / "plain2", PLAIN_SIZE, seed=8)
    envelope.encrypt(kms, key, str(file_env.parent / "plain2"), str(other))
    shutil.copy(other, file_env)
    rejected(kms, file_env, file_env.parent / "out")


# --------------------------------------------------------------------------------- record bytes


def test_every_flipped_record_byte_is_rejected(kms: Any, file_env: Path) -> None:
    """All fields matter: JSON syntax, names, sizes, digests, ids, key names, dates, wrapped key."""
    record = Path(f"{file_env}.kmsflow.json")
    original = record.read_bytes()
    errors: set[str] = set()
    for offset in range(len(original)):
        altered = bytearray(original)
        altered[offset] ^= 1 << (offset % 8)
        record.write_bytes(bytes(altered))
        try:
            envelope.decrypt(kms, str(file_env), str(file_env.parent / "out"))
        except EnvelopeError as exc:
            errors.add(type(exc).__name__)
            assert "\n" not in str(exc)
        else:
            pytest.fail(f"flipping record byte {offset} ({chr(original[offset])!r}) went unnoticed")
        assert not (file_env.parent / "out").exists()
    record.write_bytes(original)
    envelope.verify(kms, str(file_env))
    assert errors <= {"TamperedError", "RecordInvalidError", "UnsupportedFormatError", "InvalidPathError"}


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["files"][0].update(size=r["files"][0]["size"] - 1),
        lambda r: r["files"][0].update(ciphertext_crc32c="AAAAAA=="),
        lambda r: r["key"].update(crypto_key_version=r["key"]["crypto_key_version"][:-1] + "2"),
        lambda r: r["key"].update(wrapped_at="2020-01-01T00:00:00Z"),
        lambda r: r.update(envelope_id="0" * 32),
        lambda r: r.update(created="2020-01-01T00:00:00Z"),
    ],
    ids=["size", "digest", "key-version", "wrapped-at", "envelope-id", "created"],
)
def test_consistent_record_edits_are_rejected(kms: Any, file_env: Path, edit: Any) -> None:
    record = Path(f"{file_env}.kmsflow.json")
    body = json.loads(record.read_text())
    edit(body)
    record.write_text(json.dumps(body))
    rejected(kms, file_env, file_env.parent / "out")


def test_a_wrong_checksum_sealed_by_its_writer_fails_verify_not_decrypt(kms: Any, file_env: Path) -> None:
    """A record whose CRC32C a faulty writer got wrong, authentically sealed: the data itself is
    intact (Tink authenticates it), so decrypt returns it; ``verify``, the audit, flags the record."""
    record = Path(f"{file_env}.kmsflow.json")
    opened = Envelope.open(str(file_env))
    fields = opened.record.model_dump(mode="json", exclude={"manifest"})
    fields["files"][0]["ciphertext_crc32c"] = "AAAAAA=="
    record.write_bytes(manifest.seal(opened.unlock(kms), fields).to_json())

    with pytest.raises(TamperedError, match="CRC32C differs"):
        envelope.verify(kms, str(file_env))
    envelope.decrypt(kms, str(file_env), str(file_env.parent / "out"))
    assert (file_env.parent / "out").read_bytes() == (file_env.parent / "plain").read_bytes()


def test_record_that_is_not_json_is_invalid(kms: Any, file_env: Path) -> None:
    Path(f"{file_env}.kmsflow.json").write_text("{not json")
    assert "not a JSON envelope record" in rejected(
        kms, file_env, file_env.parent / "out", RecordInvalidError
    )


def test_missing_record_is_reported(kms: Any, file_env: Path) -> None:
    Path(f"{file_env}.kmsflow.json").unlink()
    rejected(kms, file_env, file_env.parent / "out", envelope.RecordNotFoundError)


def test_newer_format_version_asks_for_an_upgrade(kms: Any, file_env: Path) -> None:
    record = Path(f"{file_env}.kmsflow.json")
    record.write_text(record.read_text().replace('"version": 1', '"version": 2'))
    assert "upgrade kmsflow" in rejected(
        kms, file_env, file_env.parent / "out", envelope.UnsupportedFormatError
    )


# ------------------------------------------------------------------------------------- datasets


def test_swapped_shards_are_rejected(kms: Any, dataset_env: Path) -> None:
    a, b = dataset_env / "a/shard-0", dataset_env / "a/shard-1"
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    assert "a/shard-0" in rejected(kms, dataset_env, dataset_env.parent / "out")


def test_reordered_record_entries_are_rejected(kms: Any, dataset_env: Path) -> None:
    record = dataset_env / "_kmsflow/envelope.json"
    body = json.loads(record.read_text())
    body["files"].reverse()
    record.write_text(json.dumps(body))
    # Refused before the manifest is even opened: `files` must be sorted (docs/FORMAT.md §2).
    assert "must be sorted by path" in rejected(
        kms, dataset_env, dataset_env.parent / "out", RecordInvalidError
    )


def test_renamed_shard_is_rejected(kms: Any, dataset_env: Path) -> None:
    (dataset_env / "b/shard-2").rename(dataset_env / "b/shard-3")
    rejected(kms, dataset_env, dataset_env.parent / "out")


def test_renamed_shard_with_record_edited_to_match_is_rejected(kms: Any, dataset_env: Path) -> None:
    (dataset_env / "b/shard-2").rename(dataset_env / "b/shard-3")
    record = dataset_env / "_kmsflow/envelope.json"
    record.write_text(record.read_text().replace("b/shard-2", "b/shard-3"))
    rejected(kms, dataset_env, dataset_env.parent / "out")


def test_removed_shard_and_entry_is_rejected(kms: Any, dataset_env: Path) -> None:
    (dataset_env / "b/shard-2").unlink()
    record = dataset_env / "_kmsflow/envelope.json"
    body = json.loads(record.read_text())
    body["files"] = [f for f in body["files"] if f["path"] != "b/shard-2"]
    record.write_text(json.dumps(body))
    rejected(kms, dataset_env, dataset_env.parent / "out")


def test_missing_or_extra_shard_is_rejected(kms: Any, dataset_env: Path) -> None:
    (dataset_env / "a/extra").write_bytes(b"smuggled")
    assert "not in the envelope" in rejected(kms, dataset_env, dataset_env.parent / "out")
    (dataset_env / "a/extra").unlink()
    (dataset_env / "a/shard-1").unlink()
    assert "missing" in rejected(kms, dataset_env, dataset_env.parent / "out")


def test_shard_from_another_envelope_is_rejected(
    kms: Any, key: str, tmp_path: Path, dataset_env: Path
) -> None:
    other = make_dataset(kms, key, tmp_path, "other", seed=0)  # same plaintext, same key, other id
    shutil.copy(other / "b/shard-2", dataset_env / "b/shard-2")
    assert "b/shard-2" in rejected(kms, dataset_env, tmp_path / "out")


def test_swapped_records_between_envelopes_are_rejected(
    kms: Any, key: str, tmp_path: Path, dataset_env: Path
) -> None:
    other = make_dataset(kms, key, tmp_path, "other", seed=0)
    shutil.copy(other / "_kmsflow/envelope.json", dataset_env / "_kmsflow/envelope.json")
    rejected(kms, dataset_env, tmp_path / "out")


def test_wrapped_key_moved_between_records_is_refused_by_kms(
    kms: Any, key: str, tmp_path: Path, dataset_env: Path
) -> None:
    other = make_dataset(kms, key, tmp_path, "other", seed=0)
    mine = dataset_env / "_kmsflow/envelope.json"
    body = json.loads(mine.read_text())
    body["key"]["wrapped_keyset"] = json.loads((other / "_kmsflow/envelope.json").read_text())["key"][
        "wrapped_keyset"
    ]
    mine.write_text(json.dumps(body))
    assert "KMS refused to unwrap" in rejected(kms, dataset_env, tmp_path / "out")


def test_failure_at_the_last_shard_leaves_no_plaintext_at_all(kms: Any, dataset_env: Path) -> None:
    flip(dataset_env / "b/shard-2", 4000)  # the last file in record order: two shards decrypted first
    rejected(kms, dataset_env, dataset_env.parent / "out")
    assert listing(dataset_env.parent / "out") == []


# ------------------------------------------------------------------------------ property checks


@pytest.fixture(scope="module")
def pristine(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """One multi-segment file envelope, shared by the property tests (each restores it)."""
    import uuid

    from .conftest import make_key

    root = tmp_path_factory.mktemp("prop")
    key = make_key(emulator.client(), f"ring-{uuid.uuid4().hex[:12]}")
    write_random(root / "plain", LAYOUT.first_segment_plaintext + 5000, seed=3)
    envelope.encrypt(emulator.client(), key, str(root / "plain"), str(root / "enc"))
    return root / "enc", (root / "enc").read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_bit_flip_or_cut_is_rejected(
    emulator: Any, pristine: tuple[Path, bytes], data: Any
) -> None:
    path, good = pristine
    bad = bytearray(good)
    if data.draw(st.booleans(), label="flip (else truncate)"):
        offset = data.draw(st.integers(0, len(good) - 1), label="offset")
        bad[offset] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    else:
        bad = bad[: data.draw(st.integers(0, len(good) - 1), label="length")]
    path.write_bytes(bytes(bad))
    try:
        rejected(emulator.client(), path, path.parent / "out")
    finally:
        path.write_bytes(good)
