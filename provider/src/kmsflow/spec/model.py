"""The declarative key spec: which key rings and keys exist, how they rotate, who may use them.

Field-level rules live on the types (ids, durations, roles, members), so pydantic reports each
problem at its exact path. Rules that need the whole document (unique ids, purpose/algorithm
compatibility) run in ``kmsflow.spec.loader`` after the structure parsed. Values mirror Cloud KMS
limits: ids ``[a-zA-Z0-9_-]{1,63}``, rotation at least 24h, destroy-scheduled duration 24h..120d.

Semantics worth knowing:

- ``rotation_period`` defaults to 90 days (the seed's ``7776000s``); ``null`` means no automatic
  rotation. KMS then moves ``next_rotation_time`` itself, so kmsflow never treats that as drift.
- ``destroy_scheduled_duration`` and ``labels`` left out are not managed (KMS default / whatever is
  there); given, they are authoritative (labels) or checked (the duration is immutable).
- IAM is authoritative per listed role: for every role named under ``iam`` (or implied by
  ``producers``/``consumers``, or ``signers``/``verifiers`` of an ``ASYMMETRIC_SIGN`` key, when
  those are given, even empty) the members become exactly those listed; roles the spec does not
  name are left alone.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any

from google.cloud import kms_v1
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from kmsflow.kms.iam import (
    CONSUMER_ROLE,
    DECAPSULATOR_ROLE,
    DECRYPTER_ROLE,
    PRODUCER_ROLE,
    PUBLIC_KEY_VIEWER_ROLE,
    SIGNER_ROLE,
    VIEWER_ROLE,
    member_problem,
    role_problem,
)
from kmsflow.kms.resources import KeySettings
from kmsflow.shown import shown
from kmsflow.spec.durations import format_duration, parse_duration

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
MIN_ROTATION = timedelta(hours=24)
MIN_DESTROY = timedelta(hours=24)
MAX_DESTROY = timedelta(days=120)

PURPOSES = (
    "ENCRYPT_DECRYPT",
    "ASYMMETRIC_SIGN",
    "ASYMMETRIC_DECRYPT",
    "KEY_ENCAPSULATION",
    "RAW_ENCRYPT_DECRYPT",
    "MAC",
)
RECIPIENT_ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    "ASYMMETRIC_DECRYPT": ((PUBLIC_KEY_VIEWER_ROLE, VIEWER_ROLE), DECRYPTER_ROLE),
    "KEY_ENCAPSULATION": ((PUBLIC_KEY_VIEWER_ROLE, VIEWER_ROLE), DECAPSULATOR_ROLE),
}
"""Recipient keys (public-key envelopes): (producer roles, consumer role). A producer encrypts with
the public key: by key name it lists the versions (viewer) to find the current one, the newest
ENABLED version (``kmsflow.kms.asymmetric``), and reads its public key (publicKeyViewer); with a
public key file it needs no role at all. A consumer unwraps with AsymmetricDecrypt/Decapsulate."""
PROTECTION_LEVELS = ("SOFTWARE", "HSM", "EXTERNAL", "EXTERNAL_VPC")
ALGORITHMS: tuple[str, ...] = tuple(
    name
    for name in kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm.__members__
    if not name.endswith("UNSPECIFIED")
)
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")


def _check_id(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError(f"must match [a-zA-Z0-9_-]{{1,63}} (got {shown(value)})")
    return value


def _check_member(value: str) -> str:
    problem = member_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_role(value: str) -> str:
    problem = role_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label key {shown(key)} must match [a-z][a-z0-9_-]{{0,62}}")
        if not _LABEL_VALUE.match(item):
            raise ValueError(f"label {shown(key)} value {shown(item)} must match [a-z0-9_-]{{0,63}}")
    return value


def _check_tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise ValueError(f"must be 1-128 characters [A-Za-z0-9_.@:-] (got {shown(value)})")
    return value


def _check_shared_path(value: str) -> str:
    if "://" in value or not value.startswith("/"):
        raise ValueError(f"must be an absolute local directory (got {shown(value)})")
    return posixpath.normpath(value)


def local_path(place: str) -> str | None:
    """The local path a root or audit log names (``file://`` stripped); None on an object store."""
    if place.startswith("file://"):
        return place[len("file://") :]
    return None if "://" in place else place


def _choice(options: tuple[str, ...], summary: str | None = None) -> AfterValidator:
    def check(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {summary or ', '.join(options)} (got {shown(value)})")
        return value

    return AfterValidator(check)


def _min(limit: timedelta, label: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < limit:
            raise ValueError(f"must be at least {label} (got {format_duration(value)})")
        return value

    return AfterValidator(check)


def _between(low: timedelta, high: timedelta, label: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(f"must be within {label} (got {format_duration(value)})")
        return value

    return AfterValidator(check)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Id = Annotated[str, AfterValidator(_check_id)]
Member = Annotated[str, AfterValidator(_check_member)]
Role = Annotated[str, AfterValidator(_check_role)]
Iam = dict[Role, list[Member]]
SharedPath = Annotated[str, AfterValidator(_check_shared_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Retention(_Model):
    """How long retired key versions stay usable before kmsflow's shred flow may retire them.

    ``retired_version_enabled_for``: a version that is no longer primary stays ENABLED this long
    (so late readers and re-wraps still work). ``soak_period``: after it is disabled, kmsflow waits
    this long (watching for failures) before scheduling destruction.
    """

    retired_version_enabled_for: Duration = timedelta(days=30)
    soak_period: Duration = timedelta(days=7)


class CryptoKeySpec(_Model):
    """One crypto key: its KMS configuration, IAM, and what kmsflow's lifecycle needs to know."""

    id: Id
    purpose: Annotated[str, _choice(PURPOSES)] = "ENCRYPT_DECRYPT"
    algorithm: Annotated[str, _choice(ALGORITHMS, "Cloud KMS algorithm names")] = (
        "GOOGLE_SYMMETRIC_ENCRYPTION"
    )
    protection_level: Annotated[str, _choice(PROTECTION_LEVELS)] = "SOFTWARE"
    rotation_period: Annotated[Duration, _min(MIN_ROTATION, "24h")] | None = timedelta(days=90)
    destroy_scheduled_duration: (
        Annotated[Duration, _between(MIN_DESTROY, MAX_DESTROY, "24h..120d")] | None
    ) = None
    labels: Annotated[dict[str, str], AfterValidator(_check_labels)] | None = None
    iam: Iam = Field(default_factory=dict)
    producers: list[Member] = Field(default_factory=list)
    consumers: list[Member] = Field(default_factory=list)
    signers: list[Member] = Field(default_factory=list)
    """Who signs artifacts with this ``ASYMMETRIC_SIGN`` key: signer and publicKeyViewer roles."""
    verifiers: list[Member] = Field(default_factory=list)
    """Who checks signatures by this key's name: publicKeyViewer (a public key file needs none)."""
    roots: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    tenant: Annotated[str, AfterValidator(_check_tenant)] | None = None
    retention: Retention = Field(default_factory=Retention)

    @model_validator(mode="after")
    def _recipient_rotation(self) -> CryptoKeySpec:
        """Cloud KMS rotates only symmetric keys automatically: a recipient key is rotated by
        adding a version (``kmsflow rotate``, the rotate DAG), which becomes current once ENABLED."""
        explicit = "rotation_period" in self.model_fields_set
        if self.purpose in RECIPIENT_ROLES and self.rotation_period is not None and explicit:
            raise ValueError(
                f"rotation_period: {self.purpose} keys have no automatic rotation in Cloud KMS; "
                "set it to null and rotate with kmsflow (a new version becomes current once ENABLED)"
            )
        return self

    def settings(self) -> KeySettings:
        """The KMS configuration as ``kmsflow.kms.resources`` wants it."""
        recipient = self.purpose in RECIPIENT_ROLES
        return KeySettings(
            purpose=self.purpose,
            algorithm=self.algorithm,
            protection_level=self.protection_level,
            rotation_period=None if recipient else self.rotation_period,
            destroy_scheduled_duration=self.destroy_scheduled_duration,
            labels=self.labels,
        )

    def wanted_iam(self) -> dict[str, set[str]]:
        """The roles this key's spec owns and their exact members (``producers``/``consumers``,
        ``signers``/``verifiers`` folded into the least-privilege roles; named even when empty, so
        removal works). For a recipient key, producers and consumers get :data:`RECIPIENT_ROLES`."""
        wanted = {role: set(members) for role, members in self.iam.items()}
        producer_roles, consumer_role = RECIPIENT_ROLES.get(self.purpose, ((PRODUCER_ROLE,), CONSUMER_ROLE))
        for field, roles, members in (
            ("producers", producer_roles, self.producers),
            ("consumers", (consumer_role,), self.consumers),
            ("signers", (SIGNER_ROLE, PUBLIC_KEY_VIEWER_ROLE), self.signers),
            ("verifiers", (PUBLIC_KEY_VIEWER_ROLE,), self.verifiers),
        ):
            if field in self.model_fields_set or members:
                for role in roles:
                    wanted.setdefault(role, set()).update(members)
        return wanted


class KeyRingSpec(_Model):
    """A key ring (which KMS never deletes) with its own IAM, inherited by its keys."""

    id: Id
    iam: Iam = Field(default_factory=dict)
    keys: list[CryptoKeySpec] = Field(default_factory=list)

    def wanted_iam(self) -> dict[str, set[str]]:
        return {role: set(members) for role, members in self.iam.items()}


class KeySpec(_Model):
    """The whole document: one project and location, its key rings and keys."""

    project: Id
    location: Id
    audit_log: Annotated[str, Field(min_length=1)] | None = None
    """Where kmsflow's audit log lives: a local JSON-lines file, or a ``gs://bucket/prefix``."""
    shared_paths: list[SharedPath] = Field(default_factory=list)
    """Local directories that are the same storage on every machine running kmsflow tasks (one
    volume mounted at the same path on every worker). With a distributed Airflow executor, local
    roots and a local audit log must lie under one of them (``kmsflow.airflow.tasks.common``)."""
    key_rings: list[KeyRingSpec] = Field(default_factory=list)

    @property
    def location_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def key_ring_name(self, ring: KeyRingSpec | str) -> str:
        ring_id = ring if isinstance(ring, str) else ring.id
        return f"{self.location_name}/keyRings/{ring_id}"

    def key_name(self, ring: KeyRingSpec | str, key: CryptoKeySpec | str) -> str:
        key_id = key if isinstance(key, str) else key.id
        return f"{self.key_ring_name(ring)}/cryptoKeys/{key_id}"

    def crypto_keys(self) -> Iterator[tuple[str, CryptoKeySpec]]:
        """Every key as ``(crypto key resource name, its spec)``, in document order."""
        for ring in self.key_rings:
            for key in ring.keys:
                yield self.key_name(ring, key), key

    def select_keys(self, keys: Sequence[str] | None) -> list[tuple[str, CryptoKeySpec]]:
        """The keys named by ``keys`` (ids or full names; every key when None), in document order
        of the request, each once; ``ValueError`` for a key the spec lacks or an ambiguous id."""
        every = list(self.crypto_keys())
        if keys is None:
            return every
        chosen: list[tuple[str, CryptoKeySpec]] = []
        for wanted in keys:
            matches = [(n, k) for n, k in every if wanted in (n, k.id)]
            if not matches:
                known = ", ".join(k.id for _, k in every) or "none"
                raise ValueError(f"key {wanted!r} is not in the spec (its keys: {known})")
            if len(matches) > 1:
                raise ValueError(
                    f"key id {wanted!r} is ambiguous ({', '.join(n for n, _ in matches)}); use the full name"
                )
            if matches[0] not in chosen:
                chosen.append(matches[0])
        return chosen

    def find_key(self, name: str) -> CryptoKeySpec | None:
        """The spec of the crypto key ``name`` (a full resource name), if the spec has it."""
        return next((key for key_name, key in self.crypto_keys() if key_name == name), None)

    def roots(self) -> list[str]:
        """Every key's roots, each once, sorted."""
        return sorted({root for _, key in self.crypto_keys() for root in key.roots})

    def unshared(self, places: Iterable[str]) -> list[str]:
        """The local ``places`` (roots, audit log) that are not under a ``shared_paths`` directory:
        on several machines each would be a different directory. A relative path counts (it is
        relative to each worker's working directory); ``gs://`` and other object stores never do.
        """
        shared = [PurePosixPath(path) for path in self.shared_paths]
        found = []
        for place in places:
            path = local_path(place)
            if path is None:
                continue
            normal = PurePosixPath(posixpath.normpath(path)) if path.startswith("/") else None
            if normal is None or not any(normal.is_relative_to(base) for base in shared):
                found.append(place)
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (durations as ``90d``); ``load_spec`` reads it back unchanged.

        Only fields the author set are written, so "``producers`` given (even empty)" survives.
        """
        return self.model_dump(mode="json", exclude_unset=True)
