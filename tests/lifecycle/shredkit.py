"""Helpers for the shred / erase tests: a YAML spec per test, keys provisioned from it, the clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import kms_v1
from inventory.builders import Made, make_file

from kmsflow.audit import AuditLog
from kmsflow.envelope import Envelope
from kmsflow.kms import resources
from kmsflow.spec import KeySpec, apply, load_spec, plan

DAY = 86400.0


def spec_yaml(ring: str, keys: dict[str, dict[str, Any]]) -> str:
    """A spec with one key ring; ``keys`` maps key id -> extra fields (roots, tenant, retention)."""
    lines = ["project: kmsflow-test", "location: us-central1", "key_rings:", f"  - id: {ring}", "    keys:"]
    for key_id, extra in keys.items():
        lines.append(f"      - id: {key_id}")
        lines.append("        rotation_period: null")
        lines.append("        destroy_scheduled_duration: 24h")
        for name, value in extra.items():
            lines.append(f"        {name}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_spec(tmp_path: Path, ring: str, keys: dict[str, dict[str, Any]]) -> KeySpec:
    path = tmp_path / "spec.yaml"
    path.write_text(spec_yaml(ring, keys))
    return load_spec(str(path))


def provision(client: kms_v1.KeyManagementServiceClient, spec: KeySpec) -> None:
    apply(plan(spec, client), client)


def emu_now(emulator: Any) -> datetime:
    return datetime.fromtimestamp(emulator.admin.now(), UTC)


def state(client: kms_v1.KeyManagementServiceClient, version: str) -> str:
    return str(resources.VersionState(resources.get_version(client, version).state).name)


def version_n(key: str, n: int) -> str:
    return f"{key}/cryptoKeyVersions/{n}"


def unwraps(client: kms_v1.KeyManagementServiceClient, dst: str) -> bool:
    """One KMS Decrypt of the envelope's data key (and the manifest check)."""
    Envelope.open(dst).unlock(client)
    return True


@dataclass
class World:
    """One test's world: emulator, client, spec, audit log, a root and its envelopes."""

    emulator: Any
    client: kms_v1.KeyManagementServiceClient
    spec: KeySpec
    key: str
    root: Path
    src: Path
    audit: AuditLog
    made: list[Made]

    def now(self) -> datetime:
        return emu_now(self.emulator)

    def advance_days(self, days: float) -> None:
        self.emulator.admin.advance(days * DAY)

    def encrypt(self, name: str, size: int = 200) -> Made:
        made = make_file(self.client, self.key, self.src, str(self.root / name), size, seed=len(self.made))
        self.made.append(made)
        return made


def make_world(
    emulator: Any,
    tmp_path: Path,
    ring: str,
    *,
    retention: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> World:
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)
    fields: dict[str, Any] = {
        "roots": [str(root)],
        "retention": retention or {"retired_version_enabled_for": "2d", "soak_period": "3d"},
        **(extra or {}),
    }
    spec = write_spec(tmp_path, ring, {"data": fields})
    client = emulator.client()
    provision(client, spec)
    key = next(name for name, _ in spec.crypto_keys())
    audit = AuditLog(str(tmp_path / "audit" / "audit.jsonl"), actor="serviceAccount:shred@test.iam")
    return World(emulator, client, spec, key, root, tmp_path / "src", audit, [])
