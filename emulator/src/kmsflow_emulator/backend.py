"""The emulator's Cloud KMS behaviour: resources, schedules, crypto, IAM checks.

Each public method takes the raw protobuf request of the RPC it serves and the caller's principal,
and returns the raw protobuf response, raising ``EmulatorError`` with the status code Cloud KMS would
give. All state is guarded by one lock; AES-GCM work happens outside it.

Schedules run lazily: before serving any call, versions whose ``destroy_time`` has passed become
DESTROYED (their material erased) and keys whose ``next_rotation_time`` has passed rotate, once per
elapsed rotation period, exactly as if Cloud KMS had done it on time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.cloud.kms_v1.types import resources, service
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, empty_pb2, timestamp_pb2

from kmsflow_emulator import algorithms, ciphertext, iam, names
from kmsflow_emulator import state as st
from kmsflow_emulator.clock import Clock
from kmsflow_emulator.crc import crc32c
from kmsflow_emulator.errors import EmulatorError, invalid, not_found, precondition
from kmsflow_emulator.filters import compile_filter

KeyRingPb = resources.KeyRing.pb()
CryptoKeyPb = resources.CryptoKey.pb()
VersionPb = resources.CryptoKeyVersion.pb()
PublicKeyPb = resources.PublicKey.pb()

State = resources.CryptoKeyVersion.CryptoKeyVersionState
Purpose = resources.CryptoKey.CryptoKeyPurpose
Algorithm = resources.CryptoKeyVersion.CryptoKeyVersionAlgorithm
Protection = resources.ProtectionLevel
KeyFormat = resources.PublicKey.PublicKeyFormat
ImportJobPb = resources.ImportJob.pb()
JobState = resources.ImportJob.ImportJobState
ImportMethod = resources.ImportJob.ImportMethod
IMPORT_JOB_LIFETIME = 3 * 24 * 3600.0

MAX_PAYLOAD = 64 * 1024
MIN_ROTATION_PERIOD = 24 * 3600.0
MIN_DESTROY_DURATION = 24 * 3600.0
MAX_DESTROY_DURATION = 120 * 24 * 3600.0
_MAX_PAGE_SIZE = 1000
_SERVED_PURPOSES = (
    Purpose.ENCRYPT_DECRYPT,
    Purpose.ASYMMETRIC_SIGN,
    Purpose.ASYMMETRIC_DECRYPT,
    Purpose.MAC,
    Purpose.KEY_ENCAPSULATION,
    Purpose.RAW_ENCRYPT_DECRYPT,
    Purpose.AES_WRAPPING,
)
_SINGLE_TENANT_HSM = re.compile(r"^projects/[^/]+/locations/[^/]+/singleTenantHsmInstances/[^/]+$")
MAX_HSM_RAW_PAYLOAD = 8 * 1024
# The locations ListLocations always offers (any well-formed location id is accepted for key rings;
# those in use are listed too).
DEFAULT_LOCATIONS = (
    "global",
    "us",
    "europe",
    "asia",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-west1",
    "europe-west1",
    "europe-west3",
    "europe-west4",
    "asia-east1",
    "asia-northeast1",
    "asia-southeast1",
)
_MAX_CATCH_UP_ROTATIONS = 10_000
_UPDATABLE_KEY_FIELDS = {"rotation_period", "next_rotation_time", "labels", "version_template"}

T = TypeVar("T")


def _ts(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def _seconds(message: timestamp_pb2.Timestamp | duration_pb2.Duration) -> float:
    return message.seconds + message.nanos / 1e9


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _state_name(value: int) -> str:
    return str(State(value).name)


def new_material(algorithm: int) -> bytes:
    """Fresh private material for a version of ``algorithm`` (may take a second for RSA-4096)."""
    spec = algorithms.spec_for(algorithm)
    return ciphertext.new_material() if spec is None else algorithms.generate(spec)


def _check_algorithm(purpose: int, algorithm: int) -> None:
    """INVALID_ARGUMENT unless the emulator serves ``algorithm`` under ``purpose``."""
    if purpose == Purpose.ENCRYPT_DECRYPT:
        allowed = [Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION]
    else:
        allowed = algorithms.ALGORITHMS_BY_PURPOSE.get(purpose, [])
    if algorithm not in allowed:
        raise invalid(
            f"Algorithm {Algorithm(algorithm).name} is not compatible with purpose "
            f"{Purpose(purpose).name} (the kmsflow emulator serves: "
            f"{', '.join(Algorithm(a).name for a in allowed)})."
        )


def _hsm_trusted(key: st.CryptoKey) -> bool:
    """A key wrapping key is trusted when it lives in a single-tenant HSM: the emulator's stand-in
    for the instance's quorum-approved trust (Cloud KMS: AES_WRAPPING at HSM_SINGLE_TENANT)."""
    return key.purpose == Purpose.AES_WRAPPING and key.protection_level == Protection.HSM_SINGLE_TENANT


def _check_trusted_wrapping(key: st.CryptoKey) -> None:
    """``trusted_wrapping_enabled`` is valid for HSM_SINGLE_TENANT keys of any purpose but
    ENCRYPT_DECRYPT (CryptoKeyVersion reference)."""
    if key.protection_level != Protection.HSM_SINGLE_TENANT or key.purpose == Purpose.ENCRYPT_DECRYPT:
        raise invalid(
            "trusted_wrapping_enabled is only valid for HSM_SINGLE_TENANT keys whose purpose is not "
            "ENCRYPT_DECRYPT."
        )


class Backend:
    """Cloud KMS semantics over ``kmsflow_emulator.state``; see the module docstring."""

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        enforce_iam: bool = False,
        owner: str | None = None,
        generation_delay: float = 0.0,
    ) -> None:
        if generation_delay < 0:
            raise ValueError("generation_delay must not be negative")
        self._lock = threading.RLock()
        # Emulated seconds an asymmetric or post-quantum version stays PENDING_GENERATION.
        self.generation_delay = generation_delay
        self._data_dir = data_dir
        self._state = st.load(data_dir) if data_dir else st.State()
        self.clock = Clock(self._state.clock_offset)
        self.enforce_iam = enforce_iam
        self.owner = owner
        self._next_due: float | None = None
        self._reschedule()

    # ----------------------------------------------------------------- housekeeping

    def _commit(self) -> None:
        """Persist after a change (under the lock) and recompute when the next schedule is due."""
        self._reschedule()
        if self._data_dir is not None:
            self._state.clock_offset = self.clock.offset
            st.save(self._state, self._data_dir)

    def _reschedule(self) -> None:
        due: list[float] = []
        for key in self._state.crypto_keys.values():
            if key.next_rotation_time is not None and key.rotation_period:
                due.append(key.next_rotation_time)
            due.extend(
                v.destroy_time
                for v in key.versions.values()
                if v.state == State.DESTROY_SCHEDULED and v.destroy_time is not None
            )
            due.extend(
                v.pending_until
                for v in key.versions.values()
                if v.state == State.PENDING_GENERATION and v.pending_until is not None
            )
        due.extend(j.expire_time for j in self._state.import_jobs.values() if j.material is not None)
        self._next_due = min(due) if due else None

    def _tick(self) -> float:
        """Run every schedule that is due; returns the current emulated time. Caller holds the lock."""
        now = self.clock.now()
        if self._next_due is None or now < self._next_due:
            return now
        for key in self._state.crypto_keys.values():
            for version in key.versions.values():
                if (
                    version.state == State.PENDING_GENERATION
                    and version.pending_until is not None
                    and version.pending_until <= now
                ):
                    version.state = State.ENABLED
                    version.generate_time = version.pending_until
                    version.pending_until = None
                if (
                    version.state == State.DESTROY_SCHEDULED
                    and version.destroy_time is not None
                    and version.destroy_time <= now
                ):
                    version.state = State.DESTROYED
                    version.destroy_event_time = version.destroy_time
                    version.material = None
            rotations = 0
            while (
                key.rotation_period
                and key.next_rotation_time is not None
                and key.next_rotation_time <= now
                and rotations < _MAX_CATCH_UP_ROTATIONS
            ):
                new = self._new_version(key, key.next_rotation_time, State.ENABLED)
                key.primary_id = new.id
                key.next_rotation_time += key.rotation_period
                rotations += 1
        for job in self._state.import_jobs.values():
            if job.material is not None and job.expire_time <= now:
                job.material = None  # an EXPIRED job's wrapping key is gone
        self._commit()
        return now

    def advance_clock(self, seconds: float) -> float:
        with self._lock:
            self.clock.advance(seconds)
            now = self._tick()
            self._commit()
            return now

    def now(self) -> float:
        with self._lock:
            return self._tick()

    # ----------------------------------------------------------------- IAM

    def _bindings_for(self, resource: str) -> list[tuple[str, list[str]]]:
        bindings: list[tuple[str, list[str]]] = []
        kind = names.kind_of(resource)
        key_name = None
        if kind == "cryptoKeyVersion":
            key_name = names.version(resource).parent
        elif kind == "cryptoKey":
            key_name = resource
        ring_name = names.crypto_key(key_name).parent if key_name else resource
        ring = self._state.key_rings.get(ring_name)
        if ring is not None:
            bindings += [(b.role, b.members) for b in ring.policy.bindings]
        key = self._state.crypto_keys.get(key_name) if key_name else None
        if key is not None:
            bindings += [(b.role, b.members) for b in key.policy.bindings]
        return bindings

    def _permissions(self, principal: str | None, resource: str | None) -> set[str]:
        if not self.enforce_iam or (principal is not None and principal == self.owner):
            return set(iam.ALL_PERMISSIONS)
        if resource is None:
            return set()
        return iam.granted(principal, self._bindings_for(resource))

    def _require(self, principal: str | None, permission: str, resource: str | None) -> None:
        """Refuse the call unless ``principal`` holds ``permission`` on ``resource``.

        ``resource`` None means a location-level action, which only the owner may take.
        Checked before existence, so a caller without access cannot probe for names.
        """
        if not self.enforce_iam:
            return
        if principal is None:
            raise EmulatorError(
                grpc.StatusCode.PERMISSION_DENIED,
                "The caller has no identity: send gRPC metadata x-kmsflow-principal "
                "(e.g. serviceAccount:pipeline@proj.iam.gserviceaccount.com).",
            )
        if permission not in self._permissions(principal, resource):
            raise EmulatorError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission '{permission}' denied on resource '{resource or 'location'}' for "
                f"{principal} (or it may not exist).",
            )

    # ----------------------------------------------------------------- lookups

    def _key_ring(self, name: str) -> st.KeyRing:
        ring = self._state.key_rings.get(name)
        if ring is None:
            raise not_found(name)
        return ring

    def _key(self, name: str) -> st.CryptoKey:
        key = self._state.crypto_keys.get(name)
        if key is None:
            raise not_found(name)
        return key

    def _version(self, name: str) -> tuple[st.CryptoKey, st.Version]:
        parsed = names.version(name)
        key = self._key(parsed.parent)
        version = key.versions.get(int(parsed.id))
        if version is None:
            raise not_found(name)
        return key, version

    def _new_version(
        self, key: st.CryptoKey, when: float, state: int, material: bytes | None = None
    ) -> st.Version:
        """Add a version to ``key``; ``material`` is pre-generated (outside the lock) for keys whose
        generation is slow. Asymmetric and post-quantum versions start PENDING_GENERATION and become
        ENABLED ``generation_delay`` emulated seconds later (on the next call, by default)."""
        spec = algorithms.spec_for(key.algorithm)
        pending = spec is not None and spec.asymmetric and state == State.ENABLED
        version = st.Version(
            id=key.next_version_id,
            state=State.PENDING_GENERATION if pending else state,
            algorithm=key.algorithm,
            protection_level=key.protection_level,
            create_time=when,
            generate_time=None if pending else when,
            material=material if material is not None else new_material(key.algorithm),
            pending_until=when + self.generation_delay if pending else None,
        )
        key.versions[version.id] = version
        key.next_version_id += 1
        return version

    # ----------------------------------------------------------------- wire forms

    def _key_ring_pb(self, ring: st.KeyRing) -> Any:
        return KeyRingPb(name=ring.name, create_time=_ts(ring.create_time))

    def _version_pb(self, key: st.CryptoKey, version: st.Version) -> Any:
        return VersionPb(
            name=f"{key.name}/cryptoKeyVersions/{version.id}",
            state=version.state,
            protection_level=version.protection_level,
            algorithm=version.algorithm,
            create_time=_ts(version.create_time),
            generate_time=_ts(version.generate_time),
            destroy_time=_ts(version.destroy_time),
            destroy_event_time=_ts(version.destroy_event_time),
            import_job=version.import_job or "",
            import_time=_ts(version.import_time),
            import_failure_reason=version.import_failure_reason or "",
            reimport_eligible=version.import_job is not None,
            trusted_wrapping_enabled=version.trusted_wrapping_enabled,
            hsm_trusted=_hsm_trusted(key),
        )

    def _key_pb(self, key: st.CryptoKey) -> Any:
        out = CryptoKeyPb(
            name=key.name,
            purpose=key.purpose,
            create_time=_ts(key.create_time),
            labels=key.labels,
            destroy_scheduled_duration=_duration(key.destroy_scheduled_duration),
            import_only=key.import_only,
            crypto_key_backend=key.crypto_key_backend,
        )
        out.version_template.algorithm = key.algorithm
        out.version_template.protection_level = key.protection_level
        if key.primary_id is not None:
            out.primary.CopyFrom(self._version_pb(key, key.versions[key.primary_id]))
        if key.rotation_period:
            out.rotation_period.CopyFrom(_duration(key.rotation_period))
        if key.next_rotation_time is not None:
            out.next_rotation_time.CopyFrom(_ts(key.next_rotation_time))
        return out

    @staticmethod
    def _page(items: Sequence[T], page_size: int, page_token: str) -> tuple[list[T], str]:
        if page_size < 0:
            raise invalid("page_size must not be negative.")
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
        except ValueError as exc:
            raise invalid(f"Invalid page_token {page_token!r}.") from exc
        if start < 0:
            # A negative offset would slice from the end and serve a wrong page silently.
            raise invalid(f"Invalid page_token {page_token!r}.")
        size = min(page_size or _MAX_PAGE_SIZE, _MAX_PAGE_SIZE)
        end = start + size
        token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else ""
        return list(items[start:end]), token

    # ----------------------------------------------------------------- key rings

    def CreateKeyRing(self, req: Any, principal: str | None) -> Any:
        parent = names.location(req.parent)
        names.check_id("KeyRing", req.key_ring_id)
        with self._lock:
            self._require(principal, "cloudkms.keyRings.create", None)
            now = self._tick()
            name = f"{parent}/keyRings/{req.key_ring_id}"
            if name in self._state.key_rings:
                raise EmulatorError(grpc.StatusCode.ALREADY_EXISTS, f"KeyRing {name} already exists.")
            ring = st.KeyRing(name=name, create_time=now)
            self._state.key_rings[name] = ring
            self._commit()
            return self._key_ring_pb(ring)

    def GetKeyRing(self, req: Any, principal: str | None) -> Any:
        names.key_ring(req.name)
        with self._lock:
            self._require(principal, "cloudkms.keyRings.get", req.name)
            self._tick()
            return self._key_ring_pb(self._key_ring(req.name))

    def ListKeyRings(self, req: Any, principal: str | None) -> Any:
        parent = names.location(req.parent)
        match = compile_filter(req.filter)
        with self._lock:
            self._require(principal, "cloudkms.keyRings.list", None)
            self._tick()
            rings = [
                r
                for name, r in sorted(self._state.key_rings.items())
                if names.key_ring(name).parent == parent and match({"name": name})
            ]
            page, token = self._page(rings, req.page_size, req.page_token)
            return service.ListKeyRingsResponse.pb()(
                key_rings=[self._key_ring_pb(r) for r in page],
                next_page_token=token,
                total_size=len(rings),
            )

    # ----------------------------------------------------------------- crypto keys

    def _check_rotation(self, period: float | None, next_time: float | None, purpose: int) -> None:
        if (period or next_time is not None) and purpose != Purpose.ENCRYPT_DECRYPT:
            raise invalid(
                f"Automatic rotation is not supported for keys with purpose {Purpose(purpose).name}; "
                "only ENCRYPT_DECRYPT keys rotate."
            )
        if period is not None and period < MIN_ROTATION_PERIOD:
            raise invalid(f"rotation_period must be at least 24 hours (86400s), got {period:g}s.")
        if period and next_time is None:
            raise invalid("next_rotation_time must be set when rotation_period is set.")

    def CreateCryptoKey(self, req: Any, principal: str | None) -> Any:
        names.key_ring(req.parent)
        names.check_id("CryptoKey", req.crypto_key_id)
        spec = req.crypto_key
        purpose = spec.purpose
        if purpose not in _SERVED_PURPOSES:
            raise invalid(
                f"The kmsflow emulator does not serve purpose {Purpose(purpose).name} "
                f"(it serves {', '.join(Purpose(p).name for p in _SERVED_PURPOSES)})."
            )
        algorithm = spec.version_template.algorithm
        if not algorithm:
            if purpose != Purpose.ENCRYPT_DECRYPT:
                raise invalid(
                    f"version_template.algorithm must be specified for purpose {Purpose(purpose).name}."
                )
            algorithm = Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION
        _check_algorithm(purpose, algorithm)
        protection = spec.version_template.protection_level or Protection.SOFTWARE
        if protection not in (Protection.SOFTWARE, Protection.HSM, Protection.HSM_SINGLE_TENANT):
            raise invalid(
                f"The kmsflow emulator supports SOFTWARE, HSM and HSM_SINGLE_TENANT protection, got "
                f"{Protection(protection).name}."
            )
        single_tenant = protection == Protection.HSM_SINGLE_TENANT
        if single_tenant != bool(spec.crypto_key_backend) or (
            single_tenant and not _SINGLE_TENANT_HSM.match(spec.crypto_key_backend)
        ):
            raise invalid(
                "HSM_SINGLE_TENANT keys, and only they, name their crypto_key_backend: "
                "projects/*/locations/*/singleTenantHsmInstances/*."
            )
        if purpose == Purpose.AES_WRAPPING and not single_tenant:
            raise invalid("AES_WRAPPING keys must have protection level HSM_SINGLE_TENANT.")
        period = _seconds(spec.rotation_period) if spec.HasField("rotation_period") else None
        next_time = _seconds(spec.next_rotation_time) if spec.HasField("next_rotation_time") else None
        self._check_rotation(period, next_time, purpose)
        # Generated before taking the lock: an RSA-4096 key takes a while.
        if spec.import_only and not req.skip_initial_version_creation:
            raise invalid("An import_only CryptoKey must be created with skip_initial_version_creation.")
        material = None if req.skip_initial_version_creation else new_material(algorithm)
        destroy_after = st.DEFAULT_DESTROY_SCHEDULED_DURATION
        if spec.HasField("destroy_scheduled_duration"):
            destroy_after = _seconds(spec.destroy_scheduled_duration)
            if not MIN_DESTROY_DURATION <= destroy_after <= MAX_DESTROY_DURATION:
                raise invalid(
                    "destroy_scheduled_duration must be between 24 hours and 120 days, got "
                    f"{destroy_after:g}s."
                )
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.create", req.parent)
            now = self._tick()
            self._key_ring(req.parent)
            name = f"{req.parent}/cryptoKeys/{req.crypto_key_id}"
            if name in self._state.crypto_keys:
                raise EmulatorError(grpc.StatusCode.ALREADY_EXISTS, f"CryptoKey {name} already exists.")
            if any(r.original_resource == name for r in self._state.retired_resources.values()):
                raise EmulatorError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"CryptoKey {name} was deleted; the names of deleted keys cannot be reused.",
                )
            key = st.CryptoKey(
                name=name,
                create_time=now,
                purpose=purpose,
                algorithm=algorithm,
                protection_level=protection,
                destroy_scheduled_duration=destroy_after,
                rotation_period=period,
                next_rotation_time=next_time,
                labels=dict(spec.labels),
                import_only=spec.import_only,
                crypto_key_backend=spec.crypto_key_backend,
            )
            if not req.skip_initial_version_creation:
                first = self._new_version(key, now, State.ENABLED, material)
                if purpose == Purpose.ENCRYPT_DECRYPT:  # only symmetric encryption keys have a primary
                    key.primary_id = first.id
            self._state.crypto_keys[name] = key
            self._commit()
            return self._key_pb(key)

    def GetCryptoKey(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.get", req.name)
            self._tick()
            return self._key_pb(self._key(req.name))

    def ListCryptoKeys(self, req: Any, principal: str | None) -> Any:
        names.key_ring(req.parent)
        match = compile_filter(req.filter)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.list", req.parent)
            self._tick()
            self._key_ring(req.parent)
            keys = [
                k
                for name, k in sorted(self._state.crypto_keys.items())
                if names.crypto_key(name).parent == req.parent
                and match({"name": name, "purpose": Purpose(k.purpose).name})
            ]
            page, token = self._page(keys, req.page_size, req.page_token)
            return service.ListCryptoKeysResponse.pb()(
                crypto_keys=[self._key_pb(k) for k in page],
                next_page_token=token,
                total_size=len(keys),
            )

    def UpdateCryptoKey(self, req: Any, principal: str | None) -> Any:
        spec = req.crypto_key
        names.crypto_key(spec.name)
        paths = set(req.update_mask.paths)
        if not paths:
            raise invalid("update_mask is required: name the fields to update.")
        unknown = {p.split(".")[0] for p in paths} - _UPDATABLE_KEY_FIELDS
        if unknown:
            raise invalid(
                f"Cannot update {', '.join(sorted(unknown))}: updatable fields are "
                f"{', '.join(sorted(_UPDATABLE_KEY_FIELDS))}."
            )
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.update", spec.name)
            self._tick()
            key = self._key(spec.name)
            period = key.rotation_period
            next_time = key.next_rotation_time
            if "rotation_period" in paths:
                period = _seconds(spec.rotation_period) if spec.HasField("rotation_period") else None
            if "next_rotation_time" in paths:
                next_time = _seconds(spec.next_rotation_time) if spec.HasField("next_rotation_time") else None
            self._check_rotation(period, next_time, key.purpose)
            template = {p for p in paths if p.startswith("version_template")}
            algorithm = key.algorithm
            if template and spec.version_template.algorithm:
                algorithm = spec.version_template.algorithm
                _check_algorithm(key.purpose, algorithm)
            if template and spec.version_template.protection_level not in (
                Protection.PROTECTION_LEVEL_UNSPECIFIED,
                key.protection_level,
            ):
                raise invalid("version_template.protection_level cannot be changed.")
            key.rotation_period = period
            key.next_rotation_time = next_time
            key.algorithm = algorithm
            if "labels" in paths:
                key.labels = dict(spec.labels)
            self._commit()
            return self._key_pb(key)

    def UpdateCryptoKeyPrimaryVersion(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.update", req.name)
            self._tick()
            key = self._key(req.name)
            if key.purpose != Purpose.ENCRYPT_DECRYPT:
                raise precondition(
                    f"{req.name} has purpose {Purpose(key.purpose).name}; only ENCRYPT_DECRYPT keys "
                    "have a primary version."
                )
            version_name = f"{req.name}/cryptoKeyVersions/{req.crypto_key_version_id}"
            if not req.crypto_key_version_id.isdigit():
                raise invalid(f"Invalid crypto_key_version_id {req.crypto_key_version_id!r}.")
            version = key.versions.get(int(req.crypto_key_version_id))
            if version is None:
                raise not_found(version_name)
            if version.state != State.ENABLED:
                raise precondition(
                    f"{version_name} is not enabled, current state is: {_state_name(version.state)}."
                )
            key.primary_id = version.id
            self._commit()
            return self._key_pb(key)

    # ----------------------------------------------------------------- versions

    def CreateCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.parent)
        wanted = req.crypto_key_version.state or State.ENABLED
        if wanted not in (State.ENABLED, State.DISABLED):
            raise invalid("A new CryptoKeyVersion may only be created ENABLED or DISABLED.")
        trusted = req.crypto_key_version.trusted_wrapping_enabled
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.create", req.parent)
            self._tick()
            algorithm = self._key(req.parent).algorithm
            if self._key(req.parent).import_only:
                raise precondition(f"{req.parent} is import_only: its versions can only be imported.")
            if trusted:
                _check_trusted_wrapping(self._key(req.parent))
        # Generated outside the lock (RSA-4096 is slow); the key may change meanwhile, so re-check.
        material: bytes | None = new_material(algorithm)
        with self._lock:
            now = self._tick()
            key = self._key(req.parent)
            if key.algorithm != algorithm:
                material = None
            version = self._new_version(key, now, wanted, material)
            version.trusted_wrapping_enabled = trusted
            self._commit()
            return self._version_pb(key, version)

    def GetCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.version(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.get", req.name)
            self._tick()
            return self._version_pb(*self._version(req.name))

    def ListCryptoKeyVersions(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.parent)
        match = compile_filter(req.filter)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.list", req.parent)
            self._tick()
            key = self._key(req.parent)
            versions = [
                v
                for _, v in sorted(key.versions.items())
                if match(
                    {
                        "name": f"{key.name}/cryptoKeyVersions/{v.id}",
                        "state": _state_name(v.state),
                        "algorithm": Algorithm(v.algorithm).name,
                        "protection_level": Protection(v.protection_level).name,
                    }
                )
            ]
            page, token = self._page(versions, req.page_size, req.page_token)
            return service.ListCryptoKeyVersionsResponse.pb()(
                crypto_key_versions=[self._version_pb(key, v) for v in page],
                next_page_token=token,
                total_size=len(versions),
            )

    def UpdateCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        spec = req.crypto_key_version
        names.version(spec.name)
        if list(req.update_mask.paths) != ["state"]:
            raise invalid("update_mask must be exactly ['state'] for a CryptoKeyVersion.")
        if spec.state not in (State.ENABLED, State.DISABLED):
            raise invalid("A CryptoKeyVersion's state may only be updated to ENABLED or DISABLED.")
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.update", spec.name)
            self._tick()
            key, version = self._version(spec.name)
            if version.state not in (State.ENABLED, State.DISABLED):
                raise precondition(
                    f"{spec.name} cannot change from {_state_name(version.state)} to "
                    f"{_state_name(spec.state)}; only ENABLED and DISABLED versions can."
                )
            version.state = spec.state
            self._commit()
            return self._version_pb(key, version)

    def DestroyCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.version(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.destroy", req.name)
            now = self._tick()
            key, version = self._version(req.name)
            if version.state not in (State.ENABLED, State.DISABLED):
                raise precondition(
                    f"{req.name} is {_state_name(version.state)}; only ENABLED or DISABLED "
                    "versions can be scheduled for destruction."
                )
            version.state = State.DESTROY_SCHEDULED
            version.destroy_time = now + key.destroy_scheduled_duration
            self._commit()
            return self._version_pb(key, version)

    def RestoreCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.version(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.restore", req.name)
            self._tick()
            key, version = self._version(req.name)
            if version.state != State.DESTROY_SCHEDULED:
                raise precondition(
                    f"{req.name} is {_state_name(version.state)}; only DESTROY_SCHEDULED "
                    "versions can be restored."
                )
            version.state = State.DISABLED
            version.destroy_time = None
            self._commit()
            return self._version_pb(key, version)

    # ----------------------------------------------------------------- crypto

    @staticmethod
    def _check_payload(
        field: str, data: bytes, checksum: Any, has_checksum: bool, limit: int = MAX_PAYLOAD
    ) -> bool:
        """Enforce the size limit and verify a client-sent CRC32C; True if one was verified."""
        if len(data) > limit:
            raise invalid(f"The {field} field must be at most {limit} bytes, got {len(data)}.")
        if has_checksum and crc32c(data) != checksum.value:
            raise invalid(f"The checksum in field {field}_crc32c did not match the data in field {field}.")
        return has_checksum

    def Encrypt(self, req: Any, principal: str | None) -> Any:
        verified_plaintext = self._check_payload(
            "plaintext", req.plaintext, req.plaintext_crc32c, req.HasField("plaintext_crc32c")
        )
        verified_aad = self._check_payload(
            "additional_authenticated_data",
            req.additional_authenticated_data,
            req.additional_authenticated_data_crc32c,
            req.HasField("additional_authenticated_data_crc32c"),
        )
        is_version = names.kind_of(req.name) == "cryptoKeyVersion"
        if is_version:
            key_name = names.version(req.name).parent
        else:
            names.crypto_key(req.name)
            key_name = req.name
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.useToEncrypt", key_name)
            self._tick()
            if is_version:
                key, version = self._version(req.name)
                self._check_purpose(key, Purpose.ENCRYPT_DECRYPT, "Encrypt")
            else:
                key = self._key(key_name)
                self._check_purpose(key, Purpose.ENCRYPT_DECRYPT, "Encrypt")
                if key.primary_id is None:
                    raise precondition(f"{key_name} has no primary version.")
                version = key.versions[key.primary_id]
            version_name = f"{key.name}/cryptoKeyVersions/{version.id}"
            if version.state != State.ENABLED or version.material is None:
                raise precondition(
                    f"{version_name} is not enabled, current state is: {_state_name(version.state)}."
                )
            material, version_id = version.material, version.id
        sealed = ciphertext.encrypt(
            key.name, version_id, material, req.plaintext, req.additional_authenticated_data
        )
        return service.EncryptResponse.pb()(
            name=version_name,
            ciphertext=sealed,
            ciphertext_crc32c={"value": crc32c(sealed)},
            verified_plaintext_crc32c=verified_plaintext,
            verified_additional_authenticated_data_crc32c=verified_aad,
            protection_level=key.protection_level,
        )

    def Decrypt(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.name)
        self._check_payload(
            "ciphertext",
            req.ciphertext,
            req.ciphertext_crc32c,
            req.HasField("ciphertext_crc32c"),
            limit=MAX_PAYLOAD + ciphertext.OVERHEAD,
        )
        self._check_payload(
            "additional_authenticated_data",
            req.additional_authenticated_data,
            req.additional_authenticated_data_crc32c,
            req.HasField("additional_authenticated_data_crc32c"),
        )
        bad = invalid("Decryption failed: the ciphertext is invalid.")
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.useToDecrypt", req.name)
            self._tick()
            key = self._key(req.name)
            self._check_purpose(key, Purpose.ENCRYPT_DECRYPT, "Decrypt")
            try:
                version_id = ciphertext.version_of(req.ciphertext)
            except ciphertext.CiphertextError:
                raise bad from None
            version = key.versions.get(version_id)
            if version is None:
                raise invalid("Decryption failed: verify that 'name' refers to the correct CryptoKey.")
            version_name = f"{key.name}/cryptoKeyVersions/{version.id}"
            if version.state != State.ENABLED or version.material is None:
                raise precondition(
                    f"{version_name} is not enabled, current state is: {_state_name(version.state)}."
                )
            material, used_primary = version.material, version.id == key.primary_id
        try:
            plaintext = ciphertext.decrypt(
                key.name, material, req.ciphertext, req.additional_authenticated_data
            )
        except ciphertext.CiphertextError:
            raise bad from None
        return service.DecryptResponse.pb()(
            plaintext=plaintext,
            plaintext_crc32c={"value": crc32c(plaintext)},
            used_primary=used_primary,
            protection_level=key.protection_level,
        )

    def GenerateRandomBytes(self, req: Any, principal: str | None) -> Any:
        names.location(req.location)
        if not 8 <= req.length_bytes <= 1024:
            raise invalid(f"length_bytes must be between 8 and 1024, got {req.length_bytes}.")
        with self._lock:
            self._require(principal, "cloudkms.locations.generateRandomBytes", None)
        data = os.urandom(req.length_bytes)
        return service.GenerateRandomBytesResponse.pb()(data=data, data_crc32c={"value": crc32c(data)})

    # ----------------------------------------------------------------- asymmetric, PQ, MAC

    @staticmethod
    def _check_purpose(key: st.CryptoKey, purpose: int | tuple[int, ...], rpc: str) -> None:
        wanted = purpose if isinstance(purpose, tuple) else (purpose,)
        if key.purpose not in wanted:
            raise precondition(
                f"The request cannot be fulfilled: {rpc} is not supported for {key.name}, whose "
                f"purpose is {Purpose(key.purpose).name} (it needs "
                f"{' or '.join(Purpose(p).name for p in wanted)})."
            )

    def _usable(
        self, name: str, principal: str | None, permission: str, purpose: int | tuple[int, ...], rpc: str
    ) -> tuple[st.CryptoKey, st.Version, algorithms.Spec, bytes]:
        """The ENABLED version ``name`` of a key with ``purpose``, after the IAM check, with its
        algorithm's spec and material (copied out so the crypto runs outside the lock)."""
        names.version(name)
        with self._lock:
            self._require(principal, permission, name)
            self._tick()
            key, version = self._version(name)
            self._check_purpose(key, purpose, rpc)
            if version.state != State.ENABLED or version.material is None:
                raise precondition(f"{name} is not enabled, current state is: {_state_name(version.state)}.")
            spec = algorithms.spec_for(version.algorithm)
            assert spec is not None, version.algorithm
            return key, version, spec, version.material

    def GetPublicKey(self, req: Any, principal: str | None) -> Any:
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.viewPublicKey",
            (Purpose.ASYMMETRIC_SIGN, Purpose.ASYMMETRIC_DECRYPT, Purpose.KEY_ENCAPSULATION),
            "GetPublicKey",
        )
        wanted = req.public_key_format
        if wanted not in algorithms.formats(spec):
            if wanted == KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED:
                raise invalid(
                    f"public_key_format is required for {Algorithm(spec.algorithm).name}: "
                    "post-quantum public keys are served in "
                    f"{KeyFormat(algorithms.formats(spec)[0]).name} format only."
                )
            raise invalid(
                f"Public key format {KeyFormat(wanted).name} is not supported for "
                f"{Algorithm(spec.algorithm).name} (supported: "
                f"{', '.join(KeyFormat(f).name for f in algorithms.formats(spec) if f)})."
            )
        out = PublicKeyPb(
            name=req.name,
            algorithm=spec.algorithm,
            protection_level=version.protection_level,
        )
        if wanted in (KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED, KeyFormat.PEM):
            pem = algorithms.public_key(spec, material, KeyFormat.PEM)
            out.pem = pem.decode()
            out.pem_crc32c.value = crc32c(pem)
        out.public_key_format = wanted or KeyFormat.PEM
        if wanted != KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED:
            data = algorithms.public_key(spec, material, wanted)
            out.public_key.data = data
            out.public_key.crc32c_checksum.value = crc32c(data)
        return out

    def AsymmetricSign(self, req: Any, principal: str | None) -> Any:
        has_digest = req.HasField("digest")
        digest_field = req.digest.WhichOneof("digest") if has_digest else None
        digest = getattr(req.digest, digest_field) if digest_field else b""
        verified_digest = self._check_payload(
            "digest", digest, req.digest_crc32c, req.HasField("digest_crc32c")
        )
        verified_data = self._check_payload("data", req.data, req.data_crc32c, req.HasField("data_crc32c"))
        if has_digest and req.data:
            raise invalid("Only one of digest and data may be supplied.")
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.useToSign",
            Purpose.ASYMMETRIC_SIGN,
            "AsymmetricSign",
        )
        name = Algorithm(spec.algorithm).name
        if spec.kind == "ml_dsa_mu":
            if not has_digest:
                raise invalid(f"{name} signs a precomputed digest.external_mu, not data.")
        elif has_digest and spec.digest is None:
            raise invalid(f"{name} signs data; a digest is not accepted.")
        if has_digest:
            if digest_field != spec.digest:
                raise invalid(
                    f"The digest must be a {spec.digest} digest for {name}, got {digest_field or 'none'}."
                )
            if len(digest) != algorithms.digest_size(spec):
                size = algorithms.digest_size(spec)
                raise invalid(f"The {spec.digest} digest must be {size} bytes, got {len(digest)}.")
        try:
            signature = algorithms.sign(
                spec, material, digest=digest if has_digest else None, data=None if has_digest else req.data
            )
        except algorithms.OperationError as exc:
            raise invalid(str(exc)) from None
        return service.AsymmetricSignResponse.pb()(
            signature=signature,
            signature_crc32c={"value": crc32c(signature)},
            verified_digest_crc32c=verified_digest,
            verified_data_crc32c=verified_data,
            name=req.name,
            protection_level=version.protection_level,
        )

    def AsymmetricDecrypt(self, req: Any, principal: str | None) -> Any:
        verified = self._check_payload(
            "ciphertext", req.ciphertext, req.ciphertext_crc32c, req.HasField("ciphertext_crc32c")
        )
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.useToDecrypt",
            Purpose.ASYMMETRIC_DECRYPT,
            "AsymmetricDecrypt",
        )
        try:
            plaintext = algorithms.decrypt(spec, material, req.ciphertext)
        except algorithms.OperationError as exc:
            raise invalid(str(exc)) from None
        return service.AsymmetricDecryptResponse.pb()(
            plaintext=plaintext,
            plaintext_crc32c={"value": crc32c(plaintext)},
            verified_ciphertext_crc32c=verified,
            protection_level=version.protection_level,
        )

    def Decapsulate(self, req: Any, principal: str | None) -> Any:
        verified = self._check_payload(
            "ciphertext", req.ciphertext, req.ciphertext_crc32c, req.HasField("ciphertext_crc32c")
        )
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.useToDecapsulate",
            Purpose.KEY_ENCAPSULATION,
            "Decapsulate",
        )
        try:
            secret = algorithms.decapsulate(spec, material, req.ciphertext)
        except algorithms.OperationError as exc:
            raise invalid(str(exc)) from None
        return service.DecapsulateResponse.pb()(
            name=req.name,
            shared_secret=secret,
            shared_secret_crc32c=crc32c(secret),
            verified_ciphertext_crc32c=verified,
            protection_level=version.protection_level,
        )

    def MacSign(self, req: Any, principal: str | None) -> Any:
        verified = self._check_payload("data", req.data, req.data_crc32c, req.HasField("data_crc32c"))
        _, version, spec, material = self._usable(
            req.name, principal, "cloudkms.cryptoKeyVersions.useToSign", Purpose.MAC, "MacSign"
        )
        tag = algorithms.mac(spec, material, req.data)
        return service.MacSignResponse.pb()(
            name=req.name,
            mac=tag,
            mac_crc32c={"value": crc32c(tag)},
            verified_data_crc32c=verified,
            protection_level=version.protection_level,
        )

    def MacVerify(self, req: Any, principal: str | None) -> Any:
        verified_data = self._check_payload("data", req.data, req.data_crc32c, req.HasField("data_crc32c"))
        verified_mac = self._check_payload("mac", req.mac, req.mac_crc32c, req.HasField("mac_crc32c"))
        _, version, spec, material = self._usable(
            req.name, principal, "cloudkms.cryptoKeyVersions.useToVerify", Purpose.MAC, "MacVerify"
        )
        success = algorithms.mac_verify(spec, material, req.data, req.mac)
        return service.MacVerifyResponse.pb()(
            name=req.name,
            success=success,
            verified_data_crc32c=verified_data,
            verified_mac_crc32c=verified_mac,
            verified_success_integrity=success,
            protection_level=version.protection_level,
        )

    def _raw_checks(self, req: Any, spec: algorithms.Spec, protection: int, data_field: str) -> None:
        """The RAW_ENCRYPT_DECRYPT rules shared by RawEncrypt and RawDecrypt."""
        name = Algorithm(spec.algorithm).name
        if req.additional_authenticated_data and spec.kind != "raw_gcm":
            raise invalid(f"additional_authenticated_data is only accepted by AES-GCM, not {name}.")
        data = getattr(req, data_field)
        if (
            protection == Protection.HSM
            and len(data) + len(req.additional_authenticated_data) > MAX_HSM_RAW_PAYLOAD
        ):
            raise invalid(
                f"For HSM keys the {data_field} and additional_authenticated_data together must be "
                f"at most {MAX_HSM_RAW_PAYLOAD} bytes."
            )
        if spec.kind == "raw_cbc" and len(data) % 16:
            raise invalid(f"The {data_field} of {name} must be a multiple of 16 bytes (no padding is added).")

    def _raw_crc_inputs(self, req: Any, data_field: str) -> tuple[bool, bool, bool]:
        limit = MAX_PAYLOAD + algorithms.GCM_TAG_LENGTH if data_field == "ciphertext" else MAX_PAYLOAD
        return (
            self._check_payload(
                data_field,
                getattr(req, data_field),
                getattr(req, f"{data_field}_crc32c"),
                req.HasField(f"{data_field}_crc32c"),
                limit=limit,
            ),
            self._check_payload(
                "additional_authenticated_data",
                req.additional_authenticated_data,
                req.additional_authenticated_data_crc32c,
                req.HasField("additional_authenticated_data_crc32c"),
            ),
            self._check_payload(
                "initialization_vector",
                req.initialization_vector,
                req.initialization_vector_crc32c,
                req.HasField("initialization_vector_crc32c"),
            ),
        )

    def RawEncrypt(self, req: Any, principal: str | None) -> Any:
        verified_plaintext, verified_aad, verified_iv = self._raw_crc_inputs(req, "plaintext")
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            Purpose.RAW_ENCRYPT_DECRYPT,
            "RawEncrypt",
        )
        self._raw_checks(req, spec, version.protection_level, "plaintext")
        iv = req.initialization_vector
        if spec.kind == "raw_gcm" and iv:
            raise invalid("AES-GCM initialization vectors are generated by the service; do not supply one.")
        iv_size = algorithms.raw_iv_size(spec)
        if iv and len(iv) != iv_size:
            raise invalid(f"initialization_vector must be {iv_size} bytes, got {len(iv)}.")
        iv = iv or os.urandom(iv_size)
        sealed = algorithms.raw_encrypt(spec, material, req.plaintext, req.additional_authenticated_data, iv)
        return service.RawEncryptResponse.pb()(
            ciphertext=sealed,
            initialization_vector=iv,
            tag_length=algorithms.raw_tag_length(spec),
            ciphertext_crc32c={"value": crc32c(sealed)},
            initialization_vector_crc32c={"value": crc32c(iv)},
            verified_plaintext_crc32c=verified_plaintext,
            verified_additional_authenticated_data_crc32c=verified_aad,
            verified_initialization_vector_crc32c=verified_iv,
            name=req.name,
            protection_level=version.protection_level,
        )

    def RawDecrypt(self, req: Any, principal: str | None) -> Any:
        verified_ciphertext, verified_aad, verified_iv = self._raw_crc_inputs(req, "ciphertext")
        _, version, spec, material = self._usable(
            req.name,
            principal,
            "cloudkms.cryptoKeyVersions.useToDecrypt",
            Purpose.RAW_ENCRYPT_DECRYPT,
            "RawDecrypt",
        )
        self._raw_checks(req, spec, version.protection_level, "ciphertext")
        if len(req.initialization_vector) != algorithms.raw_iv_size(spec):
            raise invalid(
                f"initialization_vector must be {algorithms.raw_iv_size(spec)} bytes, "
                f"got {len(req.initialization_vector)}."
            )
        expected_tag = algorithms.raw_tag_length(spec)
        if req.tag_length not in (0, expected_tag):
            raise invalid(
                f"tag_length {req.tag_length} is not supported for {Algorithm(spec.algorithm).name} "
                f"(want {expected_tag} or 0 for the default)."
            )
        if len(req.ciphertext) < expected_tag:
            raise invalid("Decryption failed: the ciphertext is invalid.")
        try:
            plaintext = algorithms.raw_decrypt(
                spec, material, req.ciphertext, req.additional_authenticated_data, req.initialization_vector
            )
        except algorithms.OperationError as exc:
            raise invalid(str(exc)) from None
        return service.RawDecryptResponse.pb()(
            plaintext=plaintext,
            plaintext_crc32c={"value": crc32c(plaintext)},
            protection_level=version.protection_level,
            verified_ciphertext_crc32c=verified_ciphertext,
            verified_additional_authenticated_data_crc32c=verified_aad,
            verified_initialization_vector_crc32c=verified_iv,
        )

    # ----------------------------------------------------------------- import

    def _job_state(self, job: st.ImportJob, now: float) -> int:
        if now >= job.expire_time:
            return int(JobState.EXPIRED)
        if now < job.generate_time:
            return int(JobState.PENDING_GENERATION)
        return int(JobState.ACTIVE)

    def _import_job_pb(self, job: st.ImportJob, now: float, key_format: int = 0) -> Any:
        state = self._job_state(job, now)
        out = ImportJobPb(
            name=job.name,
            import_method=job.import_method,
            protection_level=job.protection_level,
            create_time=_ts(job.create_time),
            expire_time=_ts(job.expire_time),
            state=state,
        )
        if state != JobState.PENDING_GENERATION:
            out.generate_time.CopyFrom(_ts(job.generate_time))
        if state == JobState.EXPIRED:
            out.expire_event_time.CopyFrom(_ts(job.expire_time))
        if state == JobState.ACTIVE and job.material is not None:
            key_format = key_format or algorithms.wrapping_formats(job.import_method)[0]
            public = algorithms.wrapping_public_key(job.import_method, job.material, key_format)
            if key_format == KeyFormat.PEM:
                out.public_key.pem = public.decode()
            else:
                out.public_key.data = public
            out.public_key_format = key_format
        return out

    def CreateImportJob(self, req: Any, principal: str | None) -> Any:
        names.key_ring(req.parent)
        names.check_id("ImportJob", req.import_job_id)
        spec = req.import_job
        if spec.import_method not in algorithms.IMPORT_METHODS:
            raise invalid(
                f"Import method {ImportMethod(spec.import_method).name} is not supported by the kmsflow "
                f"emulator (supported: {', '.join(ImportMethod(m).name for m in algorithms.IMPORT_METHODS)})."
            )
        if spec.protection_level not in (Protection.SOFTWARE, Protection.HSM):
            raise invalid("import_job.protection_level must be SOFTWARE or HSM.")
        with self._lock:
            self._require(principal, "cloudkms.importJobs.create", req.parent)
            self._tick()
            self._key_ring(req.parent)
        material = algorithms.new_wrapping_key(spec.import_method)  # RSA is slow: outside the lock
        with self._lock:
            now = self._tick()
            name = f"{req.parent}/importJobs/{req.import_job_id}"
            if name in self._state.import_jobs:
                raise EmulatorError(grpc.StatusCode.ALREADY_EXISTS, f"ImportJob {name} already exists.")
            job = st.ImportJob(
                name=name,
                import_method=spec.import_method,
                protection_level=spec.protection_level,
                create_time=now,
                generate_time=now + self.generation_delay,
                expire_time=now + IMPORT_JOB_LIFETIME,
                material=material,
            )
            self._state.import_jobs[name] = job
            self._commit()
            return self._import_job_pb(job, now)

    def _import_job(self, name: str) -> st.ImportJob:
        job = self._state.import_jobs.get(name)
        if job is None:
            raise not_found(name)
        return job

    def GetImportJob(self, req: Any, principal: str | None) -> Any:
        parent = names.import_job(req.name).parent
        with self._lock:
            self._require(principal, "cloudkms.importJobs.get", parent)
            now = self._tick()
            job = self._import_job(req.name)
            served = algorithms.wrapping_formats(job.import_method)
            if req.public_key_format not in (KeyFormat.PUBLIC_KEY_FORMAT_UNSPECIFIED, *served):
                raise invalid(
                    f"public_key_format {KeyFormat(req.public_key_format).name} is not supported for "
                    f"{ImportMethod(job.import_method).name} (supported: "
                    f"{', '.join(KeyFormat(f).name for f in served)})."
                )
            return self._import_job_pb(job, now, req.public_key_format)

    def ListImportJobs(self, req: Any, principal: str | None) -> Any:
        names.key_ring(req.parent)
        match = compile_filter(req.filter)
        with self._lock:
            self._require(principal, "cloudkms.importJobs.list", req.parent)
            now = self._tick()
            self._key_ring(req.parent)
            jobs = [
                j
                for name, j in sorted(self._state.import_jobs.items())
                if names.import_job(name).parent == req.parent
                and match(
                    {
                        "name": name,
                        "state": JobState(self._job_state(j, now)).name,
                        "import_method": ImportMethod(j.import_method).name,
                        "protection_level": Protection(j.protection_level).name,
                    }
                )
            ]
            page, token = self._page(jobs, req.page_size, req.page_token)
            return service.ListImportJobsResponse.pb()(
                import_jobs=[self._import_job_pb(j, now) for j in page],
                next_page_token=token,
                total_size=len(jobs),
            )

    def _import_target(self, parent: str, version_name: str) -> int | None:
        """The id of the version a request re-imports into, or None for a new version."""
        if not version_name:
            return None
        parsed = names.version(version_name)
        if parsed.parent != parent:
            raise invalid(f"{version_name} is not a version of {parent}.")
        return int(parsed.id)

    @staticmethod
    def _check_reimport(
        key: st.CryptoKey, target_id: int, version_name: str, algorithm: int, trusted: bool
    ) -> None:
        """Re-import only into a DESTROYED or IMPORT_FAILED version imported the same way."""
        target = key.versions.get(target_id)
        if target is None:
            raise not_found(version_name)
        if target.import_time is None or (target.import_job is None) != trusted:
            how = "with ImportTrustedKeyWrappedCryptoKeyVersion" if trusted else "from an ImportJob"
            raise precondition(f"{version_name} was not imported {how}; it cannot be re-imported so.")
        if target.state not in (State.DESTROYED, State.IMPORT_FAILED):
            raise precondition(
                f"{version_name} is {_state_name(target.state)}; only DESTROYED or "
                "IMPORT_FAILED versions can be re-imported."
            )
        if target.algorithm != algorithm and target.import_fingerprint:
            raise precondition("A re-import must use the version's original algorithm.")

    @staticmethod
    def _unwrapped(algorithm: int, unwrap: Callable[[], bytes]) -> tuple[bytes | None, str | None]:
        """(material, None) when the wrapped key opens and fits ``algorithm``, else (None, why)."""
        try:
            return algorithms.imported_material(algorithms.spec_for(algorithm), unwrap()), None
        except algorithms.OperationError as exc:
            return None, str(exc)

    def _record_import(
        self,
        parent: str,
        target_id: int | None,
        version_name: str,
        algorithm: int,
        unwrapped: tuple[bytes | None, str | None],
        import_job: str | None,
    ) -> Any:
        """Store an import's outcome: an ENABLED version, or an IMPORT_FAILED one with its reason."""
        material, failure = unwrapped
        fingerprint = hashlib.sha256(material).hexdigest() if material is not None else None
        with self._lock:
            now = self._tick()
            key = self._key(parent)
            if target_id is not None:
                version = key.versions[target_id]
                if version.import_fingerprint and fingerprint and version.import_fingerprint != fingerprint:
                    raise precondition(
                        "The key material does not match the material previously imported into "
                        f"{version_name}."
                    )
                version.algorithm = algorithm
            else:
                version = st.Version(
                    id=key.next_version_id,
                    state=State.IMPORT_FAILED,
                    algorithm=algorithm,
                    protection_level=key.protection_level,
                    create_time=now,
                    generate_time=None,
                    material=None,
                    trusted_wrapping_enabled=import_job is None,
                )
                key.versions[version.id] = version
                key.next_version_id += 1
            version.import_job = import_job
            version.import_time = now
            version.destroy_time = version.destroy_event_time = None
            if material is None:
                version.state, version.material = State.IMPORT_FAILED, None
                version.import_failure_reason = failure
            else:
                version.state, version.material = State.ENABLED, material
                version.generate_time = now
                version.import_failure_reason = None
                version.import_fingerprint = version.import_fingerprint or fingerprint
                if key.purpose == Purpose.ENCRYPT_DECRYPT and key.primary_id is None:
                    key.primary_id = version.id
            self._commit()
            return self._version_pb(key, version)

    def ImportCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.parent)
        job_ring = names.import_job(req.import_job).parent
        if not req.algorithm:
            raise invalid("algorithm is required.")
        wrapped = req.wrapped_key or req.rsa_aes_wrapped_key
        if not wrapped:
            raise invalid("wrapped_key is required.")
        target_id = self._import_target(req.parent, req.crypto_key_version)
        permission = "cloudkms.cryptoKeyVersions.update" if target_id else "cloudkms.cryptoKeyVersions.create"
        with self._lock:
            self._require(principal, "cloudkms.importJobs.useToImport", job_ring)
            self._require(principal, permission, req.parent)
            now = self._tick()
            key = self._key(req.parent)
            job = self._import_job(req.import_job)
            _check_algorithm(key.purpose, req.algorithm)
            job_state = self._job_state(job, now)
            if job_state != JobState.ACTIVE or job.material is None:
                raise precondition(
                    f"{req.import_job} is not active, current state is: {JobState(job_state).name}."
                )
            if job.protection_level != key.protection_level:
                raise precondition(
                    f"The ImportJob's protection level {Protection(job.protection_level).name} does not "
                    f"match the CryptoKey's {Protection(key.protection_level).name}."
                )
            if target_id is not None:
                self._check_reimport(key, target_id, req.crypto_key_version, req.algorithm, trusted=False)
            method, wrapping_key = job.import_method, job.material
        # Unwrapping (RSA, HPKE) happens outside the lock.
        unwrapped = self._unwrapped(req.algorithm, lambda: algorithms.unwrap(method, wrapping_key, wrapped))
        return self._record_import(
            req.parent, target_id, req.crypto_key_version, req.algorithm, unwrapped, req.import_job
        )

    # ----------------------------------------------------------------- trusted key wrapping

    def _trusted_wrapping_key(self, name: str, principal: str | None) -> bytes:
        """The material of an ENABLED, hsm_trusted AES_256_KWP version (``name`` may name its key:
        then its newest ENABLED version, since AES_WRAPPING keys have no primary)."""
        if names.kind_of(name) == "cryptoKey":
            key = self._key(name)
            enabled = [v for v in key.versions.values() if v.state == State.ENABLED]
            if not enabled:
                raise precondition(f"{name} has no ENABLED version to wrap with.")
            version = max(enabled, key=lambda v: v.id)
        else:
            key, version = self._version(name)
        self._require(principal, "cloudkms.cryptoKeyVersions.trustedImportExport", key.name)
        if not _hsm_trusted(key):
            raise precondition(f"{name} is not a trusted wrapping key (AES_WRAPPING at HSM_SINGLE_TENANT).")
        if version.state != State.ENABLED or version.material is None:
            raise precondition(f"{key.name}/cryptoKeyVersions/{version.id} is {_state_name(version.state)}.")
        return version.material

    def ExportTrustedKeyWrappedCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.version(req.name)
        if not req.wrapping_key:
            raise invalid("wrapping_key is required.")
        with self._lock:
            self._tick()
            key, version = self._version(req.name)
            self._require(principal, "cloudkms.cryptoKeyVersions.trustedImportExport", key.name)
            if not version.trusted_wrapping_enabled:
                raise precondition(f"{req.name} does not have trusted_wrapping_enabled.")
            if version.state != State.ENABLED or version.material is None:
                raise precondition(f"{req.name} is {_state_name(version.state)}.")
            material, wrapping = version.material, self._trusted_wrapping_key(req.wrapping_key, principal)
        wrapped = algorithms.trusted_wrap(wrapping, material)
        out = service.ExportTrustedKeyWrappedCryptoKeyVersionResponse.pb()(wrapped_key=wrapped)
        out.wrapped_key_crc32c.value = crc32c(wrapped)
        return out

    def ImportTrustedKeyWrappedCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.parent)
        if not req.algorithm:
            raise invalid("algorithm is required.")
        if not req.wrapped_key:
            raise invalid("wrapped_key is required.")
        if not req.importing_key:
            raise invalid("importing_key is required.")
        target_id = self._import_target(req.parent, req.crypto_key_version)
        permission = "cloudkms.cryptoKeyVersions.update" if target_id else "cloudkms.cryptoKeyVersions.create"
        with self._lock:
            self._require(principal, permission, req.parent)
            self._tick()
            key = self._key(req.parent)
            _check_algorithm(key.purpose, req.algorithm)
            _check_trusted_wrapping(key)
            if target_id is not None:
                self._check_reimport(key, target_id, req.crypto_key_version, req.algorithm, trusted=True)
            wrapping = self._trusted_wrapping_key(req.importing_key, principal)
        unwrapped = self._unwrapped(
            req.algorithm, lambda: algorithms.trusted_unwrap(wrapping, req.wrapped_key)
        )
        return self._record_import(
            req.parent, target_id, req.crypto_key_version, req.algorithm, unwrapped, None
        )

    # ----------------------------------------------------------------- delete, retired resources

    def _done_operation(self, location: str, metadata: Any) -> Any:
        """A completed long-running operation (Empty response), remembered for GetOperation."""
        op = operations_pb2.Operation(name=f"{location}/operations/{uuid.uuid4().hex}", done=True)
        op.metadata.Pack(metadata)
        op.response.Pack(empty_pb2.Empty())
        self._state.operations[op.name] = op.SerializeToString()
        return op

    def DeleteCryptoKeyVersion(self, req: Any, principal: str | None) -> Any:
        names.version(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeyVersions.delete", req.name)
            self._tick()
            key, version = self._version(req.name)
            if version.state not in (State.DESTROYED, State.IMPORT_FAILED, State.GENERATION_FAILED):
                raise precondition(
                    f"{req.name} is {_state_name(version.state)}; only DESTROYED, IMPORT_FAILED or "
                    "GENERATION_FAILED versions can be deleted."
                )
            if version.import_fingerprint is not None:
                raise precondition(
                    f"{req.name} was successfully imported; imported versions cannot be deleted."
                )
            del key.versions[version.id]
            if key.primary_id == version.id:
                key.primary_id = None
            location = names.key_ring(names.crypto_key(key.name).parent).parent
            op = self._done_operation(location, service.DeleteCryptoKeyVersionMetadata.pb()())
            self._commit()
            return op

    def DeleteCryptoKey(self, req: Any, principal: str | None) -> Any:
        names.crypto_key(req.name)
        with self._lock:
            self._require(principal, "cloudkms.cryptoKeys.delete", req.name)
            now = self._tick()
            key = self._key(req.name)
            if key.versions:
                raise precondition(
                    f"{req.name} still has {len(key.versions)} CryptoKeyVersion(s); delete every version "
                    "(DeleteCryptoKeyVersion) before the key."
                )
            location = names.key_ring(names.crypto_key(key.name).parent).parent
            retired = st.RetiredResource(
                name=f"{location}/retiredResources/{uuid.uuid4().hex}",
                original_resource=key.name,
                resource_type="cloudkms.googleapis.com/CryptoKey",
                delete_time=now,
            )
            self._state.retired_resources[retired.name] = retired
            del self._state.crypto_keys[key.name]
            op = self._done_operation(
                location, service.DeleteCryptoKeyMetadata.pb()(retired_resource=retired.name)
            )
            self._commit()
            return op

    @staticmethod
    def _retired_pb(retired: st.RetiredResource) -> Any:
        return resources.RetiredResource.pb()(
            name=retired.name,
            original_resource=retired.original_resource,
            resource_type=retired.resource_type,
            delete_time=_ts(retired.delete_time),
        )

    def ListRetiredResources(self, req: Any, principal: str | None) -> Any:
        parent = names.location(req.parent)
        with self._lock:
            self._require(principal, "cloudkms.retiredResources.list", None)
            self._tick()
            retired = [
                r
                for name, r in sorted(self._state.retired_resources.items())
                if names.retired_resource(name).parent == parent
            ]
            page, token = self._page(retired, req.page_size, req.page_token)
            return service.ListRetiredResourcesResponse.pb()(
                retired_resources=[self._retired_pb(r) for r in page],
                next_page_token=token,
                total_size=len(retired),
            )

    def GetRetiredResource(self, req: Any, principal: str | None) -> Any:
        names.retired_resource(req.name)
        with self._lock:
            self._require(principal, "cloudkms.retiredResources.get", None)
            self._tick()
            retired = self._state.retired_resources.get(req.name)
            if retired is None:
                raise not_found(req.name)
            return self._retired_pb(retired)

    def GetOperation(self, req: Any, principal: str | None) -> Any:
        names.operation(req.name)
        with self._lock:
            self._require(principal, "cloudkms.operations.get", None)
            raw = self._state.operations.get(req.name)
            if raw is None:
                raise not_found(req.name)
            return operations_pb2.Operation.FromString(raw)

    # ----------------------------------------------------------------- google.cloud.location

    @staticmethod
    def _location_pb(name: str) -> Any:
        metadata = any_pb2.Any()
        metadata.Pack(service.LocationMetadata.pb()(hsm_available=True, ekm_available=False))
        return locations_pb2.Location(name=name, location_id=name.rsplit("/", 1)[1], metadata=metadata)

    def ListLocations(self, req: Any, principal: str | None) -> Any:
        project = names.project(req.name)
        match = compile_filter(req.filter)
        with self._lock:
            self._require(principal, "cloudkms.locations.list", None)
            self._tick()
            in_use = {names.key_ring(ring).parent for ring in self._state.key_rings}
        known = {f"{project}/locations/{loc}" for loc in DEFAULT_LOCATIONS}
        known |= {loc for loc in in_use if loc.startswith(project + "/locations/")}
        listed = [n for n in sorted(known) if match({"name": n, "location_id": n.rsplit("/", 1)[1]})]
        page, token = self._page(listed, req.page_size, req.page_token)
        return locations_pb2.ListLocationsResponse(
            locations=[self._location_pb(n) for n in page], next_page_token=token
        )

    def GetLocation(self, req: Any, principal: str | None) -> Any:
        """Any well-formed location: the emulator creates key rings in any location id."""
        names.location(req.name)
        with self._lock:
            self._require(principal, "cloudkms.locations.get", None)
            self._tick()
        return self._location_pb(req.name)

    # ----------------------------------------------------------------- IAM policy RPCs

    def _policy_holder(self, resource: str) -> tuple[str, st.KeyRing | st.CryptoKey]:
        kind = names.kind_of(resource)
        if kind == "keyRing":
            return "keyRings", self._key_ring(resource)
        if kind == "cryptoKey":
            return "cryptoKeys", self._key(resource)
        raise invalid(f"IAM policies attach to key rings and crypto keys, not {resource}.")

    @staticmethod
    def _policy_pb(policy: st.Policy) -> Any:
        return policy_pb2.Policy(
            version=policy.version,
            etag=policy.etag.encode(),
            bindings=[policy_pb2.Binding(role=b.role, members=b.members) for b in policy.bindings],
        )

    def GetIamPolicy(self, req: Any, principal: str | None) -> Any:
        with self._lock:
            kind = names.kind_of(req.resource)
            self._require(principal, f"cloudkms.{kind}s.getIamPolicy", req.resource)
            self._tick()
            _, holder = self._policy_holder(req.resource)
            if not holder.policy.etag:
                holder.policy.etag = base64.b64encode(os.urandom(8)).decode()
                # Persist the etag just handed out, so a read-modify-write spanning a restart
                # is not refused as a concurrent change.
                self._commit()
            return self._policy_pb(holder.policy)

    def SetIamPolicy(self, req: Any, principal: str | None) -> Any:
        for binding in req.policy.bindings:
            problem = iam.check_role(binding.role)
            if problem:
                raise invalid(problem)
            if not binding.members:
                raise invalid(f"Binding for {binding.role} has no members.")
        with self._lock:
            kind = names.kind_of(req.resource)
            self._require(principal, f"cloudkms.{kind}s.setIamPolicy", req.resource)
            self._tick()
            _, holder = self._policy_holder(req.resource)
            if req.policy.etag and req.policy.etag.decode() != holder.policy.etag:
                raise EmulatorError(
                    grpc.StatusCode.ABORTED,
                    "There were concurrent policy changes. Please retry the whole "
                    "read-modify-write with exponential backoff.",
                )
            holder.policy = st.Policy(
                bindings=[
                    st.Binding(role=b.role, members=sorted(set(b.members))) for b in req.policy.bindings
                ],
                etag=base64.b64encode(os.urandom(8)).decode(),
                version=req.policy.version or 1,
            )
            self._commit()
            return self._policy_pb(holder.policy)

    def TestIamPermissions(self, req: Any, principal: str | None) -> Any:
        with self._lock:
            self._tick()
            self._policy_holder(req.resource)
            held = self._permissions(principal, req.resource)
            return iam_policy_pb2.TestIamPermissionsResponse(
                permissions=[p for p in req.permissions if p in held]
            )


KMS_METHODS: dict[str, tuple[Any, Callable[..., Any]]] = {}
"""RPC name → (raw request class, unbound backend method); filled below."""

for _rpc in (
    "CreateKeyRing",
    "GetKeyRing",
    "ListKeyRings",
    "CreateCryptoKey",
    "GetCryptoKey",
    "ListCryptoKeys",
    "UpdateCryptoKey",
    "UpdateCryptoKeyPrimaryVersion",
    "CreateCryptoKeyVersion",
    "GetCryptoKeyVersion",
    "ListCryptoKeyVersions",
    "UpdateCryptoKeyVersion",
    "DestroyCryptoKeyVersion",
    "RestoreCryptoKeyVersion",
    "Encrypt",
    "Decrypt",
    "GenerateRandomBytes",
    "GetPublicKey",
    "AsymmetricSign",
    "AsymmetricDecrypt",
    "Decapsulate",
    "MacSign",
    "MacVerify",
    "RawEncrypt",
    "RawDecrypt",
    "CreateImportJob",
    "GetImportJob",
    "ListImportJobs",
    "ImportCryptoKeyVersion",
    "ExportTrustedKeyWrappedCryptoKeyVersion",
    "ImportTrustedKeyWrappedCryptoKeyVersion",
    "DeleteCryptoKey",
    "DeleteCryptoKeyVersion",
    "ListRetiredResources",
    "GetRetiredResource",
):
    KMS_METHODS[_rpc] = (getattr(service, f"{_rpc}Request").pb(), getattr(Backend, _rpc))

IAM_METHODS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "GetIamPolicy": (iam_policy_pb2.GetIamPolicyRequest, Backend.GetIamPolicy),
    "SetIamPolicy": (iam_policy_pb2.SetIamPolicyRequest, Backend.SetIamPolicy),
    "TestIamPermissions": (iam_policy_pb2.TestIamPermissionsRequest, Backend.TestIamPermissions),
}

LOCATIONS_METHODS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "ListLocations": (locations_pb2.ListLocationsRequest, Backend.ListLocations),
    "GetLocation": (locations_pb2.GetLocationRequest, Backend.GetLocation),
}

OPERATIONS_METHODS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "GetOperation": (operations_pb2.GetOperationRequest, Backend.GetOperation),
}
