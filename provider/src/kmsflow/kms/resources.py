"""Idempotent, typed operations on key rings, crypto keys and key versions.

Every function here is safe to re-run: "ensure" reads first and only mutates what differs, creation
races (ALREADY_EXISTS) resolve to reading the winner, and version state changes that are already in
effect return without a KMS write. Errors come out as ``kmsflow.kms.errors`` types, never raw
``google.api_core`` exceptions.

Invariant 3 (the primary version is never disabled or destroyed by kmsflow) is enforced here:
``disable_version`` and ``destroy_version`` refuse with ``KmsGuardError`` *before* any KMS write.
The check reads the key's primary and then acts, so a concurrent primary change in between is not
detected; kmsflow itself only moves the primary through ``rotate``/``set_primary``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import kms_v1
from google.protobuf import field_mask_pb2

from kmsflow.clock import utc_now
from kmsflow.kms.crypto import default_retry, key_of
from kmsflow.kms.errors import (
    FieldConflict,
    ImmutableFieldError,
    KeyVersionUnavailableError,
    KmsGuardError,
    KmsNotFoundError,
    translate,
)

KeyRing = kms_v1.KeyRing
CryptoKey = kms_v1.CryptoKey
CryptoKeyVersion = kms_v1.CryptoKeyVersion
VersionState = kms_v1.CryptoKeyVersion.CryptoKeyVersionState

IMMUTABLE_FIELDS = ("purpose", "protection_level", "destroy_scheduled_duration")
"""Fields KMS fixes at creation; a difference is an ``ImmutableFieldError``, never an update."""


# ----------------------------------------------------------------------------- wanted state


@dataclass(frozen=True)
class KeySettings:
    """The wanted configuration of a crypto key, in plain Python values.

    ``rotation_period`` None means "no automatic rotation" (an existing schedule is cleared).
    ``next_rotation_time`` None means "let KMS keep its own schedule": it is only set when a
    schedule starts (now + period). ``destroy_scheduled_duration`` and ``labels`` None mean "not
    managed": whatever KMS has is accepted.
    """

    purpose: str = "ENCRYPT_DECRYPT"
    algorithm: str = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level: str = "SOFTWARE"
    rotation_period: timedelta | None = None
    next_rotation_time: datetime | None = None
    destroy_scheduled_duration: timedelta | None = None
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class FieldChange:
    """One mutable field to update: its update-mask path, live value and wanted value."""

    field: str
    current: object
    wanted: object


@dataclass(frozen=True)
class KeyDiff:
    """What separates a live key from its ``KeySettings``."""

    updates: tuple[FieldChange, ...] = ()
    conflicts: tuple[FieldConflict, ...] = ()
    next_rotation_time: datetime | None = field(default=None, compare=False)

    @property
    def empty(self) -> bool:
        return not self.updates and not self.conflicts


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return utc_now()


def _has(message: object, name: str) -> bool:
    return bool(type(message).pb(message).HasField(name))  # type: ignore[attr-defined]


def current_settings(key: CryptoKey) -> KeySettings:
    """The live key's configuration as ``KeySettings`` (for diffs and plan display)."""
    live: Any = key  # proto-plus marshals Duration/Timestamp to timedelta/datetime at runtime
    return KeySettings(
        purpose=key.purpose.name,
        algorithm=key.version_template.algorithm.name,
        protection_level=key.version_template.protection_level.name,
        rotation_period=live.rotation_period if _has(key, "rotation_period") else None,
        next_rotation_time=(_utc(live.next_rotation_time) if _has(key, "next_rotation_time") else None),
        destroy_scheduled_duration=(
            live.destroy_scheduled_duration if _has(key, "destroy_scheduled_duration") else None
        ),
        labels=dict(key.labels),
    )


def diff_crypto_key(key: CryptoKey, wanted: KeySettings, *, now: datetime | None = None) -> KeyDiff:
    """Compare a live key with ``wanted``: mutable updates and immutable conflicts.

    ``next_rotation_time`` drift is ignored unless it was asked for explicitly, because KMS moves it
    forward itself at every automatic rotation. When a schedule starts (the key had no period) the
    diff carries ``now + period`` as the first rotation time, since KMS requires one.
    """
    live = current_settings(key)
    conflicts: list[FieldConflict] = []
    if live.purpose != wanted.purpose:
        conflicts.append(FieldConflict("purpose", live.purpose, wanted.purpose))
    if live.protection_level != wanted.protection_level:
        conflicts.append(FieldConflict("protection_level", live.protection_level, wanted.protection_level))
    if (
        wanted.destroy_scheduled_duration is not None
        and live.destroy_scheduled_duration != wanted.destroy_scheduled_duration
    ):
        conflicts.append(
            FieldConflict(
                "destroy_scheduled_duration",
                live.destroy_scheduled_duration,
                wanted.destroy_scheduled_duration,
            )
        )
    updates: list[FieldChange] = []
    next_time: datetime | None = None
    if live.rotation_period != wanted.rotation_period:
        updates.append(FieldChange("rotation_period", live.rotation_period, wanted.rotation_period))
    if wanted.rotation_period is None:
        if live.next_rotation_time is not None:
            updates.append(FieldChange("next_rotation_time", live.next_rotation_time, None))
    elif wanted.next_rotation_time is not None:
        asked = _utc(wanted.next_rotation_time).replace(microsecond=0)
        have = live.next_rotation_time.replace(microsecond=0) if live.next_rotation_time else None
        if asked != have:
            next_time = asked
            updates.append(FieldChange("next_rotation_time", live.next_rotation_time, asked))
    elif live.next_rotation_time is None:
        next_time = (now or _now()).replace(microsecond=0) + wanted.rotation_period
        updates.append(FieldChange("next_rotation_time", None, next_time))
    if wanted.labels is not None and dict(live.labels or {}) != dict(wanted.labels):
        updates.append(FieldChange("labels", dict(live.labels or {}), dict(wanted.labels)))
    if live.algorithm != wanted.algorithm:
        updates.append(FieldChange("version_template.algorithm", live.algorithm, wanted.algorithm))
    return KeyDiff(tuple(updates), tuple(conflicts), next_time)


# ----------------------------------------------------------------------------- readers


def get_key_ring(client: kms_v1.KeyManagementServiceClient, name: str) -> KeyRing:
    """The key ring ``name``; ``KmsNotFoundError`` if it does not exist."""
    try:
        return client.get_key_ring(request={"name": name}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"get key ring {name}") from exc


def get_key(client: kms_v1.KeyManagementServiceClient, name: str) -> CryptoKey:
    """The crypto key ``name`` (with its primary version); ``KmsNotFoundError`` if absent."""
    try:
        return client.get_crypto_key(request={"name": name}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"get crypto key {name}") from exc


def get_version(client: kms_v1.KeyManagementServiceClient, name: str) -> CryptoKeyVersion:
    """The crypto key version ``name``."""
    try:
        return client.get_crypto_key_version(request={"name": name}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"get key version {name}") from exc


def _member(enum: Any, name: str) -> Any:
    """``enum[name]`` for proto-plus enums (which mypy cannot index)."""
    return enum.__members__[name]


def state_name(state: VersionState | int | str) -> str:
    """A version state's name (``ENABLED``, ``DESTROY_SCHEDULED``...), from the enum, its number or
    a name in any case."""
    if isinstance(state, str):
        return str(_member(VersionState, state.upper()).name)
    return str(VersionState(state).name)


def list_versions(
    client: kms_v1.KeyManagementServiceClient,
    key_name: str,
    states: Iterable[VersionState | int | str] | None = None,
    *,
    page_size: int = 100,
) -> list[CryptoKeyVersion]:
    """Every version of ``key_name`` (oldest first), optionally only those in ``states``.

    The state filter runs server-side (``state=A OR state=B``) and every page is read, so the answer
    is complete however many versions a long-rotating key has accumulated.
    """
    request: dict[str, object] = {"parent": key_name, "page_size": page_size}
    if states is not None:
        names = sorted({state_name(s) for s in states})
        if not names:
            return []
        request["filter"] = " OR ".join(f"state={n}" for n in names)
    try:
        pager = client.list_crypto_key_versions(request=request, retry=default_retry())
        return list(pager)
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"list versions of {key_name}") from exc


# ----------------------------------------------------------------------------- ensure


def ensure_key_ring(
    client: kms_v1.KeyManagementServiceClient, location: str, key_ring_id: str
) -> tuple[KeyRing, bool]:
    """The key ring ``location/keyRings/key_ring_id`` and whether this call created it.

    Reads first (callers with only ``keyRings.get`` succeed when it exists); a creation race
    (ALREADY_EXISTS) is resolved by reading the ring the other writer made.
    """
    name = f"{location}/keyRings/{key_ring_id}"
    try:
        return get_key_ring(client, name), False
    except KmsNotFoundError:
        pass
    try:
        ring = client.create_key_ring(
            request={"parent": location, "key_ring_id": key_ring_id, "key_ring": {}},
            retry=default_retry(),
        )
        return ring, True
    except gexc.AlreadyExists:
        return get_key_ring(client, name), False
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"create key ring {name}") from exc


def _key_message(settings: KeySettings, now: datetime) -> CryptoKey:
    key: Any = CryptoKey(
        purpose=_member(CryptoKey.CryptoKeyPurpose, settings.purpose),
        version_template=kms_v1.CryptoKeyVersionTemplate(
            algorithm=_member(CryptoKeyVersion.CryptoKeyVersionAlgorithm, settings.algorithm),
            protection_level=_member(kms_v1.ProtectionLevel, settings.protection_level),
        ),
        labels=dict(settings.labels or {}),
    )
    if settings.rotation_period is not None:
        key.rotation_period = settings.rotation_period
        key.next_rotation_time = (
            _utc(settings.next_rotation_time)
            if settings.next_rotation_time is not None
            else now.replace(microsecond=0) + settings.rotation_period
        )
    if settings.destroy_scheduled_duration is not None:
        key.destroy_scheduled_duration = settings.destroy_scheduled_duration
    return key  # type: ignore[no-any-return]


def _update_key(
    client: kms_v1.KeyManagementServiceClient, name: str, settings: KeySettings, diff: KeyDiff
) -> CryptoKey:
    patch: Any = CryptoKey(name=name)
    paths: list[str] = []
    for change in diff.updates:
        paths.append(change.field)
        if change.field == "rotation_period" and settings.rotation_period is not None:
            patch.rotation_period = settings.rotation_period
        elif change.field == "next_rotation_time" and diff.next_rotation_time is not None:
            patch.next_rotation_time = diff.next_rotation_time
        elif change.field == "labels":
            patch.labels = dict(settings.labels or {})
        elif change.field == "version_template.algorithm":
            patch.version_template.algorithm = _member(
                CryptoKeyVersion.CryptoKeyVersionAlgorithm, settings.algorithm
            )
    try:
        return client.update_crypto_key(
            request={"crypto_key": patch, "update_mask": field_mask_pb2.FieldMask(paths=paths)},
            retry=default_retry(),
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"update crypto key {name} ({', '.join(paths)})") from exc


def ensure_crypto_key(
    client: kms_v1.KeyManagementServiceClient,
    key_ring: str | KeyRing,
    key_id: str,
    *,
    purpose: str = "ENCRYPT_DECRYPT",
    algorithm: str = "GOOGLE_SYMMETRIC_ENCRYPTION",
    protection_level: str = "SOFTWARE",
    rotation_period: timedelta | None = None,
    next_rotation_time: datetime | None = None,
    destroy_scheduled_duration: timedelta | None = None,
    labels: Mapping[str, str] | None = None,
) -> tuple[CryptoKey, list[str]]:
    """Make the crypto key exist as described; returns it and what changed.

    The list is ``["created"]`` for a new key, the update-mask paths for an updated one, and empty
    when the key already matched (then nothing was written). A difference in an immutable field
    (purpose, protection level, destroy-scheduled duration) raises ``ImmutableFieldError`` naming
    each field's live and wanted values, before any write. See ``KeySettings`` for what None means.
    """
    ring_name = key_ring if isinstance(key_ring, str) else key_ring.name
    name = f"{ring_name}/cryptoKeys/{key_id}"
    settings = KeySettings(
        purpose=purpose,
        algorithm=algorithm,
        protection_level=protection_level,
        rotation_period=rotation_period,
        next_rotation_time=next_rotation_time,
        destroy_scheduled_duration=destroy_scheduled_duration,
        labels=labels,
    )
    _check_names(settings)
    try:
        existing: CryptoKey | None = get_key(client, name)
    except KmsNotFoundError:
        existing = None
    if existing is None:
        try:
            created = client.create_crypto_key(
                request={
                    "parent": ring_name,
                    "crypto_key_id": key_id,
                    "crypto_key": _key_message(settings, _now()),
                },
                retry=default_retry(),
            )
            return created, ["created"]
        except gexc.AlreadyExists:
            existing = get_key(client, name)
        except gexc.GoogleAPIError as exc:
            raise translate(exc, f"create crypto key {name}") from exc
    diff = diff_crypto_key(existing, settings)
    if diff.conflicts:
        raise ImmutableFieldError(name, diff.conflicts)
    if not diff.updates:
        return existing, []
    updated = _update_key(client, name, settings, diff)
    return updated, [c.field for c in diff.updates]


def _check_names(settings: KeySettings) -> None:
    """Fail early, with the allowed values, on an enum name KMS would not know."""
    for value, enum, what in (
        (settings.purpose, CryptoKey.CryptoKeyPurpose, "purpose"),
        (settings.algorithm, CryptoKeyVersion.CryptoKeyVersionAlgorithm, "algorithm"),
        (settings.protection_level, kms_v1.ProtectionLevel, "protection_level"),
    ):
        if value not in enum.__members__:
            known = ", ".join(n for n in enum.__members__ if not n.endswith("UNSPECIFIED"))
            raise ValueError(f"unknown {what} {value!r} (known: {known})")


# ----------------------------------------------------------------------------- versions


def _version_id(name: str) -> str:
    return name.rsplit("/", 1)[1]


def rotate(client: kms_v1.KeyManagementServiceClient, key_name: str) -> CryptoKeyVersion:
    """Create a new ENABLED version of ``key_name`` and make it the primary; returns it.

    Not idempotent by nature (each call is a new version); older versions stay ENABLED, so every
    artifact wrapped under them still decrypts until it is re-wrapped.
    """
    try:
        version = client.create_crypto_key_version(
            request={"parent": key_name, "crypto_key_version": {}}, retry=default_retry()
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"create a version of {key_name}") from exc
    return set_primary(client, key_name, _version_id(version.name))


def set_primary(
    client: kms_v1.KeyManagementServiceClient, key_name: str, version_id: str | int
) -> CryptoKeyVersion:
    """Make version ``version_id`` (must be ENABLED) the primary of ``key_name``; returns it."""
    try:
        key = client.update_crypto_key_primary_version(
            request={"name": key_name, "crypto_key_version_id": str(version_id)},
            retry=default_retry(),
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"make version {version_id} primary on {key_name}") from exc
    return key.primary


def _set_state(client: kms_v1.KeyManagementServiceClient, version_name: str, state: int) -> CryptoKeyVersion:
    try:
        return client.update_crypto_key_version(
            request={
                "crypto_key_version": {"name": version_name, "state": state},
                "update_mask": field_mask_pb2.FieldMask(paths=["state"]),
            },
            retry=default_retry(),
        )
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"set {version_name} to {state_name(state)}") from exc


def _refuse_if_primary(client: kms_v1.KeyManagementServiceClient, version_name: str, action: str) -> None:
    key = get_key(client, key_of(version_name))
    if key.primary.name == version_name:
        raise KmsGuardError(
            f"refusing to {action} {version_name}: it is the primary version of "
            f"{key.name}, so new encryptions use it. Rotate (or set another primary) first."
        )
    from kmsflow.kms import asymmetric  # it builds on this module

    if key.purpose in asymmetric.RECIPIENT_PURPOSES:
        current = asymmetric.newest_enabled(list_versions(client, key.name, states=[VersionState.ENABLED]))
        if current is not None and current.name == version_name:
            raise KmsGuardError(
                f"refusing to {action} {version_name}: it is the current version of the recipient key "
                f"{key.name} (its newest ENABLED one), so producers wrap for it. Rotate first."
            )


def enable_version(client: kms_v1.KeyManagementServiceClient, version_name: str) -> CryptoKeyVersion:
    """Enable a DISABLED version (no write if already ENABLED)."""
    version = get_version(client, version_name)
    if version.state == VersionState.ENABLED:
        return version
    return _set_state(client, version_name, VersionState.ENABLED)


def disable_version(client: kms_v1.KeyManagementServiceClient, version_name: str) -> CryptoKeyVersion:
    """Disable a version; refuses (``KmsGuardError``, nothing written) if it is the primary."""
    _refuse_if_primary(client, version_name, "disable")
    version = get_version(client, version_name)
    if version.state == VersionState.DISABLED:
        return version
    return _set_state(client, version_name, VersionState.DISABLED)


def destroy_version(client: kms_v1.KeyManagementServiceClient, version_name: str) -> CryptoKeyVersion:
    """Schedule a version for destruction; refuses (``KmsGuardError``) if it is the primary.

    Idempotent: a version already DESTROY_SCHEDULED or DESTROYED is returned as is. KMS keeps the
    material until ``destroy_time`` (the key's destroy-scheduled duration), so ``restore_version``
    can still undo this. Proving nothing references the version is the caller's job (lifecycle).
    """
    _refuse_if_primary(client, version_name, "destroy")
    version = get_version(client, version_name)
    if version.state in (VersionState.DESTROY_SCHEDULED, VersionState.DESTROYED):
        return version
    try:
        return client.destroy_crypto_key_version(request={"name": version_name}, retry=default_retry())
    except gexc.GoogleAPIError as exc:
        raise translate(exc, f"destroy {version_name}") from exc


def restore_version(
    client: kms_v1.KeyManagementServiceClient, version_name: str, *, enable: bool = False
) -> CryptoKeyVersion:
    """Cancel a scheduled destruction: the version becomes DISABLED (ENABLED with ``enable=True``).

    A version that is not scheduled for destruction is left as is (enabled if asked). A DESTROYED
    version cannot come back: ``KeyVersionUnavailableError``.
    """
    version = get_version(client, version_name)
    if version.state == VersionState.DESTROYED:
        raise KeyVersionUnavailableError(
            f"restore {version_name}: it is DESTROYED; its key material is gone for good"
        )
    if version.state == VersionState.DESTROY_SCHEDULED:
        try:
            version = client.restore_crypto_key_version(request={"name": version_name}, retry=default_retry())
        except gexc.GoogleAPIError as exc:
            raise translate(exc, f"restore {version_name}") from exc
    if enable and version.state == VersionState.DISABLED:
        version = _set_state(client, version_name, VersionState.ENABLED)
    return version


__all__ = [
    "IMMUTABLE_FIELDS",
    "CryptoKey",
    "CryptoKeyVersion",
    "FieldChange",
    "KeyDiff",
    "KeyRing",
    "KeySettings",
    "VersionState",
    "current_settings",
    "destroy_version",
    "diff_crypto_key",
    "disable_version",
    "enable_version",
    "ensure_crypto_key",
    "ensure_key_ring",
    "get_key",
    "get_key_ring",
    "get_version",
    "list_versions",
    "restore_version",
    "rotate",
    "set_primary",
    "state_name",
]
