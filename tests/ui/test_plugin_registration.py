"""How Airflow finds the plugin: once (entry point and plugins folder together), lightly (workers
import plugins too: no gRPC, KMS client, Tink or FastAPI at import), and with its nav entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pagekit import AIRFLOW_ENV, AUTH_ENV, REPO

HEAVY = ["grpc", "google.cloud.kms_v1", "tink", "fastapi", "kmsflow.airflow.plugin.app"]


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **AIRFLOW_ENV, **AUTH_ENV, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, json\n"
        "from kmsflow.airflow.plugin import KmsflowPlugin\n"
        "plugin = KmsflowPlugin()\n"
        "views = plugin.external_views\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    assert json.loads(run_python(code)) == []


def test_the_api_server_gets_the_app_on_first_use() -> None:
    code = (
        "import sys\n"
        "from kmsflow.airflow.plugin import KmsflowPlugin\n"
        "(app,) = KmsflowPlugin().fastapi_apps\n"
        "print(app['url_prefix'], type(app['app']).__name__, 'grpc' in sys.modules)\n"
    )
    assert run_python(code) == "/kmsflow FastAPI False"  # the page imports KMS per request only


def test_entry_point_and_plugins_folder_register_it_once() -> None:
    code = (
        "import json\n"
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "external, _ = plugins_manager._get_ui_plugins()\n"
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': errors, 'views': external}))\n"
    )
    found = json.loads(run_python(code, AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins")))
    assert found["names"].count("kmsflow") == 1
    assert found["errors"] == {}
    (view,) = [v for v in found["views"] if v["url_route"] == "kmsflow"]
    assert view == {
        "name": "KMS keys",
        "href": "/kmsflow/",
        "url_route": "kmsflow",
        "destination": "nav",
        "category": "browse",
    }


def test_the_plugins_folder_alone_registers_it_when_the_entry_point_is_missing() -> None:
    """A source checkout on PYTHONPATH without the installed provider: the folder file is the one."""
    code = (
        "import collections, json, importlib.metadata as md\n"
        "real = md.entry_points\n"
        "md.entry_points = lambda **kw: [] if kw.get('group') == 'airflow.plugins' else real(**kw)\n"
        "import airflow._shared.module_loading as loading\n"
        "loading._get_grouped_entry_points = lambda: collections.defaultdict(list)\n"
        "from airflow import plugins_manager\n"
        "plugins, errors = plugins_manager._get_plugins()\n"
        "print(json.dumps({'names': [p.name for p in plugins], 'errors': errors}))\n"
    )
    found = json.loads(run_python(code, AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins")))
    assert found == {"names": ["kmsflow"], "errors": {}}
