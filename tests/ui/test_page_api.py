"""The Key Lifecycle page through Airflow's real API app: JSON shape, auth, permissions, escaping,
and the buttons triggering DAGs through Airflow's REST API with the user's own JWT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pagekit import XSS_NAME, Lifecycle

from kmsflow.envelope.record import EnvelopeRecord

ENDPOINTS = [("GET", "/kmsflow/"), ("GET", "/kmsflow/api/keys"), ("GET", "/kmsflow/static/keys.js")]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def keys_json(client: Any, token: str, **params: str) -> dict[str, Any]:
    response = client.get("/kmsflow/api/keys", headers=bearer(token), params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_json_shows_versions_counts_stage_blockers_and_snapshot(
    client: Any, tokens: dict[str, str], lifecycle: Lifecycle
) -> None:
    data = keys_json(client, tokens["admin"])
    assert data["problems"] == []
    snapshot = data["snapshot"]
    assert snapshot["complete"] is True and snapshot["envelopes"] == 3
    assert snapshot["run"] == lifecycle.run
    assert snapshot["run_url"] == "/dags/kmsflow_rotate_rewrap/runs/manual__2026-12-07T10%3A00%3A00%2B00%3A00"
    assert snapshot["finished_at"].endswith("Z")
    (key,) = data["keys"]
    assert key["name"] == lifecycle.key and key["error"] is None
    v1, v2 = key["versions"]
    assert key["primary"] == v2["name"] == f"{lifecycle.key}/cryptoKeyVersions/2"
    assert (v1["state"], v1["primary"], v2["state"], v2["primary"]) == ("ENABLED", False, "ENABLED", True)
    assert v1["algorithm"] == "GOOGLE_SYMMETRIC_ENCRYPTION" and v1["protection_level"] == "SOFTWARE"
    assert (v1["envelopes"], v1["files"], v2["envelopes"], v2["files"]) == (2, 2, 1, 1)
    assert v1["ciphertext_bytes"] > 4000 and 0 < v2["ciphertext_bytes"] < 1000
    assert v1["blockers"]["count"] == 2
    assert sorted(Path(p).name for p in v1["blockers"]["first"]) == sorted(
        [f"{XSS_NAME}.enc", "model.bin.enc"]
    )
    assert v1["stage"]["stage"] == "in_use" and v1["stage"]["since"] == v2["created"]
    assert "re-wrap" in v1["stage"]["detail"]
    assert v2["stage"]["stage"] == "primary"
    (event,) = data["events"]
    assert (event["action"], event["resource"]) == ("rotate", lifecycle.key)
    assert event["run_url"] == snapshot["run_url"]
    assert data["can_trigger"] == {"dry-run-shred": True, "rewrap-now": True}
    assert data["user"] == "admin"


def test_events_filter_by_key_and_action(client: Any, tokens: dict[str, str], lifecycle: Lifecycle) -> None:
    key_id = lifecycle.key.rsplit("/", 1)[-1]
    assert len(keys_json(client, tokens["admin"], key=key_id, action="rotate")["events"]) == 1
    assert keys_json(client, tokens["admin"], key=key_id, action="destroy")["events"] == []
    assert keys_json(client, tokens["admin"], key="some-other-key")["events"] == []


def test_nothing_secret_in_the_json_or_the_page(
    client: Any, tokens: dict[str, str], lifecycle: Lifecycle
) -> None:
    answers = [
        client.get("/kmsflow/api/keys", headers=bearer(tokens["admin"])).text,
        client.get("/kmsflow/", headers=bearer(tokens["admin"])).text,
    ]
    for url in lifecycle.envelopes:
        record_path = Path(url + ".kmsflow.json")
        record = EnvelopeRecord.model_validate_json(record_path.read_bytes())
        for secret in (record.key.wrapped_keyset, record.manifest, record.envelope_id):
            assert all(secret not in answer for answer in answers)
    assert all("wrapped" not in answer for answer in answers)


def test_every_endpoint_needs_a_login(client: Any, lifecycle: Lifecycle) -> None:
    for method, path in [*ENDPOINTS, ("POST", "/kmsflow/api/actions/dry-run-shred")]:
        response = client.request(method, path, json={"key": lifecycle.key})
        assert response.status_code == 401, (method, path, response.text)
    forged = client.get("/kmsflow/api/keys", headers=bearer("not-a-jwt"))
    assert forged.status_code in (401, 403)
    assert "versions" not in forged.text


def test_file_names_from_storage_are_text_not_markup(
    client: Any, tokens: dict[str, str], lifecycle: Lifecycle
) -> None:
    response = client.get("/kmsflow/", headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    html = response.text
    assert XSS_NAME not in html  # never as raw markup
    assert "&lt;img src=x onerror=alert(1)&gt;.enc" in html  # but shown, as text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'self'" in policy


def test_viewer_sees_the_page_without_buttons_and_is_refused_a_trigger(
    client: Any, tokens: dict[str, str], lifecycle: Lifecycle
) -> None:
    data = keys_json(client, tokens["viewer"])
    assert data["can_trigger"] == {"dry-run-shred": False, "rewrap-now": False}
    assert data["keys"][0]["versions"][0]["envelopes"] == 2  # reading is allowed
    html = client.get("/kmsflow/", headers=bearer(tokens["viewer"])).text
    assert "data-action=" not in html
    admin_html = client.get("/kmsflow/", headers=bearer(tokens["admin"])).text
    assert 'data-action="dry-run-shred"' in admin_html and 'data-action="rewrap-now"' in admin_html
    for action in ("dry-run-shred", "rewrap-now"):
        refused = client.post(
            f"/kmsflow/api/actions/{action}", headers=bearer(tokens["viewer"]), json={"key": lifecycle.key}
        )
        assert refused.status_code == 403, refused.text
    runs = client.get("/api/v2/dags/kmsflow_shred/dagRuns", headers=bearer(tokens["admin"])).json()
    assert all(r["triggering_user_name"] != "viewer" for r in runs["dag_runs"])


@pytest.mark.parametrize(
    ("action", "dag_id", "conf_check"),
    [
        (
            "dry-run-shred",
            "kmsflow_shred",
            lambda conf, key: conf["dry_run"] is True and conf["keys"] == [key.rsplit("/", 1)[-1]],
        ),
        (
            "rewrap-now",
            "kmsflow_rotate_rewrap",
            lambda conf, key: conf["key"] == key and conf["mode"] == "rewrap",
        ),
    ],
)
def test_admin_triggers_through_airflows_api_as_themselves(
    client: Any, tokens: dict[str, str], lifecycle: Lifecycle, action: str, dag_id: str, conf_check: Any
) -> None:
    response = client.post(
        f"/kmsflow/api/actions/{action}", headers=bearer(tokens["admin"]), json={"key": lifecycle.key}
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["dag_id"] == dag_id and run["url"].startswith(f"/dags/{dag_id}/runs/")
    stored = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}", headers=bearer(tokens["admin"]))
    assert stored.status_code == 200, stored.text
    assert stored.json()["triggering_user_name"] == "admin"  # the user's identity, not a service's
    assert conf_check(stored.json()["conf"], lifecycle.key)


def test_actions_refuse_bad_input(client: Any, tokens: dict[str, str], lifecycle: Lifecycle) -> None:
    admin = bearer(tokens["admin"])
    url = "/kmsflow/api/actions/dry-run-shred"
    form = client.post(url, headers=admin, data={"key": lifecycle.key})  # what a cross-site form sends
    assert form.status_code == 415
    assert client.post(url, headers=admin, json={"key": lifecycle.key + "x"}).status_code == 400
    assert client.post(url, headers=admin, json=["not", "an", "object"]).status_code == 400
    garbled = client.post(url, headers={**admin, "Content-Type": "application/json"}, content=b"{")
    assert garbled.status_code == 400
    assert (
        client.post(
            "/kmsflow/api/actions/destroy-now", headers=admin, json={"key": lifecycle.key}
        ).status_code
        == 404
    )


def test_page_without_a_spec_says_so(
    client: Any, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KMSFLOW_SPEC", raising=False)
    data = keys_json(client, tokens["admin"])
    assert data["keys"] == [] and "KMSFLOW_SPEC" in data["problems"][0]


def test_json_is_the_documented_shape(client: Any, tokens: dict[str, str], lifecycle: Lifecycle) -> None:
    data = keys_json(client, tokens["admin"])
    assert set(data) == {"spec", "audit_log", "snapshot", "keys", "events", "problems", "user", "can_trigger"}
    version = data["keys"][0]["versions"][0]
    assert set(version) == {
        "name", "id", "state", "primary", "algorithm", "protection_level", "created", "envelopes", "files",
        "plaintext_bytes", "ciphertext_bytes", "blockers", "stage",
    }  # fmt: skip
    assert set(version["stage"]) == {"stage", "since", "until", "detail"}
    json.dumps(data)  # plain JSON all the way down
