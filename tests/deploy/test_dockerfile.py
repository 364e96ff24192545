"""The images install pinned versions: the Airflow image is the lock's Airflow on the lock's Python, the
provider goes in with requirements/lock.txt as its constraints, the emulators stay out of it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from dockerfile import copies, instructions, pip_installs

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
EMULATOR_DOCKERFILE = ROOT / "emulator" / "Dockerfile"
LOCK = ROOT / "requirements" / "lock.txt"


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
        if match:
            pins[normalize(match[1])] = match[2]
    return pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_python() -> str:
    text = (ROOT / "scripts" / "lock.sh").read_text()
    versions = set(re.findall(r"--python-version (\d+\.\d+)", text))
    assert len(versions) == 1, versions
    return versions.pop()


def test_base_image_matches_the_lock() -> None:
    froms = [i.argument for i in instructions(DOCKERFILE) if i.keyword == "FROM"]
    assert froms == [f"apache/airflow:{lock_pins()['apache-airflow']}-python{lock_python()}"]
    assert froms == ["apache/airflow:3.3.2-python3.11"]


def test_provider_installed_with_the_lock_as_constraints() -> None:
    installs = pip_installs(DOCKERFILE)
    assert len(installs) == 1
    install = installs[0]
    copied = copies(DOCKERFILE)
    assert [copied[c] for c in install.constraints] == ["requirements/lock.txt"]
    assert "--no-cache-dir" in install.options
    pins = lock_pins()
    provider = tomllib.loads((ROOT / "provider" / "pyproject.toml").read_text())["project"]
    for requirement in install.requirements:
        local = re.match(r"^(/\S+?)(?:\[([\w,]+)\])?$", requirement)
        if local:  # the provider, from the copied source tree, with extras that exist
            assert copied[local[1]] == "provider"
            extras = (local[2] or "").split(",")
            assert set(extras) <= set(provider["optional-dependencies"])
            assert "test" not in extras
            # Every direct dependency it asks for is pinned by the constraints.
            names = list(provider["dependencies"])
            for extra in extras:
                names += provider["optional-dependencies"][extra]
            for dependency in names:
                name = normalize(re.split(r"[<>=!~\[; ]", dependency)[0])
                assert name in pins, f"{dependency} is not pinned in requirements/lock.txt"
        else:  # anything named explicitly carries the lock's exact version
            name, _, version = requirement.partition("==")
            assert version == pins[normalize(name)], requirement
    assert any(r.startswith("apache-airflow==") for r in install.requirements)


def test_nothing_of_the_emulator_in_the_airflow_image() -> None:
    text = DOCKERFILE.read_text()
    assert not any("emulator" in source for source in copies(DOCKERFILE).values())
    for install in pip_installs(DOCKERFILE):
        assert not any("emulator" in r for r in install.requirements)
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (ROOT / "docker-compose.yaml").read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # the build context is only what the Dockerfiles copy


def test_emulator_image_is_pinned_too() -> None:
    (install,) = pip_installs(EMULATOR_DOCKERFILE)
    copied = copies(EMULATOR_DOCKERFILE)
    assert [copied[c] for c in install.constraints] == ["requirements/lock.txt"]
    (requirement,) = install.requirements
    assert requirement == "/opt/kmsflow/emulator[gcs]" and copied["/opt/kmsflow/emulator"] == "emulator"
    assert "gcp-storage-emulator" in lock_pins()
