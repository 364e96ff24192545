"""Event-driven scheduling on a real scheduler and triggerer (issue 20): no manual trigger anywhere.

One native cluster for the module (``tests/e2e/celery_cluster.py``: PostgreSQL, Redis, Celery
workers, scheduler, dag-processor, triggerer), the KMS emulator with IAM enforced, short poll
intervals and a 3-minute drift-repair schedule through the environment:

- a key rotated in the emulator -- by Cloud KMS's schedule (the emulated clock), by kmsflow (the
  audited ``lifecycle.rotate``), by hand with the plain client, and by hand while the triggerer is
  down -- starts a ``kmsflow_rotate_rewrap`` run (run type ``asset_triggered``, started by the
  watcher's event naming key, old and new primary), which re-wraps the stale envelopes;
- a key added to the spec file starts a ``kmsflow_provision`` run that creates it (audited under
  that run); an IAM binding removed by hand is granted back by the next *scheduled* run.

Every wait has a deadline; on failure the components' log tails are printed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery_cluster import BIN, OWNER, Cluster

from kmsflow.audit import AuditLog, read_events
from kmsflow.envelope import encrypt, verify
from kmsflow.inventory import scan
from kmsflow.kms import new_kms_client
from kmsflow.lifecycle import rotate
from kmsflow_emulator.admin import AdminClient

RING = "projects/kmsflow-e2e/locations/us-central1/keyRings/ring"
KEY = f"{RING}/cryptoKeys/data"
ADDED = f"{RING}/cryptoKeys/added"
CONSUMER = "serviceAccount:inference@kmsflow-e2e.iam.gserviceaccount.com"
DECRYPTER = "roles/cloudkms.cryptoKeyDecrypter"
ENVELOPES = 6
DAY = 86400
REWRAP, PROVISION = "kmsflow_rotate_rewrap", "kmsflow_provision"
SCHEDULE_MINUTES = 3  # drift repair every 3 minutes: idle gaps between runs on a loaded machine


def spec_text(base: Path, *, added: bool = False) -> str:
    extra = "      - id: added\n        rotation_period: null\n" if added else ""
    return f"""
project: kmsflow-e2e
location: us-central1
audit_log: {base / "shared" / "audit.jsonl"}
shared_paths: [{base / "shared"}]
key_rings:
  - id: ring
    keys:
      - id: data
        rotation_period: 30d
        consumers: [{CONSUMER}]
        roots: [{base / "shared" / "data"}]
{extra}"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("events")
    (base / "shared" / "data").mkdir(parents=True)
    (base / "spec.yaml").write_text(spec_text(base))
    running = Cluster(base)
    try:
        running.start_postgres()
        running.start_redis()
        running.start_emulators("kmsflow")
        connection = {
            "conn_type": "kmsflow",
            "extra": {"endpoint": running.kms_endpoint, "principal": OWNER, "deadline": 30},
        }
        running.start_airflow(
            {
                "KMSFLOW_SPEC": str(base / "spec.yaml"),
                "AIRFLOW_CONN_KMSFLOW_DEFAULT": json.dumps(connection),
                "KMSFLOW_ROTATION_POLL_INTERVAL": "2",
                "KMSFLOW_SPEC_POLL_INTERVAL": "2",
                "KMSFLOW_PROVISION_SCHEDULE": f"*/{SCHEDULE_MINUTES} * * * *",
                # The harness runs manual triggers only by default; here the scheduler must create
                # the scheduled and the asset-triggered runs.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
            }
        )
        running.wait_for_dags({REWRAP, PROVISION})
        yield running
    except BaseException:
        print(running.log_tails(40))
        raise
    finally:
        running.stop()


def wait_for(what: str, check: Callable[[], Any], timeout: float, cluster: Cluster) -> Any:
    """``check()``'s first truthy value, polled every second; fails with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    dag_runs = cluster.rows("select dag_id, run_id, run_type, state from dag_run order by id")
    pytest.fail(f"{what}: not within {timeout:.0f}s\nruns: {dag_runs}\n{cluster.log_tails(40)}")


def runs(cluster: Cluster, dag_id: str, run_type: str) -> list[dict[str, str]]:
    rows = cluster.rows(
        "select run_id, state, to_char(start_date at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
        f"from dag_run where dag_id = '{dag_id}' and run_type = '{run_type}' order by id"
    )
    return [{"run_id": r[0], "state": r[1], "start": r[2]} for r in rows]


def all_runs(cluster: Cluster, dag_id: str) -> list[dict[str, str]]:
    rows = cluster.rows(f"select run_id, state from dag_run where dag_id = '{dag_id}' order by id")
    return [{"run_id": r[0], "state": r[1]} for r in rows]


def next_run(cluster: Cluster, dag_id: str, run_type: str, known: set[str], timeout: float = 150) -> str:
    """The first run of ``run_type`` not in ``known``, once it has finished (successfully)."""
    run = wait_for(
        f"a new {run_type} run of {dag_id}",
        lambda: next((r for r in runs(cluster, dag_id, run_type) if r["run_id"] not in known), None),
        timeout,
        cluster,
    )
    state = cluster.wait_run(dag_id, run["run_id"], timeout=300)
    assert state == "success", cluster.task_instances(dag_id, run["run_id"])
    return str(run["run_id"])


def triggering_payloads(cluster: Cluster, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The ``payload`` of each asset event that started the run (what the watcher fired)."""
    rows = cluster.rows(
        "select e.extra from asset_event e join dagrun_asset_event d on d.event_id = e.id "
        f"join dag_run r on r.id = d.dag_run_id where r.dag_id = '{dag_id}' and r.run_id = '{run_id}'"
    )
    return [json.loads(row[0]).get("payload", {}) for row in rows]


def watched(cluster: Cluster, asset: str, key: str) -> str | None:
    """What the watcher of ``asset`` recorded under ``key`` in its state store (None: not yet)."""
    rows = cluster.rows(
        "select s.value from asset_state_store s join asset a on a.id = s.asset_id "
        f"where a.name = '{asset}' and s.key = '{key}'"
    )
    return rows[0][0] if rows else None


def seconds_to_next_tick() -> float:
    """Seconds until the drift-repair schedule's next tick."""
    now = datetime.now(UTC)
    into = (now.minute % SCHEDULE_MINUTES) * 60 + now.second + now.microsecond / 1e6
    return SCHEDULE_MINUTES * 60 - into


def idle(cluster: Cluster, dag_id: str) -> bool:
    return not cluster.rows(
        f"select 1 from dag_run where dag_id = '{dag_id}' and state in ('queued', 'running')"
    )


@pytest.mark.timeout(1800)
def test_rotations_start_the_rewrap_and_spec_edits_start_provisioning(cluster: Cluster) -> None:
    base = cluster.base
    root = base / "shared" / "data"
    audit = str(base / "shared" / "audit.jsonl")
    client = new_kms_client(endpoint=cluster.kms_endpoint, principal=OWNER)

    # The drift-repair schedule provisions the spec by itself (no manual run of anything). Runs
    # scheduled while the cluster was still starting may have failed for want of an API server.
    known = {r["run_id"] for r in all_runs(cluster, PROVISION)}
    first = next_run(cluster, PROVISION, "scheduled", known, timeout=60 * SCHEDULE_MINUTES + 150)
    assert client.get_crypto_key(name=KEY).primary.name == f"{KEY}/cryptoKeyVersions/1"
    for i in range(ENVELOPES):
        src = base / f"plain{i}"
        src.write_bytes(os.urandom(512))
        encrypt(client, KEY, str(src), str(root / f"f{i}.enc"))
        src.unlink()
    wait_for(
        "the rotation watcher's baseline", lambda: watched(cluster, "kmsflow_key_rotations", KEY), 60, cluster
    )

    def rotated_and_rewrapped(how: str, rotation: Callable[[], str]) -> None:
        known = {r["run_id"] for r in all_runs(cluster, REWRAP)}
        old = client.get_crypto_key(name=KEY).primary.name
        new = rotation()
        run_id = next_run(cluster, REWRAP, "asset_triggered", known)
        assert {"key": KEY, "previous_primary": old, "primary": new} in triggering_payloads(
            cluster, REWRAP, run_id
        ), how
        found = scan([str(root)])
        assert found.complete and dict(found.by_version()).keys() == {new}, (how, found.by_version())
        assert found.by_version()[new].envelopes == ENVELOPES
        for i in range(ENVELOPES):
            verify(client, str(root / f"f{i}.enc"))
        print(f"{how}: {old} -> {new}, re-wrapped by {run_id}")

    def by_clock() -> str:
        with AdminClient(cluster.kms_endpoint) as admin:
            admin.advance(31 * DAY)  # Cloud KMS's own 30-day schedule
        return str(client.get_crypto_key(name=KEY).primary.name)

    def by_kmsflow() -> str:
        log = AuditLog(audit, actor=OWNER, run="e2e")
        return str(rotate(client, KEY, audit=log, reason="e2e: rotation by kmsflow").name)

    def by_hand() -> str:
        version = client.create_crypto_key_version(parent=KEY, crypto_key_version={})
        client.update_crypto_key_primary_version(
            name=KEY, crypto_key_version_id=version.name.rsplit("/", 1)[1]
        )
        return str(version.name)

    def by_hand_while_the_triggerer_is_down() -> str:
        cluster.kill("triggerer")
        new = by_hand()
        time.sleep(3)  # longer than a poll interval: nobody is watching
        # Its own name: the first triggerer's log stays readable.
        cluster.spawn("triggerer-restarted", [str(BIN / "airflow"), "triggerer"], cluster.env)
        return new

    rotated_and_rewrapped("automatic (clock)", by_clock)
    rotated_and_rewrapped("kmsflow", by_kmsflow)
    rotated_and_rewrapped("by hand", by_hand)
    rotated_and_rewrapped("by hand, triggerer restarted", by_hand_while_the_triggerer_is_down)
    # The restarted watcher compared with its stored primary: one event, not one per restart.
    assert len(runs(cluster, REWRAP, "asset_triggered")) == 4

    # A key added to the spec: the spec watcher starts provisioning, which creates it. Edited with
    # no run active and the next scheduled run at least 45 s away, so that one cannot be first.
    wait_for(
        "a quiet moment for provisioning",
        lambda: idle(cluster, PROVISION) and seconds_to_next_tick() >= 45,
        2 * 60 * SCHEDULE_MINUTES,
        cluster,
    )
    known = {r["run_id"] for r in all_runs(cluster, PROVISION)}
    (base / "spec.yaml").write_text(spec_text(base, added=True))
    run_id = next_run(cluster, PROVISION, "asset_triggered", known)
    assert client.get_crypto_key(name=ADDED).primary.name == f"{ADDED}/cryptoKeyVersions/1"
    created = [e for e in read_events(audit) if e.action == "provision-create" and e.resource == ADDED]
    assert [e.run for e in created] == [f"{PROVISION}/{run_id}"]
    (payload,) = triggering_payloads(cluster, PROVISION, run_id)
    assert payload["spec_path"] == str(base / "spec.yaml") and payload["previous_sha256"] != payload["sha256"]

    # An IAM binding removed by hand in the emulator: the next scheduled run grants it back (the
    # run that does is the first to *plan* after the removal: possibly one already running).
    def regrants() -> list[Any]:
        return [
            e
            for e in read_events(audit)
            if e.action == "provision-grant" and e.resource == KEY and e.evidence.get("after") == CONSUMER
        ]

    granted_before = len(regrants())  # the first provisioning's grant
    policy = client.get_iam_policy(request={"resource": KEY})
    (decrypters,) = [b for b in policy.bindings if b.role == DECRYPTER]
    assert list(decrypters.members) == [CONSUMER]
    policy.bindings.remove(decrypters)  # its only member: the whole binding goes (none may be empty)
    client.set_iam_policy(request={"resource": KEY, "policy": policy})
    removed_at = time.monotonic()
    grant = wait_for(
        "the binding granted back",
        lambda: regrants()[granted_before:],
        60 * SCHEDULE_MINUTES + 150,
        cluster,
    )[0]
    assert grant.evidence.get("field") == DECRYPTER
    dag_id, _, run_id = grant.run.partition("/")
    assert dag_id == PROVISION and run_id.startswith("scheduled__"), grant.run
    assert cluster.wait_run(PROVISION, run_id, timeout=300) == "success"
    print(
        f"binding granted back by {run_id}, {time.monotonic() - removed_at:.0f}s after its removal "
        f"(first scheduled run: {first})"
    )
    bindings = {b.role: set(b.members) for b in client.get_iam_policy(request={"resource": KEY}).bindings}
    assert bindings[DECRYPTER] == {CONSUMER}
