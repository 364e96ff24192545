"""What a careless user hands to encrypt and decrypt: nothing is silently dropped, and nothing is
written where it would break an envelope or encrypt the output into itself."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from google.cloud import kms_v1
from inventory.builders import make_dataset
from privileges import modes_enforced

from kmsflow.cli import EXIT_SOURCE_INCOMPLETE, EXIT_TAMPERED, EXIT_USAGE, main
from kmsflow.envelope import (
    Envelope,
    InvalidDestinationError,
    InvalidPathError,
    SourceIncompleteError,
    TamperedError,
    decrypt,
    encrypt,
)
from kmsflow.envelope.walk import Obstacle, ObstacleKind


def source_with_everything(tmp_path: Path) -> Path:
    """A dataset directory holding one of each thing that is not a plain file or directory."""
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.bin").write_bytes(b"a" * 100)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.bin").write_bytes(b"w" * 10)
    (src / "linked").symlink_to(tmp_path / "elsewhere")
    (src / "dangling").symlink_to(tmp_path / "nothing-here")
    os.mkfifo(src / "pipe")
    (src / "private").mkdir()
    (src / "private" / "secret.bin").write_bytes(b"s")
    os.chmod(src / "private", 0)
    return src


@pytest.mark.usefixtures("cli_env")
def test_encrypt_refuses_a_source_it_cannot_take_whole(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = source_with_everything(tmp_path)
    dst = tmp_path / "out.enc"
    with modes_enforced(), pytest.raises(SourceIncompleteError, match="4 entries cannot be encrypted"):
        encrypt(kms, key, str(src), str(dst))
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "src"]

    with modes_enforced():
        code = main(["encrypt", "--key", key, str(src), str(dst)])
    assert code == EXIT_SOURCE_INCOMPLETE
    assert "--skip-unsupported" in capsys.readouterr().err
    assert not dst.exists()


@pytest.mark.usefixtures("cli_env")
def test_skip_unsupported_names_every_omission(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = source_with_everything(tmp_path)
    omitted: list[Obstacle] = []
    with modes_enforced():
        record = encrypt(kms, key, str(src), str(tmp_path / "lib.enc"), omitted=omitted)
    assert [f.path for f in record.files] == ["keep/a.bin"]
    assert [(o.rel, o.kind) for o in omitted] == [
        ("dangling", ObstacleKind.BROKEN_LINK),
        ("linked", ObstacleKind.DIRECTORY_LINK),
        ("pipe", ObstacleKind.SPECIAL_FILE),
        ("private", ObstacleKind.UNLISTABLE),
    ]

    with modes_enforced():
        code = main(
            ["encrypt", "-q", "--skip-unsupported", "--key", key, str(src), str(tmp_path / "cli.enc")]
        )
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["kmsflow"] * 4
    assert [line.split()[2].rstrip(":") for line in err] == ["dangling", "linked", "pipe", "private"]


def test_file_links_are_encrypted_as_their_target(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "blob").write_bytes(b"weights")
    (src / "model.bin").symlink_to(tmp_path / "blob")  # as in a Hugging Face cache snapshot
    encrypt(kms, key, str(src), str(tmp_path / "m.enc"))
    decrypt(kms, str(tmp_path / "m.enc"), str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "model.bin").read_bytes() == b"weights"


@pytest.mark.usefixtures("cli_env")
def test_destinations_inside_an_envelope_or_the_source_are_refused(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_dataset(kms, key, tmp_path / "src", str(tmp_path / "ds.enc"), {"a": 10})
    ds = Path(made.dst)
    before = sorted(p.name for p in ds.rglob("*"))

    with pytest.raises(InvalidDestinationError, match="inside the dataset envelope"):
        decrypt(kms, str(ds), str(ds / "plain"))
    with pytest.raises(InvalidDestinationError, match="inside the dataset envelope"):
        decrypt(kms, str(ds), str(ds / "deeper" / "plain"))
    (tmp_path / "via").symlink_to(ds)
    with pytest.raises(InvalidDestinationError, match="inside the dataset envelope"):
        decrypt(kms, str(ds), str(tmp_path / "via" / "plain"))
    with pytest.raises(InvalidDestinationError, match="inside the dataset envelope"):
        encrypt(kms, key, str(made.src), str(ds / "again.enc"))
    with pytest.raises(InvalidDestinationError, match="inside the source"):
        encrypt(kms, key, str(made.src), str(made.src / "out.enc"))
    assert main(["decrypt", "-q", str(ds), str(ds / "plain")]) == EXIT_USAGE

    assert sorted(p.name for p in ds.rglob("*")) == before
    Envelope.open(str(ds)).verify(kms)


@pytest.mark.usefixtures("cli_env")
def test_verify_rejects_anything_extra_in_a_dataset(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    made = make_dataset(kms, key, tmp_path / "src", str(tmp_path / "ds.enc"), {"a": 10})
    ds = Path(made.dst)
    (ds / "_kmsflow" / "notes.txt").write_text("smuggled")
    with pytest.raises(TamperedError, match="not part of the format"):
        Envelope.open(str(ds)).verify(kms)
    (ds / "_kmsflow" / "notes.txt").unlink()
    (ds / "_kmsflow" / ".envelope.json.kmsflow-0123456789ab.part").write_text("{}")  # a rewrap killed
    Envelope.open(str(ds)).verify(kms)
    os.mkfifo(ds / "pipe")
    with pytest.raises(TamperedError, match="'pipe' is not part of the envelope"):
        Envelope.open(str(ds)).verify(kms)
    assert main(["verify", "-q", str(ds)]) == EXIT_TAMPERED


def test_a_name_changed_by_normalization_is_explained(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    nfc = unicodedata.normalize("NFC", "café.bin")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    made = make_dataset(kms, key, tmp_path / "src", str(tmp_path / "ds.enc"), {nfc: 10})
    os.rename(Path(made.dst) / nfc, Path(made.dst) / nfd)  # what a copy through macOS may do
    with pytest.raises(TamperedError, match="another Unicode normalization"):
        Envelope.open(made.dst).verify(kms)

    src = tmp_path / "both"
    src.mkdir()
    (src / nfc).write_bytes(b"1")
    (src / nfd).write_bytes(b"2")
    with pytest.raises(InvalidPathError, match="differ only by Unicode normalization"):
        encrypt(kms, key, str(src), str(tmp_path / "both.enc"))


def test_an_empty_dataset_is_a_valid_envelope(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    record = encrypt(kms, key, str(tmp_path / "empty"), str(tmp_path / "e.enc"))
    assert record.files == ()
    decrypt(kms, str(tmp_path / "e.enc"), str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == []
