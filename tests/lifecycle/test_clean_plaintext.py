"""``kmsflow clean`` and the inventory on a decrypt's plaintext temps (``.<name>.kmsflow-<hex>.plain``):
reported as their own informational finding, removed at once whatever their age, except while a
live decrypt holds their ``flock``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from kmsflow.envelope.staging import stage
from kmsflow.envelope.storage import resolve
from kmsflow.inventory import FindingKind, scan
from kmsflow.lifecycle import clean_stale_temps


def dead_plaintext_temps(root: Path) -> tuple[Path, Path]:
    """A killed decrypt's leftovers, just written (well under clean's one-hour threshold)."""
    file_temp = root / ".model.bin.kmsflow-0123456789ab.plain"
    file_temp.write_bytes(b"decrypted bytes")
    tree_temp = root / ".dataset.kmsflow-ba9876543210.plain"
    (tree_temp / "shards").mkdir(parents=True)
    (tree_temp / "shards" / "part-0").write_bytes(b"decrypted bytes")
    return file_temp, tree_temp


def test_plaintext_temps_are_their_own_informational_finding(tmp_path: Path) -> None:
    file_temp, tree_temp = dead_plaintext_temps(tmp_path)
    (tmp_path / ".x.kmsflow-00ff.part").write_bytes(b"ciphertext")
    inv = scan([str(tmp_path)])
    kinds = {f.url: f.kind for f in inv.findings}
    assert kinds == {
        str(file_temp): FindingKind.PLAINTEXT_TEMP,
        str(tree_temp): FindingKind.PLAINTEXT_TEMP,
        str(tmp_path / ".x.kmsflow-00ff.part"): FindingKind.STALE_TEMP,
    }
    assert inv.complete and not any(f.blocking for f in inv.findings)


def test_dead_plaintext_temps_are_removed_at_once(tmp_path: Path) -> None:
    file_temp, tree_temp = dead_plaintext_temps(tmp_path)
    young_part = tmp_path / ".x.kmsflow-00ff.part"
    young_part.write_bytes(b"ciphertext")

    dry = clean_stale_temps([str(tmp_path)], dry_run=True)
    assert {t.url: t.status for t in dry.temps if t.url != str(young_part)} == {
        str(file_temp): "would_remove",
        str(tree_temp): "would_remove",
    }
    assert file_temp.exists() and tree_temp.exists()

    report = clean_stale_temps([str(tmp_path)])
    assert {t.url: t.status for t in report.temps} == {
        str(file_temp): "removed",
        str(tree_temp): "removed",
        str(young_part): "kept",  # ciphertext temps keep the age rule
    }
    assert report.ok and sorted(p.name for p in tmp_path.iterdir()) == [young_part.name]


def test_a_locked_plaintext_temp_is_kept_whatever_its_age(tmp_path: Path) -> None:
    file_temp, tree_temp = dead_plaintext_temps(tmp_path)
    for temp in (file_temp, tree_temp):
        os.utime(temp, (0, 0))
    fds = [os.open(temp, os.O_RDONLY) for temp in (file_temp, tree_temp)]
    try:
        for fd in fds:
            fcntl.flock(fd, fcntl.LOCK_EX)
        report = clean_stale_temps([str(tmp_path)], older_than=0)
    finally:
        for fd in fds:
            os.close(fd)
    assert {(t.status, t.reason) for t in report.temps} == {("kept", "a live decrypt holds its lock")}
    assert file_temp.exists() and tree_temp.exists()


def test_a_live_decrypts_staging_is_kept_and_a_finished_one_leaves_nothing(tmp_path: Path) -> None:
    for tree in (True, False):
        dst = resolve(str(tmp_path / ("dataset" if tree else "model.bin")))
        with stage(dst, tree=tree, plaintext=True) as staging:
            with staging.writer(dst.child("a/b") if tree else dst) as out:
                out.write(b"decrypted bytes")
            report = clean_stale_temps([str(tmp_path)], older_than=0)
            assert [(t.status, t.reason) for t in report.temps] == [("kept", "a live decrypt holds its lock")]
            assert report.temps[0].url.endswith(".plain")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "model.bin"]
    assert clean_stale_temps([str(tmp_path)]).temps == ()
