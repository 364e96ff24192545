"""Round trips through the real KMS client and the emulator: sizes, datasets, moves, KMS call counts."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kmsflow import envelope
from kmsflow.envelope import DataKey, DestinationExistsError, InvalidPathError, SourceNotFoundError

from .conftest import counting_client, listing, make_key, write_random

LAYOUT = DataKey.generate().layout()
FIRST = LAYOUT.first_segment_plaintext
SEG = LAYOUT.segment_plaintext
# Plaintext sizes at which Tink starts a new segment, and one byte either side.
BOUNDARIES = sorted({0, 1, *(b + d for b in (FIRST, FIRST + SEG, FIRST + 2 * SEG) for d in (-1, 0, 1))})


@pytest.fixture(scope="module")
def module_key(emulator: Any) -> str:
    return make_key(emulator.client(), f"ring-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kmsflow-rt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_segment_layout_comes_from_the_key_parameters() -> None:
    assert LAYOUT.ciphertext_segment_size == 1 << 20  # the 1MB template
    assert LAYOUT.header_size == 1 + 32 + 7  # length byte, 32-byte salt, 7-byte nonce prefix
    assert FIRST == (1 << 20) - 40 - 16 and SEG == (1 << 20) - 16


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from(BOUNDARIES) | st.integers(min_value=0, max_value=FIRST + 2 * SEG + 10))
def test_file_round_trip_any_size(emulator: Any, module_key: str, scratch: Path, size: int) -> None:
    kms = emulator.client()
    work = scratch / uuid.uuid4().hex
    data = write_random(work / "plain.bin", size, seed=size)
    record = envelope.encrypt(kms, module_key, str(work / "plain.bin"), str(work / "enc.bin"))
    (entry,) = record.files
    assert entry.size == size
    # Tink's actual output matches the segment arithmetic derived from the key parameters.
    assert entry.ciphertext_size == LAYOUT.ciphertext_size(size) == (work / "enc.bin").stat().st_size
    envelope.decrypt(kms, str(work / "enc.bin"), str(work / "back.bin"))
    assert (work / "back.bin").read_bytes() == data
    shutil.rmtree(work)


def test_dataset_round_trip_preserves_tree_and_bytes(kms: Any, key: str, tmp_path: Path) -> None:
    src = tmp_path / "ds"
    contents = {
        "a.bin": write_random(src / "a.bin", FIRST + 1, seed=1),
        "nested/deeper/b.parquet": write_random(src / "nested/deeper/b.parquet", 1000, seed=2),
        "empty": write_random(src / "empty", 0),
        "ünïcode name.txt": write_random(src / "ünïcode name.txt", 7, seed=3),
    }
    record = envelope.encrypt(kms, key, str(src), str(tmp_path / "enc"))
    assert record.kind == "dataset" and [f.path for f in record.files] == sorted(contents)
    assert listing(tmp_path / "enc") == sorted(
        [
            "_kmsflow",
            "_kmsflow/envelope.json",
            "a.bin",
            "empty",
            "nested",
            "nested/deeper",
            "nested/deeper/b.parquet",
            "ünïcode name.txt",
        ]
    )
    envelope.verify(kms, str(tmp_path / "enc"))
    envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert {p: (tmp_path / "out" / p).read_bytes() for p in contents} == contents
    assert listing(tmp_path / "out") == listing(src)


def test_empty_dataset_round_trips(kms: Any, key: str, tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    assert envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "enc")).files == ()
    envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert listing(tmp_path / "out") == []


def test_envelope_moved_whole_still_decrypts(kms: Any, key: str, tmp_path: Path) -> None:
    data = write_random(tmp_path / "ds" / "x" / "shard-0", 5000)
    envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "a" / "enc"))
    shutil.move(str(tmp_path / "a" / "enc"), str(tmp_path / "b" / "moved"))
    envelope.decrypt(kms, str(tmp_path / "b" / "moved"), str(tmp_path / "out"))
    assert (tmp_path / "out" / "x" / "shard-0").read_bytes() == data

    single = write_random(tmp_path / "model.bin", 3000, seed=9)
    envelope.encrypt(kms, key, str(tmp_path / "model.bin"), str(tmp_path / "model.enc"))
    (tmp_path / "elsewhere").mkdir()
    for name in ("model.enc", "model.enc.kmsflow.json"):
        shutil.copy(tmp_path / name, tmp_path / "elsewhere" / name.replace("model.enc", "renamed"))
    envelope.decrypt(kms, str(tmp_path / "elsewhere" / "renamed"), str(tmp_path / "model.out"))
    assert (tmp_path / "model.out").read_bytes() == single


def test_file_urls_work_like_paths(kms: Any, key: str, tmp_path: Path) -> None:
    data = write_random(tmp_path / "in", 100)
    envelope.encrypt(kms, key, f"file://{tmp_path}/in", f"file://{tmp_path}/enc")
    envelope.decrypt(kms, f"file://{tmp_path}/enc", f"file://{tmp_path}/out")
    assert (tmp_path / "out").read_bytes() == data


def test_one_kms_call_each_way_for_200_files(emulator: Any, key: str, tmp_path: Path) -> None:
    for i in range(200):
        write_random(tmp_path / "ds" / f"part-{i // 50}" / f"shard-{i:05d}", 64 + i, seed=i)
    client, counter = counting_client(emulator.endpoint)
    envelope.encrypt(client, key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    assert dict(counter.calls) == {"Encrypt": 1}
    counter.calls.clear()
    envelope.decrypt(client, str(tmp_path / "enc"), str(tmp_path / "out"))
    assert dict(counter.calls) == {"Decrypt": 1}
    counter.calls.clear()
    env = envelope.Envelope.open(str(tmp_path / "enc"))
    env.verify(client)
    env.verify(client)  # the unwrapped key is cached in memory for the envelope
    assert dict(counter.calls) == {"Decrypt": 1}
    assert listing(tmp_path / "out") == listing(tmp_path / "ds")


def test_record_names_exact_version_and_holds_no_plaintext_digest(kms: Any, key: str, tmp_path: Path) -> None:
    write_random(tmp_path / "in", 10)
    envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    record = json.loads((tmp_path / "enc.kmsflow.json").read_text())
    assert record["key"]["crypto_key"] == key
    assert record["key"]["crypto_key_version"] == f"{key}/cryptoKeyVersions/1"
    assert record["format"] == "kmsflow.envelope" and record["version"] == 1
    assert set(record["files"][0]) == {"path", "size", "ciphertext_size", "ciphertext_crc32c"}
    summary = envelope.inspect(str(tmp_path / "enc"))
    assert summary["crypto_key_version"] == f"{key}/cryptoKeyVersions/1"
    assert summary["envelope_id"] == record["envelope_id"] and summary["plaintext_size"] == 10
    json.dumps(summary)  # JSON-safe


def test_refuses_to_overwrite_and_reports_missing_source(kms: Any, key: str, tmp_path: Path) -> None:
    write_random(tmp_path / "in", 10)
    (tmp_path / "taken").write_bytes(b"keep me")
    with pytest.raises(DestinationExistsError, match="already exists"):
        envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "taken"))
    envelope.encrypt(kms, key, str(tmp_path / "in"), str(tmp_path / "enc"))
    with pytest.raises(DestinationExistsError):
        envelope.decrypt(kms, str(tmp_path / "enc"), str(tmp_path / "taken"))
    assert (tmp_path / "taken").read_bytes() == b"keep me"
    with pytest.raises(SourceNotFoundError, match="no such file"):
        envelope.encrypt(kms, key, str(tmp_path / "missing"), str(tmp_path / "enc2"))


def test_encrypting_an_envelope_as_a_dataset_is_refused(kms: Any, key: str, tmp_path: Path) -> None:
    write_random(tmp_path / "ds" / "a", 10)
    envelope.encrypt(kms, key, str(tmp_path / "ds"), str(tmp_path / "enc"))
    with pytest.raises(InvalidPathError, match="reserved"):
        envelope.encrypt(kms, key, str(tmp_path / "enc"), str(tmp_path / "enc2"))
    assert not (tmp_path / "enc2").exists()


NAMES = st.text(alphabet="abcxyz019_-. é", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tree=st.dictionaries(
        st.lists(NAMES, min_size=1, max_size=3).map("/".join),
        st.integers(min_value=0, max_value=FIRST + 3),
        max_size=6,
    )
)
@example(tree={"..0": 1, ".hidden": 2, "a/...": 3, " ": 0})  # names that only look like '..'
def test_dataset_round_trip_any_tree(
    emulator: Any, module_key: str, scratch: Path, tree: dict[str, int]
) -> None:
    # a path may not be both a file and a directory
    files = {p: n for p, n in tree.items() if not any(o.startswith(p + "/") for o in tree)}
    kms = emulator.client()
    work = scratch / uuid.uuid4().hex
    (work / "src").mkdir(parents=True)
    contents = {p: write_random(work / "src" / p, n, seed=n) for p, n in files.items()}
    record = envelope.encrypt(kms, module_key, str(work / "src"), str(work / "enc"))
    assert [f.path for f in record.files] == sorted(contents)
    envelope.decrypt(kms, str(work / "enc"), str(work / "out"))
    assert {p: (work / "out" / p).read_bytes() for p in contents} == contents
    shutil.rmtree(work)
