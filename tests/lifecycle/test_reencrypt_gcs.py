"""Full re-encrypt of envelopes on gs:// (GCS emulator): new key, new id, same plaintext, roll-forward.

The crash tests run ``reencrypt`` in a subprocess whose ``on_step`` hook SIGKILLs the process at
one named step (``kmsflow.lifecycle.reencryption.gcs.STEPS``), then check what a reader and the
inventory see meanwhile, and that reruns converge to a new, verified envelope with nothing left
in the bucket but the envelope.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from inventory.builders import make_key

from kmsflow.envelope import Envelope, gcs_filesystem
from kmsflow.envelope.errors import TamperedError
from kmsflow.inventory import FindingKind, scan
from kmsflow.kms import resources
from kmsflow.lifecycle import reencrypt, rewrap
from kmsflow.lifecycle.reencryption.gcs import STEPS
from lifecycle.test_reencrypt import KILL_SCRIPT, MARKER, assert_no_plaintext, make_envelope

COMMITTED_STEPS = ("committed", "copying", "data_copied", "record_replaced", "staging_removed")
"""Kill points after which a COMMIT marker exists (the envelope may be mid-replacement)."""


# Smaller file envelopes than the local tests: every byte crosses the GCS emulator's HTTP.
put_envelope = functools.partial(make_envelope, file_size=1_100_000)


def objects(bucket: str) -> dict[str, tuple[bytes, str]]:
    """(bytes, generation) of every object in the bucket."""
    fs = gcs_filesystem()
    fs.invalidate_cache()
    found = fs.find(bucket, detail=True)
    return {name: (bytes(fs.cat_file(name)), str(info["generation"])) for name, info in found.items()}


def staging_objects(bucket: str) -> list[str]:
    return sorted(name for name in objects(bucket) if ".kmsflow-" in name)


def record_of(dst: str, kind: str) -> dict[str, Any]:
    path = f"{dst}/_kmsflow/envelope.json" if kind == "dataset" else f"{dst}.kmsflow.json"
    fs = gcs_filesystem()
    fs.invalidate_cache()
    return dict(json.loads(fs.cat_file(path.removeprefix("gs://"))))


def ciphertexts(dst: str, kind: str) -> dict[str, bytes]:
    base = dst.removeprefix("gs://")
    if kind == "file":
        return {"": objects(base.split("/")[0])[base][0]}
    return {
        name[len(base) + 1 :]: body
        for name, (body, _) in objects(base.split("/")[0]).items()
        if name.startswith(base + "/") and "/_kmsflow/" not in name
    }


def decrypted(kms: kms_v1.KeyManagementServiceClient, dst: str, out: Path) -> dict[str, bytes]:
    Envelope.open(dst).decrypt(kms, str(out))
    if out.is_file():
        result = {"": out.read_bytes()}
        out.unlink()
        return result
    result = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for p in sorted(out.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    out.rmdir()
    return result


def assert_no_plaintext_in(bucket: str) -> None:
    leaks = [name for name, (body, _) in objects(bucket).items() if MARKER in body]
    assert leaks == [], f"plaintext in the bucket: {leaks}"


def test_file_and_dataset_reencrypted_on_gcs(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    root = f"gs://{gcs_bucket}/models"
    envelopes = {
        (f"{root}/a.enc", "file"): put_envelope(kms, key, f"{root}/a.enc", None, tmp_path, 1),
        (f"{root}/ds", "dataset"): put_envelope(
            kms, key, f"{root}/ds", {"s0": 2000, "dir/s1": 1_100_000, "empty": 0}, tmp_path, 2
        ),
    }
    before = {dst: (record_of(*dst), ciphertexts(*dst)) for dst in envelopes}
    v2 = resources.rotate(kms, key).name

    report = reencrypt(kms, [root], max_workers=2)

    assert report.ok, report.to_dict()
    assert (report.envelopes, report.reencrypted, report.files) == (2, 2, 4)
    by_url = {r.url: r for r in report.results}
    for (dst, kind), body in envelopes.items():
        old_record, old_data = before[(dst, kind)]
        new_record = record_of(dst, kind)
        assert by_url[dst].old_envelope_id == old_record["envelope_id"]
        assert by_url[dst].new_envelope_id == new_record["envelope_id"] != old_record["envelope_id"]
        assert new_record["key"]["crypto_key_version"] == v2 == by_url[dst].new_version
        new_data = ciphertexts(dst, kind)
        assert new_data.keys() == old_data.keys() and all(new_data[k] != old_data[k] for k in new_data)
        assert decrypted(kms, dst, tmp_path / "out") == body
        Envelope.open(dst).verify(kms)
        old_wrapped = old_record["key"]["wrapped_keyset"].encode()
        assert not any(old_wrapped in b for b, _ in objects(gcs_bucket).values())
    assert staging_objects(gcs_bucket) == []
    inv = scan([root])
    assert inv.complete and inv.findings == () and len(inv.references(v2)) == 2
    assert_no_plaintext_in(gcs_bucket)


def test_dry_run_changes_nothing_on_gcs(emulator: Any, key: str, gcs_bucket: str, tmp_path: Path) -> None:
    from lifecycle.conftest import counting_client

    kms = emulator.client()
    root = f"gs://{gcs_bucket}/r"
    put_envelope(kms, key, f"{root}/a.enc", {"": 500}, tmp_path, 1)
    put_envelope(kms, key, f"{root}/ds", {"x": 3, "y/z": 4}, tmp_path, 2)
    before = objects(gcs_bucket)
    counted, counter = counting_client(emulator.endpoint)

    report = reencrypt(counted, [root], dry_run=True)

    assert report.ok and (report.would_reencrypt, report.reencrypted) == (2, 0), report.to_dict()
    assert (counter.calls["Encrypt"], counter.calls["Decrypt"]) == (0, 0)
    assert objects(gcs_bucket) == before  # bytes and generations


def test_tampered_envelopes_refused_and_left_byte_identical(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    root = f"gs://{gcs_bucket}/r"
    fs = gcs_filesystem()
    put_envelope(kms, key, f"{root}/flipped.enc", None, tmp_path, 1)
    put_envelope(kms, key, f"{root}/edited.enc", {"": 50}, tmp_path, 2)
    put_envelope(kms, key, f"{root}/extra", {"a": 10}, tmp_path, 3)
    good = put_envelope(kms, key, f"{root}/good.enc", {"": 20}, tmp_path, 4)
    data = bytearray(fs.cat_file(f"{gcs_bucket}/r/flipped.enc"))
    data[1_050_000] ^= 1  # late segment: caught mid-stream, after staging began
    fs.pipe_file(f"{gcs_bucket}/r/flipped.enc", bytes(data))
    rec = record_of(f"{root}/edited.enc", "file")
    rec["created"] = "2020-01-01T00:00:00Z"  # not what the manifest sealed
    fs.pipe_file(f"{gcs_bucket}/r/edited.enc.kmsflow.json", json.dumps(rec).encode())
    fs.pipe_file(f"{gcs_bucket}/r/extra/smuggled", b"not in the record")
    before = objects(gcs_bucket)

    report = reencrypt(kms, [root])

    assert report.reencrypted == 1 and not report.ok
    failed = {f.url.rsplit("/", 1)[-1]: f for f in report.failures}
    assert sorted(failed) == ["edited.enc", "extra", "flipped.enc"]
    assert {f.error for f in failed.values()} == {"TamperedError"}
    assert "failed authentication" in failed["flipped.enc"].reason
    after = objects(gcs_bucket)
    untouched = {n: v for n, v in before.items() if "good.enc" not in n}
    assert {n: v for n, v in after.items() if "good.enc" not in n} == untouched  # bytes + generations
    assert staging_objects(gcs_bucket) == []
    assert decrypted(kms, f"{root}/good.enc", tmp_path / "out") == good


def test_record_changed_before_commit_is_a_conflict_left_intact(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """A rewrap landing between staging and COMMIT wins: nothing is replaced, staging removed."""
    dst = f"gs://{gcs_bucket}/m.enc"
    body = put_envelope(kms, key, dst, {"": 5000}, tmp_path)
    old_id = record_of(dst, "file")["envelope_id"]
    v2 = resources.rotate(kms, key).name

    def on_step(step: str, url: str) -> None:
        if step == "verified":
            assert rewrap(kms, [url]).rewrapped == 1

    report = reencrypt(kms, [dst], on_step=on_step)

    assert report.reencrypted == 0 and [c.error for c in report.conflicts] == ["RecordConflictError"]
    after = record_of(dst, "file")
    assert (after["envelope_id"], after["key"]["crypto_key_version"]) == (old_id, v2)  # the rewrap's
    assert staging_objects(gcs_bucket) == []
    assert decrypted(kms, dst, tmp_path / "out") == body


def test_rewrap_after_commit_is_rolled_over(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """Past COMMIT the old data is gone: a record re-wrapped meanwhile (still the OLD id) is replaced."""
    dst = f"gs://{gcs_bucket}/ds"
    body = put_envelope(kms, key, dst, {"a": 100, "b/c": 70_000}, tmp_path)
    resources.rotate(kms, key)

    def on_step(step: str, url: str) -> None:
        if step == "data_copied":
            assert rewrap(kms, [url]).rewrapped == 1  # changes the record's generation, same id

    report = reencrypt(kms, [dst], on_step=on_step)

    assert report.ok and report.reencrypted == 1, report.to_dict()
    assert record_of(dst, "dataset")["envelope_id"] == report.results[0].new_envelope_id
    assert decrypted(kms, dst, tmp_path / "out") == body
    assert staging_objects(gcs_bucket) == []


def test_foreign_record_after_commit_stops_and_keeps_staging(
    kms: kms_v1.KeyManagementServiceClient, key: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """Someone replaced the envelope after COMMIT (neither id): stop, delete nothing, block shredding."""
    dst = f"gs://{gcs_bucket}/m.enc"
    put_envelope(kms, key, dst, {"": 300}, tmp_path)
    put_envelope(kms, key, f"gs://{gcs_bucket}/other/x.enc", {"": 30}, tmp_path, 9)
    fs = gcs_filesystem()
    foreign = fs.cat_file(f"{gcs_bucket}/other/x.enc.kmsflow.json")

    def on_step(step: str, url: str) -> None:
        if step == "committed":
            fs.pipe_file(f"{gcs_bucket}/m.enc.kmsflow.json", foreign)

    report = reencrypt(kms, [dst], on_step=on_step)

    assert [c.error for c in report.conflicts] == ["RecordConflictError"], report.to_dict()
    assert "neither" in report.conflicts[0].reason and "kept" in report.conflicts[0].reason
    staged = staging_objects(gcs_bucket)
    assert any(n.endswith("/_kmsflow/COMMIT") for n in staged) and any(n.endswith("/data") for n in staged)
    inv = scan([f"gs://{gcs_bucket}"])
    assert not inv.complete
    assert FindingKind.REENCRYPT_COMMITTED in {f.kind for f in inv.findings if f.blocking}

    rerun = reencrypt(kms, [dst])  # recovery refuses again, and the job will not start beside it
    assert not rerun.ok and rerun.reencrypted == 0
    assert [c.error for c in rerun.conflicts] == ["RecordConflictError", "ReencryptBusyError"]
    assert "rolled forward first" in rerun.conflicts[1].reason
    assert staging_objects(gcs_bucket) == staged  # still nothing deleted


def test_cli_reencrypt_gs(
    emulator: Any, key: str, gcs_bucket: str, gcs_emulator: str, tmp_path: Path
) -> None:
    kms = emulator.client()
    root = f"gs://{gcs_bucket}/r"
    body = put_envelope(kms, key, f"{root}/a.enc", {"": 99}, tmp_path)
    old_id = record_of(f"{root}/a.enc", "file")["envelope_id"]
    env = {k: v for k, v in os.environ.items() if k not in ("KMSFLOW_PRINCIPAL", "KMSFLOW_AUDIT_LOG")}
    env.update(KMS_EMULATOR_HOST=emulator.endpoint, STORAGE_EMULATOR_HOST=gcs_emulator)
    kmsflow = str(Path(sys.executable).with_name("kmsflow"))

    done = subprocess.run([kmsflow, "reencrypt", root], capture_output=True, text=True, env=env, timeout=120)

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["reencrypted"] == 1 and doc["failures"] == []
    new_id = record_of(f"{root}/a.enc", "file")["envelope_id"]
    assert doc["results"][0]["new_envelope_id"] == new_id != old_id
    assert decrypted(kms, f"{root}/a.enc", tmp_path / "out") == body

    # An uncommitted staging prefix that looks alive (a fresh LEASE: a run killed before its
    # commit point, or one still working) makes the envelope a conflict until --stale-after.
    fs = gcs_filesystem()
    fs.pipe_file(f"{gcs_bucket}/r/.a.enc.kmsflow-0123456789ab.tmp/_kmsflow/LEASE", b"{}")
    busy = subprocess.run([kmsflow, "reencrypt", root], capture_output=True, text=True, env=env, timeout=120)
    assert busy.returncode == 9, busy.stderr
    assert json.loads(busy.stdout)["conflicts"][0]["error"] == "ReencryptBusyError"
    assert record_of(f"{root}/a.enc", "file")["envelope_id"] == new_id  # untouched
    take_over = [kmsflow, "reencrypt", "--stale-after", "0", root]
    taken = subprocess.run(take_over, capture_output=True, text=True, env=env, timeout=120)
    assert taken.returncode == 0, taken.stderr
    assert staging_objects(gcs_bucket) == []
    assert record_of(f"{root}/a.enc", "file")["envelope_id"] not in (old_id, new_id)
    assert decrypted(kms, f"{root}/a.enc", tmp_path / "out2") == body


# --- crash safety -----------------------------------------------------------------------------

CRASH_CASES = [(kind, step) for kind in ("file", "dataset") for step in STEPS]


@pytest.mark.parametrize(("kind", "step"), CRASH_CASES, ids=[f"{k}-{s}" for k, s in CRASH_CASES])
def test_sigkill_at_each_step_then_rerun_converges(
    emulator: Any, ring_id: str, gcs_bucket: str, tmp_path: Path, kind: str, step: str
) -> None:
    kms = emulator.client()
    key = make_key(kms, ring_id)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    root = f"gs://{gcs_bucket}/root"
    dst = f"{root}/model.enc" if kind == "file" else f"{root}/dataset"
    shards = None if kind == "file" else {"a/shard0": 1_100_000, "shard1": 300, "z": 0}
    body = put_envelope(kms, key, dst, shards, tmp_path, seed=len(step))
    old = record_of(dst, kind)
    v2 = resources.rotate(kms, key).name
    target = dst if CRASH_CASES.index((kind, step)) % 2 else root  # named envelope or scanned root

    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, emulator.endpoint, target, step],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    # 1. no plaintext anywhere: not in the bucket, not in the temp directory
    assert_no_plaintext_in(gcs_bucket)
    assert_no_plaintext(tmpdir)
    # 2. a reader gets the original plaintext, or (while objects are being replaced) fails
    #    authentication: never wrong plaintext
    if step in ("copying", "data_copied"):
        with pytest.raises(TamperedError):
            decrypted(kms, dst, tmp_path / "out-mid")
    else:
        assert decrypted(kms, dst, tmp_path / "out-mid") == body
    mid_id = record_of(dst, kind)["envelope_id"]
    assert (mid_id != old["envelope_id"]) == (
        step in ("record_replaced", "staging_removed", "commit_removed")
    )
    # 3. the inventory: a COMMIT blocks (scan incomplete), an uncommitted staging only informs
    mid = scan([root])
    kinds = sorted(str(f.kind) for f in mid.findings)
    if step in COMMITTED_STEPS:
        assert kinds == ["reencrypt_committed"] and not mid.complete, mid.findings
    elif step == "commit_removed":
        assert kinds == [] and mid.complete
    else:
        assert kinds == ["stale_temp"] and mid.complete, mid.findings

    # 4. a rerun right away: a committed prefix is rolled forward; an uncommitted one is too fresh
    #    to take over (its run might be alive), so the envelope is left as is ...
    report = reencrypt(kms, [target])
    uncommitted = step in ("streaming", "staged", "verified")
    if uncommitted:
        assert report.reencrypted == 0 and [c.error for c in report.conflicts] == ["ReencryptBusyError"]
        assert "another re-encrypt may be running" in report.conflicts[0].reason
        assert record_of(dst, kind) == old and decrypted(kms, dst, tmp_path / "out-busy") == body
        # ... until it is stale (here: at once)
        report = reencrypt(kms, [target], stale_after=0)
    assert report.ok and report.reencrypted == 1, report.to_dict()
    assert bool(report.recovered) == (step in COMMITTED_STEPS)
    assert len(report.removed_temps) == int(uncommitted)
    new = record_of(dst, kind)
    assert new["envelope_id"] not in (old["envelope_id"], mid_id)
    assert new["key"]["crypto_key_version"] == v2
    Envelope.open(dst).verify(kms)
    assert decrypted(kms, dst, tmp_path / "out-end") == body
    assert staging_objects(gcs_bucket) == []
    final = scan([root])
    assert final.complete and final.findings == (), final.findings
    assert [r.url for r in final.envelopes] == [dst]
    old_wrapped = old["key"]["wrapped_keyset"].encode()
    assert not any(old_wrapped in b for b, _ in objects(gcs_bucket).values())
    assert_no_plaintext_in(gcs_bucket)
