"""The kmsflow Airflow plugin: the Key Lifecycle page ("KMS keys" under Browse in the Airflow UI).

Registered by the provider's ``airflow.plugins`` entry point, so installing the provider is enough;
``plugins/kmsflow_keys.py`` (top level) covers a deployment that only mounts a plugins folder.
The API server mounts the page's FastAPI app (:mod:`.app`) under ``/kmsflow`` and the UI shows it
in an iframe at ``/plugin/kmsflow``.

Workers, the scheduler and the DAG processor import plugins too, so importing this module loads
neither FastAPI nor the page's code, gRPC, the KMS client or Tink: the app is built on first access
to ``fastapi_apps``, which only the API server (and ``airflow plugins``) makes.
"""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/kmsflow"
NAME = "kmsflow"


@functools.cache
def _apps() -> list[dict[str, Any]]:
    from kmsflow.airflow.plugin.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "kmsflow Key Lifecycle"}]


class _BuiltOnFirstUse:
    """``fastapi_apps``, built when first read (the API server), not when the module is imported."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        return _apps()


class KmsflowPlugin(AirflowPlugin):
    """The Key Lifecycle page and its navigation entry."""

    name = NAME
    fastapi_apps = _BuiltOnFirstUse()  # type: ignore[assignment]
    external_views = [  # noqa: RUF012 - AirflowPlugin declares it a plain list
        {
            "name": "KMS keys",
            "href": f"{URL_PREFIX}/",
            "url_route": NAME,
            "destination": "nav",
            "category": "browse",
        }
    ]


__all__ = ["URL_PREFIX", "KmsflowPlugin"]
