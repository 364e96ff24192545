"""kmsflow_rotate_rewrap through ``dag.test()`` against a private emulator and real envelopes on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import Made, fingerprint, make_dataset, make_file
from lifecycle_dagkit import failure_messages, load_dag, run_dag

from kmsflow.audit import read_events
from kmsflow.envelope import decrypt, inspect
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
    assert rewrap_dag.schedule == "@daily" and rewrap_dag.catchup is False
    assert params["dry_run"] is False and params["rotate_first"] is False
    assert params["max_parallel"] == 16 and params["mode"] == "rewrap"
    assert params["key"] == "" and params["roots"] == []
    assert [t.task_id for t in rewrap_dag.topological_sort()] == [
        "plan",
        "rotate",
        "detect",
        "inventory",
        "batches",
        "rewrap",
        "check",
        "publish",
    ]


def test_rotate_then_rewrap_in_batches_then_noop_then_automatic_rotation(
    rewrap_dag: Any, world: World, tmp_path: Path
) -> None:
    data_files = fingerprint(world.root_a), fingerprint(world.root_b)

    first = run_dag(rewrap_dag, spec_path=str(world.spec_path), rotate_first=True, batch_size=2)
    assert first.state == "success", first.states
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


def test_reencrypt_fails_clearly_before_any_change(
    rewrap_dag: Any, world: World, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from kmsflow.airflow.rewrap_tasks import prepare

    before = record_bytes(world)
    result = run_dag(rewrap_dag, spec_path=str(world.spec_path), mode="reencrypt", rotate_first=True)
    assert result.states["plan"] == "failed"
    [message] = failure_messages(capfd)
    assert "mode 'reencrypt'" in message and "kmsflow reencrypt" in message
    assert {result.states[t] for t in ("rotate", "detect", "inventory", "check", "publish")} == {
        "upstream_failed"
    }
    assert record_bytes(world) == before
    assert len(resources.list_versions(world.client, world.data_key)) == 1  # no rotation
    with pytest.raises(AirflowFailException, match=r"'reencrypt' .* not available in this DAG"):
        prepare(str(world.spec_path), key=None, roots=None, mode="reencrypt", batch_size=1, max_parallel=1)


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
    from kmsflow.airflow.rewrap_tasks import make_batches

    urls = [f"u{i}" for i in range(10)]
    assert make_batches(urls, 3, 1024) == [urls[0:3], urls[3:6], urls[6:9], urls[9:]]
    grown = make_batches(urls, 1, 4)  # 10 batches of 1 would exceed 4: batches of 3 instead
    assert len(grown) == 4 and [u for b in grown for u in b] == urls
    assert make_batches([], 5, 4) == []


def test_prepare_selects_keys_and_roots(tmp_path: Path, ring_id: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from kmsflow.airflow.rewrap_tasks import prepare

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
