"""Provider registration: metadata valid against Airflow's schemas, and visible to the CLI."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import airflow
import jsonschema

from kmsflow.airflow.get_provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent
PACKAGE = "airflow-provider-kmsflow"


def test_provider_info_matches_airflow_schemas() -> None:
    info = get_provider_info()
    jsonschema.validate(info, json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text()))
    # conn-fields / ui-field-behaviour are only described by the provider.yaml schema.
    yaml_schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    conn_item_schema = yaml_schema["properties"]["connection-types"]["items"]
    (conn,) = info["connection-types"]
    jsonschema.validate(conn, conn_item_schema)
    assert conn["connection-type"] == "kmsflow"
    assert {"endpoint", "principal", "deadline", "key_path", "keyfile_dict", "impersonation_chain"} <= set(
        conn["conn-fields"]
    )
    assert info["package-name"] == PACKAGE


def test_every_declared_module_and_class_imports() -> None:
    import importlib

    info = get_provider_info()
    modules = [
        module
        for section in ("hooks", "operators", "sensors", "triggers")
        for entry in info[section]
        for module in entry["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for dotted in [info["connection-types"][0]["hook-class-name"], *info["extra-links"]]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def test_airflow_cli_lists_and_describes_the_provider(airflow_cli: Any) -> None:
    # Two CLI start-ups (~5 s each) side by side. (``providers hooks`` is left out: it imports every
    # hook of every provider, ~11 s; the hook class import is checked in-process above.)
    with ThreadPoolExecutor(2) as pool:
        listed, got = pool.map(
            lambda args: airflow_cli(*args),
            [("providers", "list", "-o", "json"), ("providers", "get", PACKAGE, "--full", "-o", "json")],
        )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert PACKAGE in {p["package_name"] for p in json.loads(listed.stdout)}

    assert got.returncode == 0, got.stderr[-2000:]
    (described,) = json.loads(got.stdout)
    assert [c["connection-type"] for c in described["connection-types"]] == ["kmsflow"]
    assert described["connection-types"][0]["hook-class-name"] == "kmsflow.airflow.hooks.kms.KmsHook"
    assert "endpoint" in described["connection-types"][0]["conn-fields"]
    assert described["hooks"][0]["python-modules"] == ["kmsflow.airflow.hooks.kms"]
    operator_modules = described["operators"][0]["python-modules"]
    assert "kmsflow.airflow.operators.versions" in operator_modules
    assert "kmsflow.airflow.operators.iam" in operator_modules
    assert described["sensors"][0]["python-modules"] == ["kmsflow.airflow.sensors.key_version"]
    assert described["extra-links"] == ["kmsflow.airflow.links.KmsConsoleLink"]
