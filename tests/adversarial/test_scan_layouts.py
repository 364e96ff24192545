"""Hostile and careless layouts under a root: the scan counts every envelope or is incomplete.

Each test builds what a careless user or an attacker who may only write files (and encrypt) can
build, and checks the promise the shred proof rests on: an envelope reachable from a root is a
reference, or the scan says it could not see it.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from google.cloud import kms_v1
from inventory.builders import make_dataset, make_file
from privileges import unreadable

from kmsflow.envelope import Envelope, encrypt
from kmsflow.inventory import FindingKind, scan
from kmsflow.lifecycle import reencrypt


def kinds(inv: object) -> set[str]:
    return {str(f.kind) for f in inv.findings}  # type: ignore[attr-defined]


def test_directory_link_out_of_the_root_hides_nothing(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """The reproduced bug: ``R/models -> ../store`` with an envelope behind it was "complete, 0"."""
    root, store = tmp_path / "R", tmp_path / "store"
    root.mkdir()
    made = make_file(kms, key, tmp_path / "src", str(store / "m.enc"))
    (root / "models").symlink_to("../store")

    inv = scan([str(root)])

    assert not inv.complete
    [finding] = inv.blocking_findings
    assert finding.kind is FindingKind.SYMLINK_OUTSIDE_ROOTS and finding.url == str(root / "models")
    # Named as a root too, the envelope is counted once, where it really is: complete.
    both = scan([str(root), str(store)])
    assert both.complete, both.findings
    assert [r.url for r in both.references(made.record.key.crypto_key_version)] == [str(store / "m.enc")]


def test_directory_link_inside_the_root_counts_each_envelope_once(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "R"
    make_dataset(kms, key, tmp_path / "src", str(root / "real" / "ds"), {"a": 10, "b/c": 20})
    (root / "alias").symlink_to("real")  # an alias inside the root
    (root / "real" / "loop").symlink_to("..")  # a cycle back to the root
    (root / "self").symlink_to(".")

    inv = scan([str(root)])

    assert inv.complete, inv.findings
    assert [r.url for r in inv.envelopes] == [str(root / "real" / "ds")]


def test_broken_and_looping_links_are_blocking(tmp_path: Path) -> None:
    root = tmp_path / "R"
    root.mkdir()
    (root / "gone").symlink_to(tmp_path / "unmounted-disk" / "x.enc.kmsflow.json")
    (root / "loop").symlink_to("loop")

    inv = scan([str(root)])

    assert not inv.complete
    assert sorted((str(f.kind), f.url) for f in inv.findings) == [
        ("broken_symlink", str(root / "gone")),
        ("broken_symlink", str(root / "loop")),
    ]


def test_special_files_are_blocking_and_never_opened(tmp_path: Path) -> None:
    """A FIFO would block a reader forever; the scan only lists it, and says it cannot account for it."""
    root = tmp_path / "R"
    root.mkdir()
    os.mkfifo(root / "pipe.kmsflow.json")  # a FIFO named like a record: opening it would hang
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    try:
        inv = scan([str(root)])
    finally:
        sock.close()

    assert not inv.complete
    assert {(str(f.kind), f.url) for f in inv.findings} == {
        ("special_file", str(root / "pipe.kmsflow.json")),
        ("special_file", str(root / "sock")),
    }


def test_unreadable_directory_is_blocking(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "R"
    make_file(kms, key, tmp_path / "src", str(root / "team" / "m.enc"))
    with unreadable(root / "team"):
        inv = scan([str(root)])
    assert not inv.complete
    [finding] = inv.findings
    assert finding.kind is FindingKind.UNREACHABLE_ROOT and finding.url == str(root / "team")
    assert "Permission denied" in finding.detail


def test_reserved_looking_names_inside_a_dataset_are_its_data(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """A dataset may hold anything, including names kmsflow uses elsewhere and whole envelopes:
    inside it they are data. Every scan stays complete, and reencrypt of the root must not
    "recover" a backup-looking directory (that renamed the data and broke the envelope)."""
    src, root = tmp_path / "src", tmp_path / "R"
    (src / ".x.kmsflow-0123456789abcdef0123456789abcdef.old").mkdir(parents=True)
    (src / ".x.kmsflow-0123456789abcdef0123456789abcdef.old" / "w").write_bytes(b"w" * 10)
    (src / "x").write_bytes(b"x")
    (src / ".y.kmsflow-0123456789ab.tmp").mkdir()
    (src / ".y.kmsflow-0123456789ab.tmp" / "z").write_bytes(b"z")
    (src / "n.bin.kmsflow.json").write_bytes(b"{}")  # a sidecar-looking data file
    make_dataset(kms, key, tmp_path / "inner", str(src / "nested" / "ds"), {"s": 5})  # an envelope as data
    made = encrypt(kms, key, str(src), str(root / "ds"))

    inv = scan([str(root)])
    assert inv.complete, inv.findings
    assert [r.url for r in inv.envelopes] == [str(root / "ds")]
    assert inv.envelopes[0].files == len(made.files)

    report = reencrypt(kms, [str(root)])
    assert report.ok and not report.recovered, report.to_dict()
    Envelope.open(str(root / "ds")).verify(kms)
    assert scan([str(root)]).complete


def test_extra_file_under_kmsflow_dir_is_blocking(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "R"
    make_dataset(kms, key, tmp_path / "src", str(root / "ds"), {"a": 3})
    (root / "ds" / "_kmsflow" / "notes.txt").write_text("smuggled")

    inv = scan([str(root)])

    assert not inv.complete
    [finding] = inv.findings
    assert finding.kind is FindingKind.DATA_WITHOUT_RECORD
    assert finding.url == str(root / "ds" / "_kmsflow" / "notes.txt")


def test_a_forged_outer_record_cannot_hide_an_inner_envelope(
    kms: kms_v1.KeyManagementServiceClient, key: str, ring_id: str, tmp_path: Path
) -> None:
    """Someone who may only write files and encrypt forges ``R/a/_kmsflow/envelope.json`` under
    their own key, listing the files of the real envelope ``R/a/b.enc`` with the right sizes, so
    that the real record becomes "data" of the forged dataset. The real record still parses, so it
    is still counted: its version stays referenced."""
    from inventory.builders import make_key

    root = tmp_path / "R"
    real = make_dataset(kms, key, tmp_path / "src", str(root / "a" / "b.enc"), {"x": 100})
    record_size = (root / "a" / "b.enc" / "_kmsflow" / "envelope.json").stat().st_size
    other = make_key(kms, ring_id, "attacker")
    decoy = tmp_path / "decoy"
    (decoy / "b.enc" / "_kmsflow").mkdir(parents=True)
    (decoy / "b.enc" / "x").write_bytes(b"\0" * 100)  # same plaintext size: same ciphertext size
    (decoy / "b.enc" / "_kmsflow" / "envelope.json").write_bytes(b"\0" * (record_size - 56))
    encrypt(kms, other, str(decoy), str(tmp_path / "forged"))
    (root / "a" / "_kmsflow").mkdir()
    shutil.copy(tmp_path / "forged" / "_kmsflow" / "envelope.json", root / "a" / "_kmsflow" / "envelope.json")

    inv = scan([str(root)])

    assert [r.url for r in inv.references(real.record.key.crypto_key_version)] == [str(root / "a" / "b.enc")]
