"""With a distributed executor (Celery, Kubernetes...), the lifecycle DAGs refuse local roots and a local
audit log that the key spec does not declare shared: each worker would scan (and log to) its own
directory. Refused before any KMS call or write, with the place named."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from inventory.builders import make_file
from lifecycle_dagkit import failure_messages, load_dag, run_dag

from kmsflow.airflow.tasks import common, erase, rotate_rewrap, shred
from kmsflow.spec import apply, load_spec, plan

CELERY = "CeleryExecutor"


class NoKms:
    """A hook stand-in: any use means a KMS call (or audit) was about to happen."""

    def deadline_scope(self) -> contextlib.nullcontext[None]:  # the tasks' retry-deadline wrapper
        return contextlib.nullcontext()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the hook was used ({name}) before the refusal")


def write_spec(
    tmp_path: Path, root: str, audit: str, shared: list[str] | None = None, ring: str = "r"
) -> Path:
    lines = ["project: kmsflow-test", "location: us-central1", f"audit_log: {json.dumps(audit)}"]
    if shared is not None:
        lines.append(f"shared_paths: {json.dumps(shared)}")
    lines += [
        "key_rings:",
        f"  - id: {ring}",
        "    keys:",
        "      - id: data",
        "        rotation_period: null",
        "        tenant: acme",
        f"        roots: [{json.dumps(root)}]",
    ]
    path = tmp_path / "spec.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("LocalExecutor", []),
        ("SequentialExecutor", []),
        ("CeleryExecutor", ["CeleryExecutor"]),
        ("KubernetesExecutor", ["KubernetesExecutor"]),
        ("LocalExecutor,CeleryExecutor", ["CeleryExecutor"]),
        ("LocalExecutor, remote:airflow.providers.edge3.executors.EdgeExecutor", ["EdgeExecutor"]),
        ("my.company.ClusterExecutor", ["ClusterExecutor"]),
    ],
)
def test_distributed_executors_from_airflow_conf(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: list[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", setting)
    assert common.distributed_executors() == expected


def test_local_places_refused_only_with_a_distributed_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(write_spec(tmp_path, "/srv/roots/a", "gs://audit/log"))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    common.require_shared(spec, ["/srv/roots/a"], what="root")  # one machine: fine
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)
    with pytest.raises(common.AirflowFailException) as refused:
        common.require_shared(spec, ["/srv/roots/a", "gs://b/x", "rel/b"], what="root")
    message = str(refused.value)
    assert "the roots /srv/roots/a, rel/b are local" in message
    assert "CeleryExecutor" in message and "shared_paths:" in message and "gs://" in message
    assert "Nothing was changed" in message
    common.require_shared(spec, ["gs://b/x"], what="root")
    shared = load_spec(write_spec(tmp_path, "/srv/roots/a", "gs://audit/log", shared=["/srv/roots"]))
    common.require_shared(shared, ["/srv/roots/a", "file:///srv/roots/b"], what="root")


def test_every_lifecycle_task_refuses_before_any_kms_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)
    local_root = write_spec(tmp_path, str(tmp_path / "root"), "gs://audit/log")
    calls: list[Callable[[], Any]] = [
        lambda: rotate_rewrap.prepare(
            str(local_root), key=None, roots=None, mode="rewrap", batch_size=10, max_parallel=1
        ),
        lambda: shred.shred(
            NoKms(), str(local_root), keys=None, dry_run=False, manual=False, confirm=None, run="x"
        ),
        lambda: erase.erase(
            NoKms(), str(local_root), "data", confirm_tenant="acme", confirm_key="data", reason="r", run="x"
        ),
        lambda: erase.prove(NoKms(), str(local_root), "data", run="x"),
    ]
    for call in calls:
        with pytest.raises(
            common.AirflowFailException, match=re.escape(f"the root {tmp_path / 'root'} is local")
        ):
            call()
    # A param override of the roots is checked too.
    gcs_spec = write_spec(tmp_path, "gs://b/x", "gs://audit/log")
    with pytest.raises(common.AirflowFailException, match=re.escape("the roots /a, /b are local")):
        rotate_rewrap.prepare(
            str(gcs_spec), key=None, roots=["/a", "/b"], mode="rewrap", batch_size=1, max_parallel=1
        )


def test_a_local_audit_log_is_refused_wherever_it_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", CELERY)

    class ConnectionAudit(NoKms):
        audit_log = "/var/lib/kmsflow/audit.jsonl"

    spec_in_spec = load_spec(write_spec(tmp_path, "gs://b/x", str(tmp_path / "audit.jsonl")))
    with pytest.raises(
        common.AirflowFailException, match=re.escape(f"the audit log {tmp_path / 'audit.jsonl'} is local")
    ):
        common.open_audit(spec_in_spec, NoKms(), "run")  # type: ignore[arg-type]
    spec = load_spec(write_spec(tmp_path, "gs://b/x", "x"))
    spec = spec.model_copy(update={"audit_log": None})
    with pytest.raises(
        common.AirflowFailException, match=re.escape("the audit log /var/lib/kmsflow/audit.jsonl is local")
    ):
        common.open_audit(spec, ConnectionAudit(), "run", required_for="rotate")  # type: ignore[arg-type]


def test_rotate_rewrap_dag_refuses_unshared_roots_then_runs_once_they_are_declared_shared(
    airflow_db: str,
    fresh_emulator: Any,
    tmp_path: Path,
    ring_id: str,
    set_conn: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag = load_dag("kmsflow_rotate_rewrap")
    root, audit = tmp_path / "root", tmp_path / "audit.jsonl"
    root.mkdir()
    spec_path = write_spec(tmp_path, str(root), str(audit), ring=ring_id)
    client = fresh_emulator.client()
    spec = load_spec(spec_path)
    apply(plan(spec, client), client)
    ((key, _),) = spec.crypto_keys()
    make_file(client, key, tmp_path / "src", str(root / "a.enc"), 100, seed=1)
    set_conn(endpoint=fresh_emulator.endpoint)
    # dag.test() runs the tasks in this process: they see the executor Celery workers would.
    monkeypatch.setattr(common, "distributed_executors", lambda: [CELERY])
    capfd.readouterr()

    refused = run_dag(dag, spec_path=str(spec_path), rotate_first=True)
    assert refused.state == "failed"
    assert refused.states["plan"] == "failed"
    assert refused.states["rotate"] != "success"
    assert any(f"the root {root} is local" in line for line in failure_messages(capfd))
    assert not audit.exists()
    assert [v.name for v in client.list_crypto_key_versions(request={"parent": key})] == [
        f"{key}/cryptoKeyVersions/1"
    ]

    write_spec(tmp_path, str(root), str(audit), shared=[str(tmp_path)], ring=ring_id)
    accepted = run_dag(dag, spec_path=str(spec_path), rotate_first=True)
    assert accepted.state == "success", accepted.states
    assert audit.exists()
