"""The emulator's resources, their JSON form, and atomic persistence to ``--data-dir``.

Plain dataclasses rather than protobufs: the service layer owns the wire form, this module owns
what is remembered. Key material lives only here (base64 in the state file) and is never logged:
the AES key of symmetric versions, PKCS#8 DER private keys (RSA, EC, Ed25519), FIPS 203/204 seeds
(ML-KEM, ML-DSA) and HMAC keys, as ``kmsflow_emulator.algorithms`` generates them.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
DEFAULT_DESTROY_SCHEDULED_DURATION = 30 * 24 * 3600.0


@dataclass
class Binding:
    role: str
    members: list[str]


@dataclass
class Policy:
    """An IAM policy; ``etag`` changes on every write so stale read-modify-writes are refused."""

    bindings: list[Binding] = field(default_factory=list)
    etag: str = ""
    version: int = 1


@dataclass
class KeyRing:
    name: str
    create_time: float
    policy: Policy = field(default_factory=Policy)


@dataclass
class Version:
    id: int
    state: int
    algorithm: int
    protection_level: int
    create_time: float
    generate_time: float | None
    material: bytes | None
    destroy_time: float | None = None
    destroy_event_time: float | None = None
    # PENDING_GENERATION versions (asymmetric and post-quantum keys) become ENABLED at this time.
    pending_until: float | None = None
    # Imported versions: the ImportJob used, when, and SHA-256 of the material, so a re-import into
    # this version (once DESTROYED or IMPORT_FAILED) can be refused unless the material is the same.
    import_job: str | None = None
    import_time: float | None = None
    import_failure_reason: str | None = None
    import_fingerprint: str | None = None
    # HSM_SINGLE_TENANT versions that may be exported under (and imported from) a trusted
    # AES_WRAPPING key; set at creation or trusted import only, as in Cloud KMS.
    trusted_wrapping_enabled: bool = False


@dataclass
class CryptoKey:
    name: str
    create_time: float
    purpose: int
    algorithm: int
    protection_level: int
    destroy_scheduled_duration: float = DEFAULT_DESTROY_SCHEDULED_DURATION
    rotation_period: float | None = None
    next_rotation_time: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    primary_id: int | None = None
    import_only: bool = False
    # The single-tenant HSM instance of an HSM_SINGLE_TENANT key (its name; the emulator keeps no
    # instances of its own).
    crypto_key_backend: str = ""
    next_version_id: int = 1
    versions: dict[int, Version] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)


@dataclass
class ImportJob:
    """An ImportJob: its RSA wrapping key (PKCS#8 DER, erased once expired) and lifetime."""

    name: str
    import_method: int
    protection_level: int
    create_time: float
    generate_time: float
    expire_time: float
    material: bytes | None


@dataclass
class RetiredResource:
    """The record a deleted CryptoKey leaves; its name can never be reused."""

    name: str
    original_resource: str
    resource_type: str
    delete_time: float


@dataclass
class State:
    """Everything the emulator knows; ``clock_offset`` persists so restarts keep emulated time."""

    key_rings: dict[str, KeyRing] = field(default_factory=dict)
    crypto_keys: dict[str, CryptoKey] = field(default_factory=dict)
    clock_offset: float = 0.0
    import_jobs: dict[str, ImportJob] = field(default_factory=dict)
    retired_resources: dict[str, RetiredResource] = field(default_factory=dict)
    # Long-running operations (all complete when returned): name → serialized google.longrunning
    # Operation, so GetOperation answers across restarts.
    operations: dict[str, bytes] = field(default_factory=dict)


def _policy_from(raw: dict[str, Any]) -> Policy:
    return Policy(
        bindings=[Binding(**b) for b in raw["bindings"]],
        etag=raw["etag"],
        version=raw["version"],
    )


def _version_from(raw: dict[str, Any]) -> Version:
    material = raw.pop("material")
    return Version(**raw, material=base64.b64decode(material) if material else None)


def to_json(state: State) -> str:
    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    return json.dumps(encode(asdict(state)), sort_keys=True)


def from_json(text: str) -> State:
    raw = json.loads(text)
    key_rings = {
        name: KeyRing(name=kr["name"], create_time=kr["create_time"], policy=_policy_from(kr["policy"]))
        for name, kr in raw["key_rings"].items()
    }
    crypto_keys = {}
    for name, ck in raw["crypto_keys"].items():
        versions = {int(vid): _version_from(v) for vid, v in ck.pop("versions").items()}
        policy = _policy_from(ck.pop("policy"))
        crypto_keys[name] = CryptoKey(**ck, versions=versions, policy=policy)
    import_jobs = {}
    for name, job in raw.get("import_jobs", {}).items():
        material = job.pop("material")
        import_jobs[name] = ImportJob(**job, material=base64.b64decode(material) if material else None)
    return State(
        key_rings=key_rings,
        crypto_keys=crypto_keys,
        clock_offset=raw["clock_offset"],
        import_jobs=import_jobs,
        retired_resources={
            name: RetiredResource(**r) for name, r in raw.get("retired_resources", {}).items()
        },
        operations={name: base64.b64decode(op) for name, op in raw.get("operations", {}).items()},
    )


def load(data_dir: Path) -> State:
    path = data_dir / STATE_FILE
    if not path.exists():
        return State()
    return from_json(path.read_text())


def save(state: State, data_dir: Path) -> None:
    """Write the state atomically: a crash at any point leaves the previous file intact."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=data_dir)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(to_json(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, data_dir / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
