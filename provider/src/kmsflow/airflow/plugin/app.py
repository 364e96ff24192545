"""The Key Lifecycle page: a FastAPI app the Airflow API server mounts under ``/kmsflow``.

``GET /`` is the page (server-rendered, Jinja2 with autoescaping: every name from KMS, the audit log
or storage is text, never markup); ``GET /api/keys`` is the same data as JSON; ``POST
/api/actions/{action}`` triggers a lifecycle DAG as the user (:mod:`.trigger`); ``GET
/static/{name}`` serves the page's script and style sheet. Every route requires a logged-in Airflow
user (Airflow's ``get_user``: the ``Authorization: Bearer`` JWT or the UI's ``_token`` cookie; 401
without) allowed to read the runs of both lifecycle DAGs (403 otherwise). The buttons are rendered,
and the action route answers, only for users Airflow allows to trigger that DAG.

Imported by the API server only, on first access to the plugin's ``fastapi_apps``: nothing here runs
when a worker or the scheduler imports the plugin.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import jinja2
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from kmsflow.airflow.plugin.keys import ACTIONS as AUDIT_ACTIONS
from kmsflow.airflow.plugin.keys import PageData, load_page, run_url, spec_key_names
from kmsflow.airflow.plugin.trigger import ACTIONS, REWRAP_DAG_ID, SHRED_DAG_ID, TriggerError, trigger_dag

HERE = Path(__file__).resolve().parent
KMSFLOW_CONN_ID = "kmsflow_default"
STATIC = {"keys.js": "text/javascript", "keys.css": "text/css"}
SECURITY_HEADERS = {
    # Defence in depth behind autoescaping: no inline script or handler could run, and only
    # Airflow's own UI (same origin) may frame the page.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _allowed(user: BaseUser, method: str, dag_id: str) -> bool:
    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,  # type: ignore[arg-type]
            access_entity=DagAccessEntity.RUN,
            details=DagDetails(id=dag_id),
            user=user,
        )
    )


def reader(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    """The logged-in user, if allowed to read the runs of both lifecycle DAGs (else 403)."""
    if not all(_allowed(user, "GET", dag_id) for dag_id in (REWRAP_DAG_ID, SHRED_DAG_ID)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "reading the kmsflow lifecycle DAGs' runs is not allowed"
        )
    return user


Reader = Annotated[BaseUser, Depends(reader)]


def _root(request: Request) -> str:
    """The path this app is mounted at (``/kmsflow``, behind any prefix Airflow itself has)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _ui_base(request: Request) -> str:
    """The Airflow UI's base path: where this app is mounted, minus its own prefix."""
    root = _root(request)
    return root.rsplit("/", 1)[0] if root else ""


def _can_trigger(user: BaseUser) -> dict[str, bool]:
    return {name: _allowed(user, "POST", action.dag_id) for name, action in ACTIONS.items()}


def _page(request: Request, user: BaseUser, key: str | None, action: str | None) -> dict[str, Any]:
    data: PageData = load_page(
        kmsflow_conn_id=KMSFLOW_CONN_ID, ui_base=_ui_base(request), key=key or None, action=action or None
    )
    return {**data, "user": user.get_name(), "can_trigger": _can_trigger(user)}


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["size"] = _size
    env.filters["duration"] = _duration
    return env


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: int | None) -> str:
    if not seconds:
        return "none (manual)"
    days, rest = divmod(seconds, 86400)
    return f"{days}d" if not rest else f"{seconds}s"


def _headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def create_app() -> FastAPI:
    """The app the plugin mounts (one per API server process)."""
    app = FastAPI(title="kmsflow Key Lifecycle", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, user: Reader, key: str = "", action: str = "") -> Response:
        context = _page(request, user, key, action)
        html = (
            _templates()
            .get_template("keys.html")
            .render(
                **context,
                root=_root(request),
                ui_base=_ui_base(request),
                audit_actions=AUDIT_ACTIONS,
                buttons=ACTIONS,
                filter_key=key,
                filter_action=action,
            )
        )
        return _headers(HTMLResponse(html))

    @app.get("/api/keys")
    def keys(request: Request, user: Reader, key: str = "", action: str = "") -> Response:
        return _headers(JSONResponse(_page(request, user, key, action)))

    @app.post("/api/actions/{name}")
    async def act(name: str, request: Request, user: Reader) -> Response:
        chosen = ACTIONS.get(name)
        if chosen is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no action {name!r}")
        # A JSON body is what a cross-site form cannot send without a CORS preflight (refused):
        # the cookie alone never triggers a DAG.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the action as application/json")
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from None
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "give the key's full name as 'key'")
        if not _allowed(user, "POST", chosen.dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not trigger {chosen.dag_id}")
        if key not in spec_key_names():
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "not a key of the configured key spec")
        token = _token(request)
        api_base = f"{request.url.scheme}://{request.url.netloc}{_ui_base(request)}"
        try:
            run = await trigger_dag(
                api_base,
                token,
                chosen.dag_id,
                chosen.conf(key, user.get_name()),
                transport=getattr(request.app.state, "api_transport", None),
            )
        except TriggerError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        run["url"] = run_url(f"{run['dag_id']}/{run['dag_run_id']}", _ui_base(request))
        return _headers(JSONResponse(run, status_code=status.HTTP_201_CREATED))

    @app.get("/static/{name}")
    def static(name: str, user: Reader) -> Response:
        media_type = STATIC.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return _headers(Response((HERE / "static" / name).read_bytes(), media_type=media_type))

    return app


def _token(request: Request) -> str:
    """The JWT this request was authenticated with (``get_user`` already validated it)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN, "")
