"""The page's two buttons: trigger a lifecycle DAG through Airflow's own REST API, as the user.

The request to ``POST /api/v2/dags/{dag_id}/dagRuns`` carries the JWT the user's own request came
with (``Authorization: Bearer`` or Airflow's ``_token`` cookie), never a service identity: Airflow
checks the user's permission again, records the user as the run's triggerer, and a user who may not
trigger the DAG gets Airflow's refusal. The conf is fixed here, not taken from the browser: a dry
run of ``kmsflow_shred`` for one key, or a re-wrap of one key's envelopes by
``kmsflow_rotate_rewrap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

SHRED_DAG_ID = "kmsflow_shred"
REWRAP_DAG_ID = "kmsflow_rotate_rewrap"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Action:
    """A button: the DAG it triggers and the conf for one key (its full name)."""

    name: str
    dag_id: str
    label: str

    def conf(self, key: str, user: str) -> dict[str, Any]:
        key_id = key.rsplit("/", 1)[-1]
        if self.dag_id == SHRED_DAG_ID:
            return {
                "keys": [key_id],
                "dry_run": True,
                "reason": f"dry run from the Key Lifecycle page by {user}",
            }
        return {
            "key": key,
            "mode": "rewrap",
            "dry_run": False,
            "reason": f"re-wrap now, Key Lifecycle page, by {user}",
        }


ACTIONS = {
    a.name: a
    for a in (
        Action("dry-run-shred", SHRED_DAG_ID, "Dry-run shred"),
        Action("rewrap-now", REWRAP_DAG_ID, "Re-wrap now"),
    )
}


class TriggerError(Exception):
    """Airflow's API refused or failed the trigger (``status`` is its HTTP status, 502 if none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def trigger_dag(
    api_base: str,
    token: str,
    dag_id: str,
    conf: dict[str, Any],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """``POST {api_base}/api/v2/dags/{dag_id}/dagRuns`` with the user's ``token``; the new run."""
    url = f"{api_base.rstrip('/')}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        try:
            response = await client.post(
                url,
                json={"logical_date": None, "conf": conf},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise TriggerError(502, f"cannot reach Airflow's API at {api_base}: {exc}") from exc
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise TriggerError(response.status_code, f"Airflow refused to trigger {dag_id}: {detail}")
    run = response.json()
    return {"dag_id": dag_id, "dag_run_id": str(run["dag_run_id"]), "state": str(run.get("state", ""))}
