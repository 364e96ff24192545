"""``kmsflow clean``: temps of interrupted writes are removed once stale, and nothing else ever is.

Leftovers are made the way users get them where it matters: a ``reencrypt`` SIGKILLed at a named
step (the kill script of the re-encrypt crash tests) leaves a real staging directory or prefix, a
re-encrypt backup or a committed GCS staging prefix. Local ages are set with ``os.utime``; the GCS
emulator cannot backdate objects, so there the threshold moves instead (0 = everything is stale,
one hour = everything is young).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1

from kmsflow.cli import main
from kmsflow.envelope import Envelope, encrypt, gcs_filesystem
from kmsflow.envelope.storage import Location
from kmsflow.inventory import FindingKind, scan
from kmsflow.lifecycle import clean_stale_temps, reencrypt
from kmsflow.lifecycle.reencryption import local
from lifecycle.test_reencrypt import KILL_SCRIPT, decrypted, make_envelope
from lifecycle.test_reencrypt_gcs import decrypted as gcs_decrypted
from lifecycle.test_reencrypt_gcs import objects, put_envelope

HOUR = 3600.0


def backdate(top: Path, seconds: float) -> None:
    """Set the mtime of ``top`` and of everything below it ``seconds`` into the past."""
    then = time.time() - seconds
    for p in [*(top.rglob("*") if top.is_dir() else []), top]:
        os.utime(p, (then, then), follow_symlinks=False)


def kill_reencrypt_at(endpoint: str, target: str, step: str, tmp_path: Path) -> None:
    """Run ``reencrypt`` on ``target`` in a subprocess that SIGKILLs itself at ``step``."""
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, endpoint, target, step],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


def stale_temps(*roots: str) -> list[str]:
    return sorted(f.url for f in scan(list(roots)).findings if f.kind == FindingKind.STALE_TEMP)


def statuses(report: Any) -> dict[str, str]:
    return {t.url: t.status for t in report.temps}


# --- local ----------------------------------------------------------------------------------------


def test_local_temps_removed_only_once_older_than_the_threshold(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    old_part = root / ".a.enc.kmsflow.json.kmsflow-0123456789ab.part"  # an interrupted rewrap
    young_part = root / ".b.enc.kmsflow-0123456789cd.part"  # an encrypt still streaming
    old_tree = root / ".ds.kmsflow-00aa00aa00aa.tmp"  # an encrypt/decrypt staging tree
    busy_tree = root / ".ds2.kmsflow-00bb00bb00bb.tmp"  # old, but one shard is still being written
    for p, body in ((old_part, b"{}"), (young_part, b"x"), (old_tree / "d" / "s0", b"y")):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    (busy_tree / "d").mkdir(parents=True)
    (busy_tree / "d" / "s1").write_bytes(b"z")
    backdate(old_part, 2 * HOUR)
    backdate(old_tree, 2 * HOUR)
    backdate(busy_tree, 2 * HOUR)
    (busy_tree / "d" / "s1").write_bytes(b"zz")  # fresh mtime deep inside the tree

    report = clean_stale_temps([str(root)])

    assert statuses(report) == {
        str(old_part): "removed",
        str(young_part): "kept",
        str(old_tree): "removed",
        str(busy_tree): "kept",
    }
    assert not old_part.exists() and not old_tree.exists()
    assert young_part.read_bytes() == b"x" and (busy_tree / "d" / "s1").read_bytes() == b"zz"
    kept = {t.url: t for t in report.temps if t.status == "kept"}
    assert all("writer may still be alive" in t.reason for t in kept.values())
    assert kept[str(young_part)].kind == "file" and kept[str(busy_tree)].kind == "directory"
    assert kept[str(busy_tree)].age is not None and kept[str(busy_tree)].age < 60
    assert report.ok and report.failures == [] and report.unscanned == ()
    assert stale_temps(str(root)) == sorted([str(busy_tree), str(young_part)])


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / ".ds.kmsflow-00aa00aa00aa.tmp").mkdir(parents=True)
    (root / ".ds.kmsflow-00aa00aa00aa.tmp" / "s0").write_bytes(b"y")
    (root / ".a.enc.kmsflow-0123456789ab.part").write_bytes(b"x")
    backdate(root, 2 * HOUR)
    before = stale_temps(str(root))

    report = clean_stale_temps([str(root)], dry_run=True)

    assert sorted(statuses(report).items()) == [(url, "would_remove") for url in before]
    assert stale_temps(str(root)) == before and len(before) == 2
    assert report.to_dict()["would_remove"] == 2 and report.to_dict()["removed"] == 0


def test_orphaned_reencrypt_staging_removed_live_one_kept(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    body = make_envelope(kms, key, root / "a.enc", {"": 5000}, tmp_path / "scratch", seed=1)
    live_body = make_envelope(kms, key, root / "b.enc", {"": 3000}, tmp_path / "scratch", seed=2)
    kill_reencrypt_at(emulator.endpoint, str(root / "a.enc"), "staged", tmp_path)
    [orphan] = local.orphan_candidates(Location(str(root / "a.enc")))
    assert os.path.exists(os.path.join(orphan, *local.STAGING_MARKER.split("/")))  # a real one

    with local.staging_dir(str(root / "b.enc")) as live:  # holds the flock, as a running re-encrypt
        Path(live, "data").write_bytes(b"ciphertext")
        backdate(root, 2 * HOUR)  # both look abandoned by age: only the lock tells them apart
        dry = clean_stale_temps([str(root)], dry_run=True)
        report = clean_stale_temps([str(root)])
        assert os.path.isdir(live) and Path(live, "data").read_bytes() == b"ciphertext"

    assert statuses(dry) == {orphan: "would_remove", live: "kept"}
    assert statuses(report) == {orphan: "removed", live: "kept"}
    assert [t.reason for t in report.temps if t.url == live] == ["a live re-encrypt run holds its lock"]
    assert not os.path.exists(orphan)
    assert stale_temps(str(root)) == []
    assert decrypted(kms, root / "a.enc", tmp_path / "out-a") == body
    assert decrypted(kms, root / "b.enc", tmp_path / "out-b") == live_body


def test_reencrypt_backups_are_never_removed(
    emulator: Any, kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """Killed mid-replacement, the backup may be the only copy of the data (a dataset moved aside):
    even old and with a zero threshold it survives, and re-encrypt still recovers from it."""
    root = tmp_path / "root"
    bodies = {
        root / "m.enc": make_envelope(kms, key, root / "m.enc", {"": 4000}, tmp_path / "s", seed=3),
        root / "ds": make_envelope(kms, key, root / "ds", {"a/s0": 3000, "s1": 10}, tmp_path / "s", seed=4),
    }
    kill_reencrypt_at(emulator.endpoint, str(root / "m.enc"), "backed_up", tmp_path)
    kill_reencrypt_at(emulator.endpoint, str(root / "ds"), "moved_aside", tmp_path)
    assert not (root / "ds").exists()  # the dataset's only copy is now its backup
    backups = [f.url for f in scan([str(root)]).findings if f.kind == FindingKind.REENCRYPT_BACKUP]
    assert len(backups) == 2
    snapshot = {p: p.read_bytes() for b in backups for p in [Path(b), *Path(b).rglob("*")] if p.is_file()}
    backdate(root, 2 * HOUR)

    report = clean_stale_temps([str(root)], older_than=0)

    assert report.ok and list(statuses(report).values()) == ["removed", "removed"]  # both staging dirs
    assert not any(t.url in backups for t in report.temps)
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    after = scan([str(root)])
    assert sorted(f.url for f in after.findings) == sorted(backups)  # still there, still blocking
    assert not after.complete
    rerun = reencrypt(kms, [str(root)])
    assert rerun.ok and rerun.reencrypted == 2, rerun.to_dict()
    for dst, body in bodies.items():
        assert decrypted(kms, dst, tmp_path / "out") == body


def test_temp_like_data_file_inside_a_dataset_is_kept(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """A dataset may hold a data file whose name looks like a kmsflow temp: it is the envelope's
    data, not a temp (kmsflow never stages inside a dataset), so clean never sees it."""
    root = tmp_path / "root"
    src = tmp_path / "src"
    (src / ".w.kmsflow-0123456789ab.part").parent.mkdir(parents=True)
    (src / ".w.kmsflow-0123456789ab.part").write_bytes(b"weights")
    (src / "config").write_bytes(b"{}")
    encrypt(kms, key, str(src), str(root / "ds"))
    backdate(root, 2 * HOUR)
    assert stale_temps(str(root)) == []
    assert scan([str(root)]).complete

    report = clean_stale_temps([str(root)], older_than=0)

    assert report.temps == () and report.ok
    assert (root / "ds" / ".w.kmsflow-0123456789ab.part").is_file()
    Envelope.open(str(root / "ds")).verify(kms)


# --- GCS ------------------------------------------------------------------------------------------


def test_gcs_stale_part_and_uncommitted_staging_removed_committed_kept(
    emulator: Any, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    kms = emulator.client()
    root = f"gs://{gcs_bucket}/r"
    a, ds = f"{root}/a.enc", f"{root}/ds"
    bodies = {
        a: put_envelope(kms, key, a, None, tmp_path, seed=1),
        ds: put_envelope(kms, key, ds, {"s0": 2000, "d/s1": 300}, tmp_path, seed=2),
    }
    kill_reencrypt_at(emulator.endpoint, a, "staged", tmp_path)  # uncommitted staging + LEASE
    kill_reencrypt_at(emulator.endpoint, ds, "committed", tmp_path)  # COMMIT: only roll forward
    fs = gcs_filesystem()
    part = f"{gcs_bucket}/r/.c.enc.kmsflow-0123456789ab.part"
    fs.pipe_file(part, b"{}")
    inv = scan([root])
    [staging] = [f.url for f in inv.findings if f.kind == FindingKind.STALE_TEMP and ".tmp" in f.url]
    [committed] = [f.url for f in inv.findings if f.kind == FindingKind.REENCRYPT_COMMITTED]
    before = objects(gcs_bucket)

    young = clean_stale_temps([root], older_than=HOUR)
    dry = clean_stale_temps([root], older_than=0, dry_run=True)

    assert statuses(young) == {f"gs://{part}": "kept", staging: "kept"}
    assert all("alive" in t.reason for t in young.temps)
    assert statuses(dry) == {f"gs://{part}": "would_remove", staging: "would_remove"}
    assert objects(gcs_bucket) == before

    report = clean_stale_temps([root], older_than=0)

    assert report.ok and statuses(report) == {f"gs://{part}": "removed", staging: "removed"}
    assert {t.url: t.kind for t in report.temps} == {f"gs://{part}": "file", staging: "directory"}
    after = objects(gcs_bucket)
    assert not any(n.startswith(staging.removeprefix("gs://")) or n == part for n in after)
    committed_objects = {n: v for n, v in before.items() if n.startswith(committed.removeprefix("gs://"))}
    assert committed_objects and all(after[n] == v for n, v in committed_objects.items())
    final = scan([root])
    assert [str(f.kind) for f in final.findings] == ["reencrypt_committed"]
    assert gcs_decrypted(kms, a, tmp_path / "out-a") == bodies[a]
    assert gcs_decrypted(kms, ds, tmp_path / "out-ds") == bodies[ds]
    rolled = reencrypt(kms, [ds])  # the staged envelope clean left alone is whole: roll forward works
    assert rolled.ok and rolled.recovered, rolled.to_dict()
    assert gcs_decrypted(kms, ds, tmp_path / "out-ds2") == bodies[ds]


def test_gcs_prefix_not_made_by_reencrypt_is_kept(gcs_bucket: str) -> None:
    fs = gcs_filesystem()
    fs.pipe_file(f"{gcs_bucket}/r/.x.kmsflow-00ff00ff00ff.tmp/shard", b"?")  # no LEASE, no COMMIT

    report = clean_stale_temps([f"gs://{gcs_bucket}/r"], older_than=0)

    [kept] = report.temps
    assert kept.status == "kept" and "neither LEASE nor COMMIT" in kept.reason
    assert fs.exists(f"{gcs_bucket}/r/.x.kmsflow-00ff00ff00ff.tmp/shard")


# --- the command line -----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["clean", *args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    part = root / ".a.enc.kmsflow-0123456789ab.part"
    part.write_bytes(b"x")
    backdate(part, 2 * HOUR)

    code, out, err = cli(capsys, "--dry-run", "--json", str(root))
    assert (code, err) == (0, "") and json.loads(out)["temps"][0]["status"] == "would_remove"
    assert part.exists()

    code, out, err = cli(capsys, str(root), str(tmp_path / "missing"))  # a root that cannot be scanned
    assert code == 8 and err.count("\n") == 1 and err.startswith("kmsflow: error: scan incomplete")
    assert f"removed: {part}" in out and not part.exists()  # the reachable root was still cleaned

    part.write_bytes(b"x")
    backdate(part, 2 * HOUR)
    real_unlink = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:  # the tests run as root: chmod can't
        if str(path) == str(part):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    code, out, err = cli(capsys, "--json", str(root))
    assert code == 9 and err.count("\n") == 1 and "1 temp(s) could not be removed" in err
    assert "Permission denied" in err and "Traceback" not in err
    assert json.loads(out)["failed"] == 1 and part.exists()
    monkeypatch.undo()

    code, out, err = cli(capsys, "--older-than", "-1", str(root))
    assert code == 2 and err.count("\n") == 1 and part.exists()

    kmsflow = str(Path(sys.executable).with_name("kmsflow"))
    done = subprocess.run([kmsflow, "clean", "--json", str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 1 and not part.exists()
    assert stale_temps(str(root)) == []
