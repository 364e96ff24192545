"""``storage.read_file`` reads records with bare system calls (few GIL handoffs); it must still return
exactly the file's bytes, whatever their size relative to its read block."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.envelope import storage

BLOCK = storage.READ_BLOCK
sizes = st.one_of(
    st.integers(0, 64), st.sampled_from([BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 3 * BLOCK + 7])
)


@settings(max_examples=40, deadline=None)
@given(size=sizes, seed=st.binary(min_size=1, max_size=16))
def test_read_file_returns_exactly_the_bytes(size: int, seed: bytes) -> None:
    data = (seed * (size // len(seed) + 1))[:size]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.kmsflow.json"
        path.write_bytes(data)
        assert storage.read_file(str(path)) == data


def test_read_file_of_a_missing_record_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_file(str(tmp_path / "gone.kmsflow.json"))
