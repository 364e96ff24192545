"""``encrypt_bytes`` / ``Envelope.read_bytes``: a file envelope from and to memory is the same
envelope a file makes (the CLI's decrypt and verify read it), at every size around Tink's segment
boundaries, and nothing else is accepted."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsflow import envelope
from kmsflow.envelope import DataKey, DestinationExistsError, Envelope, EnvelopeError, TamperedError
from kmsflow.envelope.encrypt import encrypt_bytes

from .conftest import make_key

LAYOUT = DataKey.generate().layout()
FIRST, SEG = LAYOUT.first_segment_plaintext, LAYOUT.segment_plaintext
BOUNDARIES = sorted({0, 1, *(b + d for b in (FIRST, FIRST + SEG) for d in (-1, 0, 1))})


@pytest.fixture(scope="module")
def module_key(emulator: Any) -> str:
    return make_key(emulator.client(), f"ring-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kmsflow-mem-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from(BOUNDARIES) | st.integers(min_value=0, max_value=FIRST + SEG + 10))
def test_memory_round_trip_is_an_ordinary_file_envelope(
    emulator: Any, module_key: str, scratch: Path, size: int
) -> None:
    kms = emulator.client()
    data = uuid.uuid4().bytes * (size // 16) + b"x" * (size % 16)
    dst = scratch / f"{uuid.uuid4().hex}.enc"
    record = encrypt_bytes(kms, module_key, data, str(dst))
    assert record.kind == "file" and record.plaintext_size == size
    assert Envelope.open(str(dst)).read_bytes(kms) == data
    out = scratch / f"{uuid.uuid4().hex}.out"
    envelope.decrypt(kms, str(dst), str(out))  # what `kmsflow decrypt` does
    assert out.read_bytes() == data
    envelope.verify(kms, str(dst))


def test_existing_destination_is_refused(emulator: Any, module_key: str, tmp_path: Path) -> None:
    dst = tmp_path / "v.enc"
    dst.write_bytes(b"keep me")
    with pytest.raises(DestinationExistsError):
        encrypt_bytes(emulator.client(), module_key, b"new", str(dst))
    assert dst.read_bytes() == b"keep me" and not (tmp_path / "v.enc.kmsflow.json").exists()


def test_tampered_ciphertext_never_reaches_memory(emulator: Any, module_key: str, tmp_path: Path) -> None:
    dst = tmp_path / "v.enc"
    encrypt_bytes(emulator.client(), module_key, b"secret " * 1000, str(dst))
    raw = bytearray(dst.read_bytes())
    raw[len(raw) // 2] ^= 1
    dst.write_bytes(bytes(raw))
    with pytest.raises(TamperedError):
        Envelope.open(str(dst)).read_bytes(emulator.client())


def test_a_dataset_does_not_read_into_memory(emulator: Any, module_key: str, tmp_path: Path) -> None:
    src = tmp_path / "ds"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    envelope.encrypt(emulator.client(), module_key, str(src), str(tmp_path / "ds.enc"))
    with pytest.raises(EnvelopeError, match="only a file envelope"):
        Envelope.open(str(tmp_path / "ds.enc")).read_bytes(emulator.client())
