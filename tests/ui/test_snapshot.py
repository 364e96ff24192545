"""The inventory snapshot the lifecycle DAGs keep beside the audit log for the Key Lifecycle page."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inventory.builders import make_file, make_key
from pagekit import write_spec

from kmsflow.airflow.hooks.kms import KmsHook
from kmsflow.airflow.tasks.rotate_rewrap import take_inventory
from kmsflow.airflow.tasks.shred import shred
from kmsflow.airflow.tasks.snapshot import snapshot_writer
from kmsflow.audit import AuditLog, parse_time, read_events
from kmsflow.inventory import scan
from kmsflow.inventory.model import EnvelopeRef, Finding, FindingKind, Inventory
from kmsflow.inventory.snapshot import (
    FORMAT,
    SnapshotError,
    build_snapshot,
    read_snapshot,
    snapshot_location,
    write_snapshot,
)
from kmsflow.lifecycle import rotate
from kmsflow.spec import load_spec

KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
DAY = 86400


def ref(url: str, version: int, files: int, size: int) -> EnvelopeRef:
    return EnvelopeRef(
        url=url,
        record_url=url + ".kmsflow.json",
        root="/r",
        envelope_id=uuid.uuid4().hex,
        kind="file",
        crypto_key=KEY,
        crypto_key_version=f"{KEY}/cryptoKeyVersions/{version}",
        files=files,
        plaintext_bytes=size,
        ciphertext_bytes=size + 16,
        created="2026-12-01T00:00:00Z",
        wrapped_at="2026-12-01T00:00:00Z",
    )


def inventory_of(refs: list[EnvelopeRef], findings: tuple[Finding, ...] = ()) -> Inventory:
    return Inventory("scan-1", "2026-12-07T10:00:00Z", "2026-12-07T10:00:01Z", ("/r",), tuple(refs), findings)


@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(0, 10**9)), max_size=60),
    st.integers(0, 5),
)
@settings(max_examples=60, deadline=None)
def test_snapshot_counts_are_the_scans(envelopes: list[tuple[int, int, int]], max_blockers: int) -> None:
    refs = [ref(f"/r/e{i}.enc", v, files, size) for i, (v, files, size) in enumerate(envelopes)]
    snap = build_snapshot(inventory_of(refs), run="dag/run", max_blockers=max_blockers)
    assert snap["format"] == FORMAT and snap["complete"] is True and snap["envelopes"] == len(refs)
    assert sum(v["envelopes"] for v in snap["versions"].values()) == len(refs)
    for name, v in snap["versions"].items():
        mine = [r for r in refs if r.crypto_key_version == name]
        assert v["key"] == KEY
        assert (v["envelopes"], v["files"]) == (len(mine), sum(r.files for r in mine))
        assert v["ciphertext_bytes"] == sum(r.ciphertext_bytes for r in mine)
        assert v["blockers"]["count"] == len(mine)  # exact, however few are listed
        assert v["blockers"]["first"] == sorted(r.url for r in mine)[:max_blockers]
    assert "wrapped" not in json.dumps(snap)


def test_incomplete_scan_is_marked_and_its_findings_capped() -> None:
    findings = tuple(Finding(FindingKind.UNREACHABLE_ROOT, f"/r/d{i}", "gone") for i in range(30))
    snap = build_snapshot(inventory_of([], findings), run="dag/run")
    assert snap["complete"] is False
    assert snap["blocking_findings"]["count"] == 30 and len(snap["blocking_findings"]["first"]) == 20


def test_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    location = snapshot_location(str(tmp_path / "audit.jsonl"))
    assert location == str(tmp_path / "audit.jsonl.inventory.json")
    assert read_snapshot(location) is None  # no run yet
    first = build_snapshot(inventory_of([ref("/r/a.enc", 1, 1, 10)]), run="dag/one")
    second = build_snapshot(inventory_of([ref("/r/b.enc", 2, 1, 10)]), run="dag/two")
    write_snapshot(location, first)
    write_snapshot(location, second)
    assert read_snapshot(location) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl.inventory.json"]


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"{", "not an inventory snapshot"), (b'{"format": "x"}', "format"), (b" " * (5 << 20), "larger")],
)
def test_a_damaged_snapshot_is_an_error_not_a_view(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "audit.jsonl.inventory.json"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match=why):
        read_snapshot(str(path))


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bucket on the GCS emulator (preconditions enforced), STORAGE_EMULATOR_HOST set."""
    from kmsflow_emulator import gcs

    process, host = gcs.spawn("--default-bucket", "ui-snapshots")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    yield "ui-snapshots"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_on_gcs_the_snapshot_sits_beside_the_log_prefix_not_in_it(gcs_bucket: str) -> None:
    audit = f"gs://{gcs_bucket}/kmsflow/audit"
    AuditLog(audit, actor="user:a@example.com").append("rotate", KEY, reason="test")
    snap = build_snapshot(inventory_of([ref("/r/a.enc", 1, 2, 10)]), run="dag/run")
    write_snapshot(snapshot_location(audit), snap)
    write_snapshot(snapshot_location(audit), snap)  # replaced, not refused
    assert snapshot_location(audit) == f"gs://{gcs_bucket}/kmsflow/audit.inventory.json"
    assert read_snapshot(snapshot_location(audit)) == snap
    assert [e.action for e in read_events(audit)] == ["rotate"]  # the log reader never sees it


@pytest.fixture
def world(tmp_path: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A spec'd key with v1 retired 40 days ago and still referenced by one envelope."""
    client = fresh_emulator.client()
    key = make_key(client, "ring")
    root, audit = tmp_path / "root", tmp_path / "audit.jsonl"
    make_file(client, key, tmp_path / "src", str(root / "a.enc"))
    rotate(client, key, audit=AuditLog(str(audit), actor="user:o@example.com"), reason="t", run_id="t/1")
    fresh_emulator.admin.advance(40 * DAY)
    spec = write_spec(tmp_path / "spec.yaml", key, root, audit)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KMSFLOW_DEFAULT",
        json.dumps({"conn_type": "kmsflow", "extra": {"endpoint": fresh_emulator.endpoint}}),
    )
    return {"key": key, "root": root, "audit": audit, "spec": spec}


def test_shreds_proof_scan_becomes_the_snapshot(world: dict[str, Any]) -> None:
    hook = KmsHook()
    try:
        report = shred(
            hook, str(world["spec"]), keys=None, dry_run=True, manual=True, confirm=None, run="shred/1"
        )
    finally:
        hook.close()
    (decision,) = report["keys"]
    assert decision["versions"][0]["outcome"] == "refused"  # still referenced: not disabled
    snap = read_snapshot(snapshot_location(str(world["audit"])))
    assert snap is not None and snap["run"] == "shred/1" and snap["complete"] is True
    assert snap["scan_id"] == decision["scan"]["scan_id"]  # the very scan that proved the refusal
    assert snap["versions"][f"{world['key']}/cryptoKeyVersions/1"]["blockers"]["count"] == 1


def test_rotate_rewraps_inventory_becomes_the_snapshot_only_if_it_saw_every_root(
    world: dict[str, Any], tmp_path: Path
) -> None:
    location = snapshot_location(str(world["audit"]))
    hook = KmsHook()
    try:
        keep = snapshot_writer(load_spec(world["spec"]), hook, "kmsflow_rotate_rewrap/m2")
        other = tmp_path / "elsewhere"
        other.mkdir()
        take_inventory([str(other)], [world["key"]], {}, max_workers=2, on_scan=keep)
        assert read_snapshot(location) is None  # a scan that missed the spec's root says nothing
        found = take_inventory([str(world["root"])], [world["key"]], {}, max_workers=2, on_scan=keep)
    finally:
        hook.close()
    snap = read_snapshot(location)
    assert snap is not None and snap["scan_id"] == found["scan_id"]
    assert snap["run"] == "kmsflow_rotate_rewrap/m2"


def test_no_audit_log_no_snapshot(world: dict[str, Any], tmp_path: Path) -> None:
    spec = load_spec(world["spec"]).model_copy(update={"audit_log": None})
    hook = KmsHook()
    try:
        snapshot_writer(spec, hook, "dag/run")(scan([str(world["root"])]))
    finally:
        hook.close()
    assert not os.path.exists(snapshot_location(str(world["audit"])))


def test_the_page_follows_a_version_down_the_road_to_destruction(
    world: dict[str, Any], fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-wrapped, v1 is *retired*; a live shred disables it (*soaking* until the soak ends), the
    next destroys it (*destroy scheduled* for KMS's destroy time): each stage with its dates."""
    from kmsflow.airflow.plugin.keys import load_page
    from kmsflow.kms.clock import emulator_now
    from kmsflow.lifecycle import rewrap, run_shred

    monkeypatch.setenv("KMSFLOW_SPEC", str(world["spec"]))
    client = fresh_emulator.client()
    spec = load_spec(world["spec"])
    audit = AuditLog(str(world["audit"]), actor="user:o@example.com")

    def v1_stage() -> dict[str, Any]:
        page = load_page(kmsflow_conn_id="kmsflow_default")
        assert page["problems"] == []
        return dict(page["keys"][0]["versions"][0]["stage"])

    def shred_once(run: str) -> None:
        now = emulator_now(fresh_emulator.endpoint)
        run_shred(client, spec, now=now, dry_run=False, audit=audit, run_id=run, on_scan=None)

    assert v1_stage()["detail"].endswith("(no inventory yet)")  # references unknown: said so
    hook = KmsHook()
    try:
        keep = snapshot_writer(spec, hook, "kmsflow_rotate_rewrap/r")
        keep(scan([str(world["root"])]))
        assert v1_stage()["stage"] == "in_use"
        rewrap(client, [str(world["root"])])
        keep(scan([str(world["root"])]))
    finally:
        hook.close()
    stage = v1_stage()
    assert (stage["stage"], stage["detail"]) == ("retired", "disable due")
    assert stage["since"] < stage["until"]
    shred_once("kmsflow_shred/one")
    soaking = v1_stage()
    assert soaking["stage"] == "soaking" and soaking["detail"] == "destroy due"
    assert (parse_time(soaking["until"]) - parse_time(soaking["since"])).days == 7  # the spec's soak
    fresh_emulator.admin.advance(8 * DAY)
    shred_once("kmsflow_shred/two")
    scheduled = v1_stage()
    assert scheduled["stage"] == "destroy_scheduled" and scheduled["until"] > scheduled["since"]
