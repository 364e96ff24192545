"""Records written by someone who may only encrypt: every malformed one is a RecordInvalidError.

Regressions: 100,000 nested ``[`` crashed inspect/inventory with RecursionError; a record listing a
path twice ended in "unexpected error (a bug)"; records had no size cap, nor a single timestamp
spelling (inventory compares times as strings); encrypt could write records readers must refuse.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow import envelope
from kmsflow.clock import record_time
from kmsflow.envelope import manifest, storage
from kmsflow.envelope.errors import DatasetTooLargeError, RecordInvalidError
from kmsflow.envelope.keyset import DataKey
from kmsflow.envelope.record import (
    MAX_RECORD_FILES,
    MAX_RECORD_SIZE,
    EnvelopeRecord,
    record_size_bound,
)
from kmsflow.inventory import FindingKind, scan

from .test_record_json import VALID as FILE_RECORD

encrypt_module = importlib.import_module("kmsflow.envelope.encrypt")  # the package exports the function
VALID: dict[str, Any] = {**FILE_RECORD, "kind": "dataset", "files": []}


def record_bytes(**changes: Any) -> bytes:
    doc = json.loads(json.dumps(VALID))
    for name, value in changes.items():
        if name == "wrapped_at":
            doc["key"]["wrapped_at"] = value
        else:
            doc[name] = value
    return json.dumps(doc, ensure_ascii=False).encode()


def entry(path: str) -> dict[str, Any]:
    return {"path": path, "size": 1, "ciphertext_size": 57, "ciphertext_crc32c": "AAAAAA=="}


def invalid(data: bytes) -> str:
    with pytest.raises(RecordInvalidError) as info:
        EnvelopeRecord.from_json(data, "r")
    message = str(info.value)
    assert message.startswith("r: ") and "\n" not in message and len(message) < 300
    return message


# --- nesting, garbage, size -------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [b"[", b"{", b'{"a":', b'{"files":['])
def test_deeply_nested_json_is_invalid_not_a_recursion_error(opener: bytes) -> None:
    invalid(opener * 100_000)
    invalid(b'{"format":"kmsflow.envelope","files":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_inspect_and_inventory_report_a_nested_record(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"ciphertext")
    (tmp_path / "x.kmsflow.json").write_bytes(b"[" * 100_000)

    with pytest.raises(RecordInvalidError, match="not a JSON envelope record"):
        envelope.inspect(str(tmp_path / "x"))
    inventory = scan([str(tmp_path)])
    assert [f.kind for f in inventory.findings] == [FindingKind.INVALID_RECORD]


def test_a_record_past_the_cap_is_refused_unparsed() -> None:
    message = invalid(b" " * (MAX_RECORD_SIZE + 1))
    assert "larger than 128 MiB" in message


def test_envelope_open_reads_no_more_than_the_cap(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"ciphertext")
    with open(tmp_path / "x.kmsflow.json", "wb") as f:
        f.truncate(MAX_RECORD_SIZE + (64 << 20))  # sparse: costs no disk

    with pytest.raises(RecordInvalidError, match="larger than 128 MiB"):
        envelope.inspect(str(tmp_path / "x"))


def test_read_file_reads_at_most_limit_plus_one_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record"
    path.write_bytes(b"x" * 1_000_000)
    read: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        block = real_read(fd, n)
        read.append(len(block))
        return block

    monkeypatch.setattr(storage.os, "read", counting_read)
    with pytest.raises(RecordInvalidError, match="record larger than"):
        storage.read_file(str(path), limit=100_000)
    assert sum(read) == 100_001
    assert storage.read_file(str(path), limit=1_000_000) == b"x" * 1_000_000


def test_read_object_asks_for_at_most_limit_plus_one_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/strict/record", b"y" * 5000)
    ranges: list[tuple[Any, Any]] = []
    real_cat = fs.cat_file

    def spying_cat(path: str, start: Any = None, end: Any = None, **kwargs: Any) -> bytes:
        ranges.append((start, end))
        return bytes(real_cat(path, start=start, end=end, **kwargs))

    monkeypatch.setattr(fs, "cat_file", spying_cat)
    with pytest.raises(RecordInvalidError, match="memory://strict/record: record larger than"):
        storage.read_object(fs, "/strict/record", "memory://strict/record", limit=4999)
    assert storage.read_object(fs, "/strict/record", "memory://strict/record", limit=5000) == b"y" * 5000
    assert ranges == [(0, 5000), (0, 5001)]
    assert storage.resolve("memory://strict/record").read_bytes() == b"y" * 5000
    assert ranges[-1] == (0, MAX_RECORD_SIZE + 1)


# --- files: sorted by code point, each path once -----------------------------------------------------


def test_a_path_listed_twice_is_invalid() -> None:
    assert "must be sorted by path, each path once" in invalid(
        record_bytes(files=[entry("a/x"), entry("a/x")])
    )


@pytest.mark.parametrize(
    "paths", [["b", "a"], ["a", "B"], ["é", "z"], ["\U0001f600", "\uffff"], ["a/b", "a"]]
)
def test_an_unsorted_list_is_invalid(paths: list[str]) -> None:
    invalid(record_bytes(files=[entry(p) for p in paths]))


def test_code_point_order_is_utf8_byte_order_and_accepted() -> None:
    paths = ["B", "a", "a/b", "a0", "z", "é", "\uffff", "\U0001f600"]
    assert paths == sorted(paths, key=lambda p: p.encode("utf-8"))

    record = EnvelopeRecord.from_json(record_bytes(files=[entry(p) for p in paths]), "r")
    assert [f.path for f in record.files] == paths


def test_more_files_than_the_cap_are_invalid() -> None:
    files = [entry(f"{i:07}") for i in range(MAX_RECORD_FILES + 1)]
    assert "at most 200000 items" in invalid(record_bytes(files=files))


# --- timestamps: exactly one spelling ----------------------------------------------------------------

OTHER_SPELLINGS = [
    "2026-11-30T10:00:00+00:00",
    "2026-11-30T10:00:00.000Z",
    "2026-11-30T10:00:00z",
    "2026-11-30t10:00:00Z",
    "2026-11-30 10:00:00Z",
    "2026-11-30T10:00Z",
    "2026-11-30",
    "2026-13-30T10:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-11-30T24:00:00Z",
    "2026-11-30T10:00:60Z",  # strptime's %S would take it; a datetime does not
    "0000-01-01T00:00:00Z",
    "٢٠٢٦-11-30T10:00:00Z",  # Arabic-Indic digits match \d, not [0-9]
    " 2026-11-30T10:00:00Z",
    "2026-11-30T10:00:00Z\n",
    "",
]


@pytest.mark.parametrize("spelling", OTHER_SPELLINGS)
@pytest.mark.parametrize("field", ["created", "wrapped_at"])
def test_other_timestamp_spellings_are_invalid(field: str, spelling: str) -> None:
    assert "YYYY-MM-DDTHH:MM:SSZ" in invalid(record_bytes(**{field: spelling}))


def test_what_writers_write_is_the_one_spelling() -> None:
    now = record_time()
    record = EnvelopeRecord.from_json(record_bytes(created=now, wrapped_at=now), "r")
    assert record.created == record.key.wrapped_at == now


# --- encrypt never writes a record its readers refuse -----------------------------------------------


class NoKms:
    """A KMS client that fails the test if encrypt calls it at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"KMS called ({name}) before the dataset was checked")


def test_encrypt_refuses_too_many_files_before_any_kms_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(b"x")
    monkeypatch.setattr(encrypt_module, "MAX_RECORD_FILES", 3)

    with pytest.raises(
        DatasetTooLargeError, match=r"4 files, more than the 3 .*split it into several envelopes"
    ):
        encrypt_module.encrypt(NoKms(), "k", str(src), str(tmp_path / "dst"))  # type: ignore[arg-type]
    assert not (tmp_path / "dst").exists()


def test_encrypt_refuses_paths_too_long_for_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ("p" * 200)).write_bytes(b"x")
    monkeypatch.setattr(encrypt_module, "MAX_RECORD_SIZE", record_size_bound(["p" * 100]))

    with pytest.raises(DatasetTooLargeError, match=r"paths are too long.*pack the files"):
        encrypt_module.encrypt(NoKms(), "k", str(src), str(tmp_path / "dst"))  # type: ignore[arg-type]


KEY = DataKey.generate()
path_texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(path_texts, min_size=0, max_size=40, unique=True).map(sorted))
def test_the_size_bound_holds_for_any_paths(paths: list[str]) -> None:
    """The bound encrypt checks is never below the record it then writes (largest sizes, a long
    key name, a wrapped keyset longer than KMS returns)."""
    name = "projects/" + "p" * 30 + "/locations/" + "l" * 30 + "/keyRings/" + "r" * 63
    key_name = f"{name}/cryptoKeys/{'k' * 63}"
    fields = {
        "envelope_id": "0" * 32,
        "kind": "dataset",
        "created": record_time(),
        "key": {
            "crypto_key": key_name,
            "crypto_key_version": f"{key_name}/cryptoKeyVersions/{10**9}",
            "wrapped_keyset": "A" * 1024,
            "wrapped_at": record_time(),
        },
        "files": [
            {"path": p, "size": 10**19, "ciphertext_size": 10**19, "ciphertext_crc32c": "AAAAAA=="}
            for p in paths
        ],
    }
    record = manifest.seal(KEY, fields)
    assert len(record.to_json()) <= record_size_bound(paths)


# --- the property: a record is a valid record or a RecordInvalidError, nothing else -------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def parses_or_is_invalid(data: bytes) -> None:
    """A valid record, or RecordInvalidError: any other exception fails the test."""
    with contextlib.suppress(RecordInvalidError):
        EnvelopeRecord.from_json(data, "r")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_invalid(data: bytes) -> None:
    parses_or_is_invalid(data)


@settings(max_examples=300)
@given(st.sampled_from([*sorted(VALID), "files", "key"]), json_values)
def test_any_field_value_parses_or_is_invalid(field: str, value: Any) -> None:
    doc = {**VALID, field: value}
    parses_or_is_invalid(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=200_000),
    st.sampled_from([b"[", b"{", b'{"":', b"[{", b'{"files":[']),
    st.booleans(),
)
def test_any_nesting_parses_or_is_invalid(depth: int, opener: bytes, closed: bool) -> None:
    closer = {b"[": b"]", b"{": b"}", b'{"":': b"}", b"[{": b"}]", b'{"files":[': b"]}"}[opener]
    parses_or_is_invalid(opener * depth + (closer * depth if closed else b""))
