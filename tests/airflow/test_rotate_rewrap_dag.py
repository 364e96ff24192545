"""kmsflow_rotate_rewrap through ``dag.test()`` against a private emulator and real envelopes on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import Made, fingerprint, make_dataset, make_file
from lifecycle_dagkit import failure_messages, load_dag, run_dag

from kmsflow.audit import read_events
from kmsflow.audit.event import parse_time
from kmsflow.envelope import decrypt, inspect
from kmsflow.inventory import scan
from kmsflow.kms import resources
from kmsflow.spec import KeySpec, apply, load_spec, plan

DAG_ID = "kmsflow_rotate_rewrap"
DAY = 86400.0


@pytest.fixture(scope="module")
def rewrap_dag(airflow_db: str) -> Any:
    return load_dag(DAG_ID)


@dataclass
class World:
    emulator: Any
    client: Any
    spec_path: Path
    spec: KeySpec
    data_key: str
    other_key: str
    root_a: Path
    root_b: Path
    audit: Path
    made: list[Made]


def write_spec(tmp_path: Path, ring: str, root_a: Path, root_b: Path, audit: Path) -> Path:
    """Two keys: ``data`` rotates daily (automatic rotation), ``other`` never; one root each."""
    text = f"""
project: kmsflow-test
location: us-central1
audit_log: {json.dumps(str(audit))}
key_rings:
  - id: {ring}
    keys:
      - id: data
        rotation_period: 1d
        roots: [{json.dumps(str(root_a))}]
      - id: other
        rotation_period: null
        roots: [{json.dumps(str(root_b))}]
"""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def world(fresh_emulator: Any, tmp_path: Path, ring_id: str, set_conn: Callable[..., str]) -> World:
    """5 file envelopes + 1 dataset under ``data`` (root a), 1 file under ``other`` (root b)."""
    root_a, root_b = tmp_path / "root-a", tmp_path / "root-b"
    root_a.mkdir()
    root_b.mkdir()
    audit = tmp_path / "audit" / "audit.jsonl"
    spec_path = write_spec(tmp_path, ring_id, root_a, root_b, audit)
    spec = load_spec(spec_path)
    client = fresh_emulator.client()
    apply(plan(spec, client), client)
    data_key, other_key = (name for name, _ in spec.crypto_keys())
    src = tmp_path / "src"
    made = [make_file(client, data_key, src, str(root_a / f"f{i}.enc"), 300 + i, seed=i) for i in range(5)]
    made.append(
        make_dataset(client, data_key, src, str(root_a / "ds"), {"a.bin": 2000, "b/c.bin": 70}, seed=9)
    )
    made.append(make_file(client, other_key, src, str(root_b / "o.enc"), 123, seed=11))
    set_conn(endpoint=fresh_emulator.endpoint)
    return World(fresh_emulator, client, spec_path, spec, data_key, other_key, root_a, root_b, audit, made)


def v(key: str, n: int) -> str:
    return f"{key}/cryptoKeyVersions/{n}"


def record_bytes(world: World) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for root in (world.root_a, world.root_b)
        for p in root.rglob("*")
        if p.name.endswith(".kmsflow.json") or p.name == "envelope.json"
    }


def assert_all_decrypt(world: World, tmp_path: Path) -> None:
    """Every envelope decrypts to its original plaintext (files and the dataset)."""
    out = tmp_path / "out"
    for i, made in enumerate(world.made):
        dst = out / str(i)
        decrypt(world.client, made.dst, str(dst))
        if made.src.is_dir():
            got = {p.relative_to(dst): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
            want = {p.relative_to(made.src): p.read_bytes() for p in made.src.rglob("*") if p.is_file()}
            assert got == want
        else:
            assert dst.read_bytes() == made.src.read_bytes()


def test_dag_shape_and_defaults(rewrap_dag: Any) -> None:
    params = rewrap_dag.params
    from airflow.sdk import AssetOrTimeSchedule

    from kmsflow.airflow.triggers import KeyRotationTrigger

    schedule = rewrap_dag.timetable  # a rotation event or the daily run, whichever comes first
    assert isinstance(schedule, AssetOrTimeSchedule) and schedule.timetable.expression == "0 0 * * *"
    assert schedule.asset_condition.name == "kmsflow_key_rotations"
    (watcher,) = schedule.asset_condition.watchers
    assert isinstance(watcher.trigger, KeyRotationTrigger)
    assert watcher.trigger.spec_path == params["spec_path"] and watcher.trigger.poll_interval == 60.0
    assert rewrap_dag.catchup is False
    assert params["dry_run"] is False and params["rotate_first"] is False
    assert params["max_parallel"] == 16 and params["mode"] == "rewrap"
    assert params["key"] == "" and params["roots"] == []
    assert [t.task_id for t in rewrap_dag.topological_sort()] == [
        "plan",
        "rotate",
        "detect",
        "inventory",
        "batches",
        "route",
        "rewrap",
        "reencrypt",
        "check",
        "publish",
    ]


def test_rotate_then_rewrap_in_batches_then_noop_then_automatic_rotation(
    rewrap_dag: Any, world: World, tmp_path: Path
) -> None:
    data_files = fingerprint(world.root_a), fingerprint(world.root_b)

    first = run_dag(rewrap_dag, spec_path=str(world.spec_path), rotate_first=True, batch_size=2)
    assert first.state == "success", first.states
    assert first.states.pop("reencrypt") == "skipped"  # the other mode's task, skipped by ``route``
    assert set(first.states.values()) == {"success"}
    # 7 stale envelopes in batches of 2: four mapped task instances.
    assert first.mapped_states["rewrap"] == {0: "success", 1: "success", 2: "success", 3: "success"}
    assert sum(r["rewrapped"] for r in first.mapped_values["rewrap"].values()) == 7

    summary = first.values["publish"]
    assert summary["versions_before"] == {v(world.data_key, 1): 6, v(world.other_key, 1): 1}
    assert summary["versions_after"] == {v(world.data_key, 2): 6, v(world.other_key, 2): 1}
    assert summary["stale_before"] == 7 and summary["rewrapped"] == 7 and summary["batches"] == 4
    assert summary["rotated_by_this_run"] == {
        world.data_key: v(world.data_key, 2),
        world.other_key: v(world.other_key, 2),
    }
    assert first.values["detect"]["keys"][world.data_key]["how"] == "first_run"
    assert first.values["check"]["ok"] is True and first.values["check"]["issues"] == []

    # Data never touched (same bytes, same mtime); records name the new primary; all decrypt.
    assert (fingerprint(world.root_a), fingerprint(world.root_b)) == data_files
    for made in world.made:
        key = world.other_key if made.dst.startswith(str(world.root_b)) else world.data_key
        assert inspect(made.dst)["crypto_key_version"] == v(key, 2)
    assert_all_decrypt(world, tmp_path)

    # Audited: one rotate per key, one rewrap-batch per key per batch that moved its envelopes.
    rotations = read_events(str(world.audit), action="rotate")
    assert sorted(e.resource for e in rotations) == sorted([world.data_key, world.other_key])
    batches = read_events(str(world.audit), action="rewrap-batch")
    assert len(batches) == summary["audit_events"] >= 4
    assert sum(n for e in batches for n in e.evidence["versions_after"].values()) == 7 and all(
        e.run == f"{DAG_ID}/{first.run_id}" for e in batches
    )
    # No key material anywhere in XCom: neither the old nor the new wrapped keysets appear.
    xcom_text = json.dumps([first.values, first.mapped_values], default=str)
    for made in world.made:
        assert made.record.key.wrapped_keyset not in xcom_text
        assert inspect(made.dst)["envelope_id"]  # (records readable after the swap)
    assert "wrapped_keyset" not in xcom_text

    second = run_dag(rewrap_dag, spec_path=str(world.spec_path))
    assert second.state == "success"
    assert second.states["rewrap"] == "skipped"  # nothing stale: zero mapped instances
    assert second.values["detect"]["rotated"] == []
    assert second.values["detect"]["keys"][world.data_key]["how"] == "none"
    assert second.values["publish"]["rewrapped"] == 0
    assert second.values["publish"]["versions_after"] == summary["versions_after"]

    world.emulator.admin.advance(1.1 * DAY)  # Cloud KMS's own schedule rotates ``data``
    third = run_dag(rewrap_dag, spec_path=str(world.spec_path))
    assert third.state == "success", third.states
    detected = third.values["detect"]
    assert detected["rotated"] == [world.data_key] and detected["automatic"] == [world.data_key]
    assert detected["keys"][world.data_key]["previous_primary"] == v(world.data_key, 2)
    assert detected["keys"][world.data_key]["primary"] == v(world.data_key, 3)
    assert third.values["publish"]["versions_after"] == {v(world.data_key, 3): 6, v(world.other_key, 2): 1}
    assert third.mapped_states["rewrap"] == {0: "success"}  # default batch size: one batch
    assert_all_decrypt(world, tmp_path / "third")
    # Audit events carry KMS time (the emulator's moved clock), like shred's, so one log sorts in
    # the order things happened: the third run's batch is stamped a day after the first run's.
    stamps = sorted(parse_time(e.time) for e in read_events(str(world.audit), action="rewrap-batch"))
    kms_now = datetime.fromtimestamp(world.emulator.admin.now(), UTC)
    assert stamps[-1] - stamps[0] > timedelta(days=1)
    assert abs(stamps[-1] - kms_now) < timedelta(minutes=5)


def test_dry_run_changes_nothing(rewrap_dag: Any, world: World) -> None:
    resources.rotate(world.client, world.data_key)  # v2 primary; six envelopes are now stale
    before = record_bytes(world)

    result = run_dag(rewrap_dag, spec_path=str(world.spec_path), dry_run=True, key="data", batch_size=4)
    assert result.state == "success", result.states
    assert record_bytes(world) == before
    summary = result.values["publish"]
    assert summary["dry_run"] is True and summary["rewrapped"] == 0 and summary["would_rewrap"] == 6
    assert summary["keys"] == [world.data_key]  # ``key`` narrows the run to one key
    assert summary["versions_before"] == summary["versions_after"] == {v(world.data_key, 1): 6}
    assert summary["versions_after_if_applied"] == {v(world.data_key, 2): 6}
    assert result.values["check"]["not_primary"] == 6
    assert len(result.mapped_states["rewrap"]) == 2
    assert not world.audit.exists() or not read_events(str(world.audit), action="rewrap-batch")


def envelope_ids(world: World) -> dict[str, str]:
    return {made.dst: inspect(made.dst)["envelope_id"] for made in world.made}


def data_digests(world: World) -> dict[str, str]:
    """SHA-256 of every data file (records excluded), by path under either root."""
    return {
        f"{root.name}/{rel}": digest
        for root in (world.root_a, world.root_b)
        for rel, (digest, _) in fingerprint(root).items()
    }


def everything(world: World) -> dict[str, tuple[str, int]]:
    """Every file under both roots, records included: content digest and mtime."""
    return {
        f"{root.name}/{rel}": seen
        for root in (world.root_a, world.root_b)
        for rel, seen in fingerprint(root, exclude_records=False).items()
    }


def reports_of(result: Any, task_id: str = "reencrypt") -> list[dict[str, Any]]:
    return [result.mapped_values[task_id][i] for i in sorted(result.mapped_values[task_id])]


def assert_reencrypted(world: World, before_ids: dict[str, str], before_data: dict[str, str]) -> None:
    """Same names, but every data file's bytes and every envelope id changed."""
    after_ids, after_data = envelope_ids(world), data_digests(world)
    assert after_data.keys() == before_data.keys()  # nothing left behind (staging, backups)
    assert all(after_data[f] != before_data[f] for f in before_data), "ciphertext not rewritten"
    assert after_ids.keys() == before_ids.keys()
    assert all(after_ids[e] != before_ids[e] for e in before_ids), "envelope id not changed"


def test_reencrypt_gives_every_envelope_a_new_data_key_then_again_after_rotate_first(
    rewrap_dag: Any, world: World, tmp_path: Path
) -> None:
    # Mixed versions: six ``data`` envelopes stale on v1, one current on v2, ``other``'s current on
    # v1. Re-encrypt visits all eight -- a new data key is the point, not the version.
    resources.rotate(world.client, world.data_key)
    world.made.append(
        make_file(world.client, world.data_key, tmp_path / "src", str(world.root_a / "new.enc"), 77, seed=20)
    )
    ids, data = envelope_ids(world), data_digests(world)

    first = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt", batch_size=3)
    assert first.state == "success", first.states
    assert first.states.pop("rewrap") == "skipped" and first.states.pop("rotate") == "skipped"
    assert set(first.states.values()) == {"success"}
    assert first.mapped_states["reencrypt"] == {0: "success", 1: "success", 2: "success"}
    assert first.values["inventory"]["stale"] == 6 and len(first.values["inventory"]["targets"]) == 8
    reports = reports_of(first)
    assert [r["reencrypted"] for r in reports] == [3, 3, 2]
    assert all(r["failures"] == [] and r["conflicts"] == [] and r["dry_run"] is False for r in reports)

    assert_reencrypted(world, ids, data)
    for made in world.made:  # re-encrypt wraps each new data key with the key's primary
        key, primary = (world.other_key, 1) if made.dst.startswith(str(world.root_b)) else (world.data_key, 2)
        assert inspect(made.dst)["crypto_key_version"] == v(key, primary)
    assert_all_decrypt(world, tmp_path / "first")

    summary = first.values["publish"]
    assert summary["mode"] == "reencrypt" and summary["reencrypted"] == 8 and summary["rewrapped"] == 0
    assert summary["batches"] == 3 and summary["stale_before"] == 6
    assert summary["versions_before"] == {
        v(world.data_key, 1): 6,
        v(world.data_key, 2): 1,
        v(world.other_key, 1): 1,
    }
    assert summary["versions_after"] == {v(world.data_key, 2): 7, v(world.other_key, 1): 1}
    assert first.values["check"]["ok"] is True and first.values["check"]["issues"] == []

    # Audited per key per batch, with each envelope's old and new id (the old one names the
    # suspect data key); no rewrap events.
    events = read_events(str(world.audit), action="reencrypt-batch")
    assert len(events) == summary["audit_events"] == 4  # batch 3 holds ``data`` and ``other``
    assert all(e.run == f"{DAG_ID}/{first.run_id}" for e in events)
    moved = {
        x["url"]: (x["old_envelope_id"], x["new_envelope_id"])
        for e in events
        for x in e.evidence["envelopes"]
    }
    assert moved == {url: (old, inspect(url)["envelope_id"]) for url, old in ids.items()}
    assert not read_events(str(world.audit), action="rewrap-batch")
    xcom_text = json.dumps([first.values, first.mapped_values], default=str)
    assert "wrapped_keyset" not in xcom_text
    for made in world.made:
        assert made.record.key.wrapped_keyset not in xcom_text

    # rotate_first: rotate, then re-encrypt everything again under the new primaries.
    ids, data = envelope_ids(world), data_digests(world)
    second = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt", rotate_first=True)
    assert second.state == "success", second.states
    assert second.values["publish"]["rotated_by_this_run"] == {
        world.data_key: v(world.data_key, 3),
        world.other_key: v(world.other_key, 2),
    }
    assert second.values["publish"]["versions_after"] == {v(world.data_key, 3): 7, v(world.other_key, 2): 1}
    assert (
        second.mapped_states["reencrypt"] == {0: "success"} and second.values["publish"]["reencrypted"] == 8
    )
    assert_reencrypted(world, ids, data)
    assert_all_decrypt(world, tmp_path / "second")


def test_reencrypt_dry_run_changes_nothing(rewrap_dag: Any, world: World) -> None:
    resources.rotate(world.client, world.data_key)  # v2 primary
    before = everything(world)

    result = run_dag(
        rewrap_dag,
        spec_path=str(world.spec_path),
        mode="reencrypt",
        dry_run=True,
        rotate_first=True,
        batch_size=4,
    )
    assert result.state == "success", result.states
    assert everything(world) == before  # bytes and mtimes of data and records
    assert result.states["rotate"] == "skipped"  # never in a dry run
    assert len(resources.list_versions(world.client, world.data_key)) == 2
    assert len(resources.list_versions(world.client, world.other_key)) == 1
    assert result.mapped_states["reencrypt"] == {0: "success", 1: "success"}
    assert [r["would_reencrypt"] for r in reports_of(result)] == [4, 3]
    summary = result.values["publish"]
    assert summary["dry_run"] is True and summary["reencrypted"] == 0 and summary["would_reencrypt"] == 7
    assert (
        summary["versions_before"]
        == summary["versions_after"]
        == {v(world.data_key, 1): 6, v(world.other_key, 1): 1}
    )
    assert summary["versions_after_if_applied"] == {v(world.data_key, 2): 6, v(world.other_key, 1): 1}
    assert result.values["check"]["not_primary"] == 6 and summary["audit_events"] == 0
    assert not world.audit.exists() or not read_events(str(world.audit), action="reencrypt-batch")


def test_reencrypt_failure_fails_the_run_after_the_others_are_reencrypted(
    rewrap_dag: Any, world: World, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = str(world.root_a / "f2.enc")
    raw = bytearray(Path(bad).read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size: the inventory still counts it, re-encrypt refuses it
    Path(bad).write_bytes(bytes(raw))
    ids, data = envelope_ids(world), data_digests(world)
    bad_record = Path(bad + ".kmsflow.json").read_bytes()

    result = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt", batch_size=2)
    # The mapped tasks report, they do not raise: every batch ran, then ``check`` failed the run.
    assert result.mapped_states["reencrypt"] == {0: "success", 1: "success", 2: "success", 3: "success"}
    assert result.states["check"] == "failed" and result.states["publish"] == "upstream_failed"
    assert result.state == "failed"
    reports = reports_of(result)
    failures = [f for r in reports for f in r["failures"]]
    assert [(f["url"], f["error"]) for f in failures] == [(bad, "TamperedError")]
    [shared] = [r for r in reports if r["failures"]]
    assert shared["reencrypted"] == 1  # its batch neighbour was still re-encrypted
    assert sum(r["reencrypted"] for r in reports) == 6
    [message] = failure_messages(capfd)
    assert message.startswith("verification failed: 1 problem(s)") and f"{bad}: TamperedError" in message

    # The failed envelope is exactly as it was; every other one has a new data key and decrypts.
    assert Path(bad).read_bytes() == bytes(raw) and Path(bad + ".kmsflow.json").read_bytes() == bad_record
    after_ids, after_data = envelope_ids(world), data_digests(world)
    assert after_data.keys() == data.keys()
    assert {f for f in data if after_data[f] != data[f]} == set(data) - {"root-a/f2.enc"}
    assert {e for e in ids if after_ids[e] != ids[e]} == set(ids) - {bad}
    world.made = [m for m in world.made if m.dst != bad]
    assert_all_decrypt(world, tmp_path)


def test_reencrypt_batches_respect_max_map_length(
    rewrap_dag: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    ids, data = envelope_ids(world), data_digests(world)

    result = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt", batch_size=1)
    assert result.state == "success", result.states
    # 7 batches of 1 would exceed max_map_length 2: two batches, grown to 4 and 3.
    assert [len(b) for b in result.values["batches"]] == [4, 3]
    assert result.mapped_states["reencrypt"] == {0: "success", 1: "success"}
    assert [r["reencrypted"] for r in reports_of(result)] == [4, 3]
    assert_reencrypted(world, ids, data)


def test_reencrypt_check_does_not_take_the_report_on_trust(
    rewrap_dag: Any, world: World, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A batch that claims re-encryption the disk does not show fails ``check`` (the envelope-id half
    of verify: unwrapping under the primary alone would pass, nothing else changed)."""
    from dataclasses import replace

    from kmsflow.airflow.tasks import rotate_rewrap

    real = rotate_rewrap.reencrypt

    def claims_without_doing(client: Any, targets: Any, **kwargs: Any) -> Any:
        report = real(client, targets, **{**kwargs, "dry_run": True})
        report.dry_run = False
        report.results = [replace(r, status="reencrypted", new_envelope_id="0" * 32) for r in report.results]
        return report

    monkeypatch.setattr(rotate_rewrap, "reencrypt", claims_without_doing)
    before = everything(world)
    result = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt")
    assert result.mapped_states["reencrypt"] == {0: "success"}
    assert result.states["check"] == "failed" and result.state == "failed"
    [message] = failure_messages(capfd)
    assert message.startswith("verification failed: 14 problem(s)")  # 7 x (mismatch, old id in use)
    assert "EnvelopeIdMismatch" in message and "OldDataKeyInUse" in message
    assert everything(world) == before


def test_new_id_check_catches_an_envelope_that_kept_its_data_key(world: World) -> None:
    from kmsflow.airflow.tasks.rotate_rewrap import new_id_check

    fresh = scan([str(world.root_a), str(world.root_b)])
    target = world.made[0].dst
    old = inspect(target)["envelope_id"]
    claimed = {"status": "reencrypted", "url": target, "old_envelope_id": old, "new_envelope_id": "0" * 32}
    issues = new_id_check([{"results": [claimed]}])(fresh)
    assert [(i.url, i.error) for i in issues] == [(target, "EnvelopeIdMismatch"), (target, "OldDataKeyInUse")]
    honest = {**claimed, "old_envelope_id": "f" * 32, "new_envelope_id": old}
    assert new_id_check([{"results": [honest, {**honest, "status": "failed"}]}])(fresh) == []


def test_incomplete_scan_rewraps_what_it_can_and_fails_verify(
    rewrap_dag: Any, world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    resources.rotate(world.client, world.data_key)
    (world.root_a / "stray.bin").write_bytes(b"no record covers me")

    result = run_dag(rewrap_dag, spec_path=str(world.spec_path))
    assert result.states["inventory"] == "success"
    assert result.values["inventory"]["complete"] is False
    assert result.values["inventory"]["blocking_findings"][0]["kind"] == "data_without_record"
    assert result.mapped_states["rewrap"] == {0: "success"}
    assert result.mapped_values["rewrap"][0]["rewrapped"] == 6  # readable envelopes still moved
    assert result.states["check"] == "failed" and result.states["publish"] == "upstream_failed"
    assert result.state == "failed"
    [message] = failure_messages(capfd)
    assert message.startswith("verification failed") and "data_without_record" in message


def test_batches_never_exceed_max_map_length() -> None:
    from kmsflow.airflow.tasks.rotate_rewrap import make_batches

    urls = [f"u{i}" for i in range(10)]
    assert make_batches(urls, 3, 1024) == [urls[0:3], urls[3:6], urls[6:9], urls[9:]]
    grown = make_batches(urls, 1, 4)  # 10 batches of 1 would exceed 4: batches of 3 instead
    assert len(grown) == 4 and [u for b in grown for u in b] == urls
    assert make_batches([], 5, 4) == []


def test_prepare_selects_keys_and_roots(tmp_path: Path, ring_id: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from kmsflow.airflow.tasks.rotate_rewrap import prepare

    root_a, root_b = tmp_path / "a", tmp_path / "b"
    spec_path = write_spec(tmp_path, ring_id, root_a, root_b, tmp_path / "audit.jsonl")
    ring = f"projects/kmsflow-test/locations/us-central1/keyRings/{ring_id}"
    every = prepare(str(spec_path), key=None, roots=None, mode="rewrap", batch_size=10, max_parallel=4)
    assert every["keys"] == [f"{ring}/cryptoKeys/data", f"{ring}/cryptoKeys/other"]
    assert every["roots"] == sorted([str(root_a), str(root_b)])  # every root, whichever key
    one = prepare(
        str(spec_path), key="other", roots=["gs://b/x"], mode="rewrap", batch_size=1, max_parallel=1
    )
    assert one["keys"] == [f"{ring}/cryptoKeys/other"] and one["roots"] == ["gs://b/x"]
    with pytest.raises(AirflowFailException, match="not in the spec"):
        prepare(str(spec_path), key="nope", roots=None, mode="rewrap", batch_size=1, max_parallel=1)
    with pytest.raises(AirflowFailException, match="at least 1"):
        prepare(str(spec_path), key=None, roots=None, mode="rewrap", batch_size=0, max_parallel=1)
    assert every["mode"] == "rewrap"
    again = prepare(str(spec_path), key=None, roots=None, mode="reencrypt", batch_size=1, max_parallel=1)
    assert again["mode"] == "reencrypt" and again["keys"] == every["keys"]
    with pytest.raises(AirflowFailException, match="mode must be one of rewrap, reencrypt"):
        prepare(str(spec_path), key=None, roots=None, mode="rotate", batch_size=1, max_parallel=1)
