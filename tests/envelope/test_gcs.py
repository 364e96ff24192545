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


@pytest.fixture
def gcs_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL (or API path) of every request gcsfs sends from now on, in order."""
    import gcsfs.core

    sent: list[str] = []
    real = gcsfs.core.GCSFileSystem._call

    async def counted(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(path.format(*args) if "{}" in path else path)
        return await real(self, method, path, *args, **kwargs)

    monkeypatch.setattr(gcsfs.core.GCSFileSystem, "_call", counted)
    return sent


def test_a_file_envelope_on_gcs_is_found_with_one_request(
    kms: Any, key: str, gcs_bucket: str, tmp_path: Path, gcs_requests: list[str]
) -> None:
    """Every request to a store is a round trip: opening a gs:// file envelope reads its sidecar
    record in one GET, with no directory or existence probes before it (it took three round
    trips); decrypting it then learns the data object's generation in one round trip and reads
    it."""
    src = tmp_path / "metrics.json"
    src.write_bytes(os.urandom(3000))
    url = f"gs://{gcs_bucket}/runs/metrics.json"
    envelope.encrypt(kms, key, str(src), url)
    calls = gcs_requests
    calls.clear()
    opened = envelope.Envelope.open(url)
    assert len(calls) == 1 and calls[0].endswith("metrics.json.kmsflow.json?alt=media"), calls
    calls.clear()
    opened.decrypt(kms, str(tmp_path / "back.json"))
    assert (tmp_path / "back.json").read_bytes() == src.read_bytes()
    # the data object's metadata (size, generation) then one GET of its bytes, pinned to that
    # generation; the record is not read again. gcsfs asks for the metadata with a listing alongside,
    # concurrently, and when the listing answers first it asks for the object once more while the
    # first answer is already on its way: requests, but not round trips, so up to two are allowed.
    media = [path for path in calls if "alt=media" in path]
    assert len(media) == 1 and "generation=" in media[0], calls
    metadata = [path for path in calls if path not in media]
    assert all("metrics.json.kmsflow.json" not in path for path in calls), calls
    assert set(metadata) <= {f"b/{gcs_bucket}/o/runs/metrics.json", f"b/{gcs_bucket}/o"}, calls
    assert metadata.count(f"b/{gcs_bucket}/o") <= 1 and len(metadata) <= 3, calls


def test_a_dataset_on_gcs_is_found_with_two_requests_and_its_record_path_always_names_it(
    kms: Any, key: str, gcs_bucket: str, tmp_path: Path, gcs_requests: list[str]
) -> None:
    """A gs:// dataset's record is read directly after the sidecar's is found missing (two
    requests, no directory probes); and a dataset under a path that also has a (stray) sidecar
    stays reachable by its record's path."""
    fs = gcs_filesystem()
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a").write_bytes(b"alpha")
    envelope.encrypt(kms, key, str(tmp_path / "ds"), f"gs://{gcs_bucket}/enc")
    gcs_requests.clear()
    assert envelope.Envelope.open(f"gs://{gcs_bucket}/enc").record.kind == "dataset"
    assert len(gcs_requests) == 2 and all("alt=media" in path for path in gcs_requests), gcs_requests
    assert envelope.inspect(f"gs://{gcs_bucket}/enc")["kind"] == "dataset"
    fs.pipe(f"{gcs_bucket}/enc.kmsflow.json", fs.cat(f"{gcs_bucket}/enc/_kmsflow/envelope.json"))
    with pytest.raises(TamperedError):  # read as the file envelope the sidecar says, which it is not
        envelope.Envelope.open(f"gs://{gcs_bucket}/enc")
    record = f"gs://{gcs_bucket}/enc/_kmsflow/envelope.json"
    envelope.decrypt(kms, record, str(tmp_path / "out"))
    assert (tmp_path / "out" / "a").read_bytes() == b"alpha"


def test_a_gcs_dataset_is_read_without_a_request_per_file_beyond_its_get(
    kms: Any, key: str, gcs_bucket: str, tmp_path: Path, gcs_requests: list[str]
) -> None:
    """Each file of a gs:// dataset is read with one GET, pinned to the generation its listing
    gave, and no metadata request of its own (gcsfs answers those from the listing it cached):
    on a store a round trip away, a dataset of many small files costs a round trip per file,
    not two."""
    fs = gcs_filesystem()
    raw = [os.urandom(2000 + i) for i in range(6)]
    for i, data in enumerate(raw):
        fs.pipe(f"{gcs_bucket}/raw/s{i}", data)
    calls = gcs_requests
    calls.clear()
    envelope.encrypt(kms, key, f"gs://{gcs_bucket}/raw", f"gs://{gcs_bucket}/enc")
    envelope.decrypt(kms, f"gs://{gcs_bucket}/enc", str(tmp_path / "out"))
    for i in range(6):
        assert (tmp_path / "out" / f"s{i}").read_bytes() == raw[i]
        reads = [c for c in calls if c.split("?")[0].endswith((f"raw%2Fs{i}", f"enc%2Fs{i}"))]
        assert len(reads) == 2 and all("alt=media" in c and "generation=" in c for c in reads), reads
        assert not [c for c in calls if c.endswith((f"/raw/s{i}", f"/enc/s{i}"))], calls


def test_a_gcs_source_file_is_looked_at_once_and_read_at_that_generation(
    kms: Any, key: str, gcs_bucket: str, tmp_path: Path, gcs_requests: list[str]
) -> None:
    """Encrypting one gs:// object asks for its metadata once (it asked isdir, isfile, size and
    again at open: four round trips), and its bytes are read pinned to the generation that gave
    the recorded size; a missing source is still "no such file"."""
    fs = gcs_filesystem()
    data = os.urandom(4000)
    fs.pipe(f"{gcs_bucket}/raw/deep/m.bin", data)
    gcs_requests.clear()
    envelope.encrypt(kms, key, f"gs://{gcs_bucket}/raw/deep/m.bin", f"gs://{gcs_bucket}/enc/m.enc")
    source = [c for c in gcs_requests if c.split("?")[0].endswith(("/raw/deep/m.bin", "raw%2Fdeep%2Fm.bin"))]
    media = [c for c in source if "alt=media" in c]
    # one metadata lookup: gcsfs's object GET, and the one it adds when its concurrent listing wins
    assert len(media) == 1 and "generation=" in media[0] and len(source) - len(media) <= 2, gcs_requests
    envelope.decrypt(kms, f"gs://{gcs_bucket}/enc/m.enc", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == data
    with pytest.raises(envelope.SourceNotFoundError, match="no such file or directory"):
        envelope.encrypt(kms, key, f"gs://{gcs_bucket}/raw/none", f"gs://{gcs_bucket}/enc/none.enc")


def test_gcs_destinations_already_taken_or_inside_a_dataset_are_refused(
    kms: Any, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """The destination's probes (the object, its record, its signature record, and a dataset record
    in every ancestor) run at once on gs://; each still refuses, naming what is in the way, and
    nothing is written."""
    fs = gcs_filesystem()
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(1000))
    base = f"{gcs_bucket}/out"
    fs.pipe(f"{base}/taken.enc", b"x")
    fs.pipe(f"{base}/sidecar.enc.kmsflow.json", b"{}")
    fs.pipe(f"{base}/signed.enc.kmsflow.sig.json", b"{}")
    for name, what in [
        ("taken.enc", "taken.enc"),
        ("sidecar.enc", "sidecar.enc.kmsflow.json"),
        ("signed.enc", "signed.enc.kmsflow.sig.json"),
    ]:
        with pytest.raises(envelope.DestinationExistsError, match=f"gs://{base}/{what}: already exists"):
            envelope.encrypt(kms, key, str(src), f"gs://{base}/{name}")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.bin").write_bytes(b"a")
    envelope.encrypt(kms, key, str(tmp_path / "ds"), f"gs://{base}/outer/ds")
    before = sorted(fs.find(gcs_bucket))
    for deep in ("x.enc", "sub/x.enc", "sub/deeper/still/x.enc"):
        with pytest.raises(
            envelope.InvalidDestinationError, match=f"inside the dataset envelope gs://{base}/outer/ds,"
        ):
            envelope.encrypt(kms, key, str(src), f"gs://{base}/outer/ds/{deep}")
    fs.invalidate_cache()
    assert sorted(fs.find(gcs_bucket)) == before
    envelope.encrypt(kms, key, str(src), f"gs://{base}/outer/beside.enc")
