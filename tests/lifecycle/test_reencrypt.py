"""Full re-encrypt over real envelopes on the KMS emulator: new key, new id, same plaintext, crash-safe.

The crash tests run ``reencrypt`` in a subprocess whose ``on_step`` hook SIGKILLs the process at
one named step of the replacement protocol (``kmsflow.lifecycle.reencryption.local.*_STEPS``), then
check that the envelope still decrypts, that no plaintext reached the disk, and that a rerun
converges to a new, verified envelope.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from google.cloud import kms_v1
from inventory.builders import make_key

from kmsflow.cli.lifecycle import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, reencrypt_command
from kmsflow.envelope import Envelope, encrypt
from kmsflow.envelope.storage import Location
from kmsflow.inventory import scan
from kmsflow.kms import resources
from kmsflow.lifecycle import reencrypt, rewrap
from kmsflow.lifecycle.reencryption import local
from kmsflow.lifecycle.reencryption.local import DATASET_STEPS, FILE_STEPS

MARKER = b"KMSFLOW-PLAINTEXT-MARKER:"
"""Repeated through every plaintext, so a plaintext byte range on disk is easy to spot."""


def plaintext(size: int, seed: int) -> bytes:
    """``size`` bytes: random runs, each led by MARKER (every 4 KiB), so any 4 KiB leak is found."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += MARKER + rng.randbytes(4096 - len(MARKER))
    return bytes(out[:size])


def make_envelope(
    client: kms_v1.KeyManagementServiceClient,
    key: str,
    dst: Path | str,
    shards: dict[str, int] | None,
    scratch: Path,
    seed: int = 0,
    *,
    file_size: int = 2_300_000,
) -> dict[str, bytes]:
    """Encrypt a file (``shards`` None: ``file_size + seed`` bytes) or a dataset to ``dst`` (a path
    or a gs:// URL); the plaintext source is deleted afterwards (it would otherwise be plaintext on
    disk). Returns the plaintext by relative path ('' for a file)."""
    src = scratch / f"plain-{seed}-{Path(str(dst)).name}"
    files = {"": file_size + seed} if shards is None else shards
    data = {rel: plaintext(size, seed + i) for i, (rel, size) in enumerate(sorted(files.items()))}
    for rel, body in data.items():
        path = src / rel if rel else src
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    encrypt(client, key, str(src), str(dst))
    _rmtree(src)
    return data


def _rmtree(path: Path) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


def decrypted(client: kms_v1.KeyManagementServiceClient, dst: Path, out: Path) -> dict[str, bytes]:
    """Decrypt ``dst`` to ``out`` and read it back (then remove ``out``)."""
    Envelope.open(str(dst)).decrypt(client, str(out))
    if out.is_file():
        result = {"": out.read_bytes()}
    else:
        result = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _rmtree(out)
    return result


def record_of(dst: Path) -> dict[str, Any]:
    path = dst / "_kmsflow" / "envelope.json" if dst.is_dir() else dst.with_name(dst.name + ".kmsflow.json")
    return dict(json.loads(path.read_bytes()))


def ciphertexts(dst: Path) -> dict[str, bytes]:
    if dst.is_file():
        return {"": dst.read_bytes()}
    return {
        str(p.relative_to(dst)): p.read_bytes()
        for p in dst.rglob("*")
        if p.is_file() and "_kmsflow" not in p.relative_to(dst).parts
    }


def all_bytes(*tops: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for top in tops if top.exists() for p in sorted(top.rglob("*")) if p.is_file()}


def assert_no_plaintext(*tops: Path) -> None:
    leaks = [str(p) for p, body in all_bytes(*tops).items() if MARKER in body]
    assert leaks == [], f"plaintext on disk: {leaks}"


def test_roundtrip_file_and_dataset(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    envelopes: dict[Path, dict[str, bytes]] = {}
    envelopes[root / "a.enc"] = make_envelope(kms, key, root / "a.enc", None, scratch, seed=1)
    envelopes[root / "ds"] = make_envelope(
        kms, key, root / "ds", {"s0": 2000, "dir/s1": 1_100_000, "empty": 0}, scratch, seed=2
    )
    envelopes[root / "sub" / "b.enc"] = make_envelope(kms, key, root / "sub" / "b.enc", {"": 0}, scratch, 3)
    before = {dst: (record_of(dst), ciphertexts(dst)) for dst in envelopes}
    v2 = resources.rotate(kms, key).name

    report = reencrypt(kms, [str(root)], max_workers=2)

    assert report.ok, report.to_dict()
    assert (report.envelopes, report.reencrypted, report.would_reencrypt) == (3, 3, 0)
    assert report.files == 5 and report.recovered == []
    by_url = {r.url: r for r in report.results}
    for dst, body in envelopes.items():
        old_record, old_data = before[dst]
        new_record = record_of(dst)
        result = by_url[str(dst)]
        assert result.status == "reencrypted"
        assert result.old_envelope_id == old_record["envelope_id"]
        assert result.new_envelope_id == new_record["envelope_id"] != old_record["envelope_id"]
        assert result.old_version == old_record["key"]["crypto_key_version"] != v2
        assert result.new_version == new_record["key"]["crypto_key_version"] == v2
        assert new_record["key"]["wrapped_keyset"] != old_record["key"]["wrapped_keyset"]
        new_data = ciphertexts(dst)
        assert new_data.keys() == old_data.keys()
        assert all(new_data[k] != old_data[k] for k in new_data)  # every file re-encrypted
        assert decrypted(kms, dst, tmp_path / "out") == body
        Envelope.open(str(dst)).verify(kms)
        # the old wrapped data key is gone from the disk: no backup, temp or stale record keeps it
        old_wrapped = old_record["key"]["wrapped_keyset"].encode()
        assert not any(old_wrapped in b for b in all_bytes(root).values())
    assert sorted(p.name for p in root.iterdir()) == ["a.enc", "a.enc.kmsflow.json", "ds", "sub"]
    inv = scan([str(root)])
    assert inv.complete and inv.findings == () and len(inv.references(v2)) == 3
    assert_no_plaintext(root)
    doc = report.to_dict()
    assert json.loads(json.dumps(doc)) == doc and doc["reencrypted"] == 3
    assert {r["new_version"] for r in doc["results"]} == {v2}


def test_single_envelope_targets_and_record_path(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    file_body = make_envelope(kms, key, tmp_path / "m.enc", None, tmp_path / "scratch")
    ds_body = make_envelope(kms, key, tmp_path / "d", {"a": 5, "b/c": 6}, tmp_path / "scratch", 4)
    ids = {record_of(tmp_path / "m.enc")["envelope_id"], record_of(tmp_path / "d")["envelope_id"]}

    report = reencrypt(kms, [str(tmp_path / "m.enc.kmsflow.json"), f"file://{tmp_path / 'd'}"])

    assert report.ok and report.reencrypted == 2, report.to_dict()
    assert ids.isdisjoint(
        {record_of(tmp_path / "m.enc")["envelope_id"], record_of(tmp_path / "d")["envelope_id"]}
    )
    assert decrypted(kms, tmp_path / "m.enc", tmp_path / "o1") == file_body
    assert decrypted(kms, tmp_path / "d", tmp_path / "o2") == ds_body


def test_dry_run_changes_nothing(emulator: Any, key: str, tmp_path: Path) -> None:
    from lifecycle.conftest import counting_client

    kms = emulator.client()
    root = tmp_path / "root"
    make_envelope(kms, key, root / "a.enc", None, tmp_path / "scratch")
    make_envelope(kms, key, root / "ds", {"x": 3, "y/z": 4}, tmp_path / "scratch", 7)
    v2 = resources.rotate(kms, key).name
    before = {p: (b, p.stat().st_mtime_ns) for p, b in all_bytes(root).items()}
    counted, counter = counting_client(emulator.endpoint)

    report = reencrypt(counted, [str(root)], dry_run=True)

    assert report.ok and (report.would_reencrypt, report.reencrypted) == (2, 0), report.to_dict()
    assert {r.new_version for r in report.results} == {v2} and all(
        r.new_envelope_id is None for r in report.results
    )
    assert (counter.calls["Encrypt"], counter.calls["Decrypt"]) == (0, 0)
    assert {p: (b, p.stat().st_mtime_ns) for p, b in all_bytes(root).items()} == before
    assert sorted(p.name for p in root.iterdir()) == ["a.enc", "a.enc.kmsflow.json", "ds"]


def test_tampered_envelopes_are_refused_and_left_untouched(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    make_envelope(kms, key, root / "flipped.enc", None, scratch, 1)
    make_envelope(kms, key, root / "edited.enc", {"": 50}, scratch, 2)
    make_envelope(kms, key, root / "extra", {"a": 10}, scratch, 3)
    good = make_envelope(kms, key, root / "good.enc", {"": 20}, scratch, 4)
    data = bytearray((root / "flipped.enc").read_bytes())
    data[1_500_000] ^= 1  # a byte in a late segment: caught mid-stream, after staging began
    (root / "flipped.enc").write_bytes(bytes(data))
    rec = record_of(root / "edited.enc")
    rec["created"] = "2020-01-01T00:00:00Z"  # not what the manifest sealed
    (root / "edited.enc.kmsflow.json").write_text(json.dumps(rec))
    (root / "extra" / "smuggled").write_bytes(b"not in the record")
    before = all_bytes(root)

    report = reencrypt(kms, [str(root)])

    assert report.reencrypted == 1 and not report.ok
    failed = {Path(f.url).name: f for f in report.failures}
    assert sorted(failed) == ["edited.enc", "extra", "flipped.enc"]
    assert {f.error for f in failed.values()} == {"TamperedError"}
    assert "failed authentication" in failed["flipped.enc"].reason
    assert all("\n" not in f.reason for f in failed.values())
    after = all_bytes(root)
    for path, body in before.items():
        if "good.enc" not in path.name:
            assert after[path] == body, path  # refused envelopes: byte for byte as they were
    assert {p for p in after if "good.enc" not in p.name} == {p for p in before if "good.enc" not in p.name}
    assert decrypted(kms, root / "good.enc", tmp_path / "out") == good


def test_other_bytes_encrypted_than_read_are_caught_before_replacing(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the plaintext SHA-256 comparison is for: were the pipeline to encrypt other bytes than
    it read (a bug), the staged copy would still authenticate under the new key; only the digests
    differ. 6 MiB, so both digests are taken on the write-behind thread. Left as it was."""
    root = tmp_path / "root"
    data = make_envelope(kms, key, root / "model.bin", None, tmp_path / "scratch", file_size=6 << 20)
    before = all_bytes(root)
    module = sys.modules["kmsflow.lifecycle.reencryption.job"]  # the per-envelope job streams
    real = module.write_through

    def flipping(enc: Any, block: bytes) -> None:
        real(enc, bytes([block[0] ^ 1]) + block[1:])

    monkeypatch.setattr(module, "write_through", flipping)

    report = reencrypt(kms, [str(root)])

    (failure,) = report.failures
    assert failure.error == "EnvelopeIOError" and "does not decrypt to the original" in failure.reason
    assert all_bytes(root) == before
    assert decrypted(kms, root / "model.bin", tmp_path / "out") == data


def test_injected_kms_faults_still_converge(fresh_emulator: Any, tmp_path: Path) -> None:
    client = fresh_emulator.client()
    key = make_key(client, "faults")
    root, scratch = tmp_path / "root", tmp_path / "scratch"
    bodies = {
        root / f"f{i}.enc": make_envelope(client, key, root / f"f{i}.enc", {"": 300 + i}, scratch, i)
        for i in range(8)
    }
    bodies[root / "ds"] = make_envelope(client, key, root / "ds", {"a": 1, "b": 70_000}, scratch, 99)
    old_ids = {dst: record_of(dst)["envelope_id"] for dst in bodies}
    v2 = resources.rotate(client, key).name
    fresh_emulator.admin.set_faults(
        rate=0.4, codes=["UNAVAILABLE", "RESOURCE_EXHAUSTED"], methods=["Encrypt", "Decrypt"], seed=3
    )

    report = reencrypt(client, [str(root)], max_workers=4)
    for _ in range(3):  # anything that still failed is left intact; a rerun picks it up
        if report.ok:
            break
        assert {f.error for f in report.failures} <= {"KmsTransientError"}, report.to_dict()
        report = reencrypt(client, [r.url for r in report.results if r.status != "reencrypted"])

    assert report.ok, report.to_dict()
    assert int(fresh_emulator.admin.faults()["injected"]) >= 3
    fresh_emulator.admin.set_faults(rate=0.0)
    for dst, body in bodies.items():
        assert record_of(dst)["envelope_id"] != old_ids[dst]
        assert record_of(dst)["key"]["crypto_key_version"] == v2
        assert decrypted(client, dst, tmp_path / "out") == body
    assert scan([str(root)]).findings == ()


def test_other_object_stores_fail_clearly(kms: kms_v1.KeyManagementServiceClient, tmp_path: Path) -> None:
    """Local paths and gs:// only (tests/lifecycle/test_reencrypt_gcs.py): no other fsspec store
    offers rename or generation preconditions."""
    report = reencrypt(kms, ["memory://bucket/models/m.enc"])
    assert not report.ok and report.envelopes == 0
    [failure] = report.failures
    assert failure.error == "ReencryptNotSupportedError"
    assert "local paths and gs:// only" in failure.reason


def test_reencrypt_command(kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path) -> None:
    body = make_envelope(kms, key, tmp_path / "root" / "a.enc", {"": 99}, tmp_path / "scratch")
    assert reencrypt_command([], client=kms).exit_code == EXIT_USAGE
    assert reencrypt_command(["x"], max_workers=0, client=kms).exit_code == EXIT_USAGE

    dry = reencrypt_command([str(tmp_path / "root")], dry_run=True, client=kms)
    assert dry.exit_code == EXIT_OK and json.loads(dry.output)["would_reencrypt"] == 1

    done = reencrypt_command([str(tmp_path / "root")], client=kms)
    assert done.exit_code == EXIT_OK and done.error == ""
    doc = json.loads(done.output)
    assert (
        doc["reencrypted"] == 1
        and doc["results"][0]["new_envelope_id"] == record_of(tmp_path / "root" / "a.enc")["envelope_id"]
    )
    assert decrypted(kms, tmp_path / "root" / "a.enc", tmp_path / "out") == body

    bad = reencrypt_command([str(tmp_path / "nope"), "memory://b/x"], client=kms)
    assert bad.exit_code == EXIT_PARTIAL and "\n" not in bad.error and "2 failure(s)" in bad.error
    assert len(json.loads(bad.output)["failures"]) == 2


def test_record_changed_meanwhile_is_a_conflict_left_intact(
    kms: kms_v1.KeyManagementServiceClient, key: str, tmp_path: Path
) -> None:
    """A rewrap landing between staging and the swap wins; re-encrypt replaces nothing, reruns."""
    body = make_envelope(kms, key, tmp_path / "m.enc", {"": 5000}, tmp_path / "scratch")
    old_id = record_of(tmp_path / "m.enc")["envelope_id"]
    v2 = resources.rotate(kms, key).name
    seen: dict[str, bool] = {}

    def on_step(step: str, url: str) -> None:
        if step == "verified":
            # the run's own staging directory is locked: another run must not take it for an orphan
            [staging] = local.orphan_candidates(Location(url))
            seen["live staging kept"] = not local.remove_if_orphan(staging)
            assert rewrap(kms, [url]).rewrapped == 1

    report = reencrypt(kms, [str(tmp_path / "m.enc")], on_step=on_step)

    assert seen == {"live staging kept": True}
    assert report.reencrypted == 0 and [c.error for c in report.conflicts] == ["RecordConflictError"]
    after = record_of(tmp_path / "m.enc")
    assert (after["envelope_id"], after["key"]["crypto_key_version"]) == (old_id, v2)  # the rewrap's
    assert decrypted(kms, tmp_path / "m.enc", tmp_path / "out") == body
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temps
    (tmp_path / ".m.enc.kmsflow-00aa.tmp").mkdir()  # an encrypt/decrypt staging dir: not ours
    assert not local.remove_if_orphan(str(tmp_path / ".m.enc.kmsflow-00aa.tmp"))

    rerun = reencrypt(kms, [str(tmp_path / "m.enc")])
    assert rerun.ok and rerun.reencrypted == 1 and rerun.removed_temps == []
    assert decrypted(kms, tmp_path / "m.enc", tmp_path / "out") == body


# --- crash safety -----------------------------------------------------------------------------

KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from kmsflow.kms import new_kms_client
    from kmsflow.lifecycle import reencrypt

    endpoint, target, kill_at = sys.argv[1:4]

    def on_step(step, url):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    report = reencrypt(new_kms_client(endpoint=endpoint), [target], on_step=on_step)
    print("finished", report.ok, flush=True)
    """
)

CRASH_CASES = [("file", s) for s in FILE_STEPS] + [("dataset", s) for s in DATASET_STEPS]


@pytest.mark.parametrize(("kind", "step"), CRASH_CASES, ids=[f"{k}-{s}" for k, s in CRASH_CASES])
def test_sigkill_at_each_step_stays_decryptable_and_rerun_converges(
    emulator: Any, ring_id: str, tmp_path: Path, kind: str, step: str
) -> None:
    client = emulator.client()
    key = make_key(client, ring_id)
    root, scratch, tmpdir = tmp_path / "root", tmp_path / "scratch", tmp_path / "tmp"
    tmpdir.mkdir()
    dst = root / ("model.enc" if kind == "file" else "dataset")
    shards = None if kind == "file" else {"a/shard0": 1_200_000, "shard1": 300, "z": 0}
    body = make_envelope(client, key, dst, shards, scratch, seed=len(step))
    old = record_of(dst)
    v2 = resources.rotate(client, key).name
    # direct envelope target for half the cases, the enclosing root (scan-based recovery) for the rest
    target = str(dst) if CRASH_CASES.index((kind, step)) % 2 else str(root)

    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, emulator.endpoint, target, step],
        capture_output=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]

    # 1. no plaintext anywhere on disk: not beside the envelope, not in the temp directory
    assert_no_plaintext(root, tmpdir)
    # 2. the envelope decrypts right now (kmsflow resolves a half-replaced envelope read-only)
    assert decrypted(client, dst, tmp_path / "out-mid") == body
    mid_id = Envelope.open(str(dst)).record.envelope_id
    replaced = step in ("record_replaced", "placed", "backup_removed")
    assert (mid_id != old["envelope_id"]) == replaced
    # 3. the inventory never sees a reference-less state as complete: backups block, temps inform
    mid = scan([str(root)])
    assert {str(f.kind) for f in mid.findings} <= {"stale_temp", "reencrypt_backup"}
    if any(str(f.kind) == "reencrypt_backup" for f in mid.findings):
        assert not mid.complete
    if not replaced:
        assert mid.complete == (step not in ("backed_up", "data_replaced", "moved_aside"))

    # 4. a rerun converges to a new, verified envelope under the primary
    report = reencrypt(client, [target])

    assert report.ok and report.reencrypted == 1, report.to_dict()
    assert bool(report.recovered) == (
        step in ("backed_up", "data_replaced", "moved_aside", "record_replaced", "placed")
    )
    new = record_of(dst)
    assert new["envelope_id"] not in (old["envelope_id"], mid_id)
    assert new["key"]["crypto_key_version"] == v2
    Envelope.open(str(dst)).verify(client)
    assert decrypted(client, dst, tmp_path / "out-end") == body
    staged_left = kind == "file" or step in ("streaming", "staged", "verified", "moved_aside")
    assert len(report.removed_temps) == int(staged_left), report.to_dict()  # the killed run's staging
    final = scan([str(root)])
    assert final.complete and final.findings == (), final.findings  # nothing left behind
    assert [r.url for r in final.envelopes] == [str(dst)]
    old_wrapped = old["key"]["wrapped_keyset"].encode()
    assert not any(old_wrapped in b for b in all_bytes(root).values())
    assert_no_plaintext(root, tmpdir)
