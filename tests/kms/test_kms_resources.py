"""kmsflow.kms.resources against the real emulator: idempotent ensure, versions, guards, IAM refusal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from kmsflow.kms import iam as kiam
from kmsflow.kms.errors import (
    ImmutableFieldError,
    KeyVersionUnavailableError,
    KmsGuardError,
    KmsInvalidArgumentError,
    KmsNotFoundError,
    KmsPermissionError,
)
from kmsflow.kms.resources import (
    VersionState,
    destroy_version,
    disable_version,
    enable_version,
    ensure_crypto_key,
    ensure_key_ring,
    get_key,
    get_version,
    list_versions,
    restore_version,
    rotate,
    set_primary,
)

LOCATION = "projects/kmsflow-test/locations/us-central1"  # as in tests/conftest.py
OWNER = "user:owner@example.com"  # the owner tests/conftest.py starts iam_emulator with
DAY = timedelta(days=1)
VIEWER = "user:viewer@example.com"


@pytest.fixture
def owner(iam_emulator):  # type: ignore[no-untyped-def]
    return iam_emulator.client(OWNER)


@pytest.fixture
def ring(owner, ring_id):  # type: ignore[no-untyped-def]
    ring, created = ensure_key_ring(owner, LOCATION, ring_id)
    assert created
    return ring.name


# ----------------------------------------------------------------------------- key rings


def test_ensure_key_ring_creates_then_reports_existing(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    first, created = ensure_key_ring(owner, LOCATION, ring_id)
    again, created_again = ensure_key_ring(owner, LOCATION, ring_id)
    assert (created, created_again) == (True, False)
    assert first.name == again.name == f"{LOCATION}/keyRings/{ring_id}"


def test_ensure_key_ring_concurrent_creators_agree(owner, ring_id) -> None:  # type: ignore[no-untyped-def]
    """Racing creators: exactly one creates, the rest resolve ALREADY_EXISTS by reading it."""
    barrier = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(ensure_key_ring(owner, LOCATION, ring_id)[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]


def test_ensure_key_ring_without_permission_is_typed(iam_emulator, ring_id) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KmsPermissionError, match="keyRings"):
        ensure_key_ring(iam_emulator.client(VIEWER), LOCATION, ring_id)


# ----------------------------------------------------------------------------- crypto keys


def test_ensure_crypto_key_creates_seed_key_then_is_a_no_op(owner, ring) -> None:  # type: ignore[no-untyped-def]
    before = datetime.now(UTC)
    key, changed = ensure_crypto_key(
        owner, ring, "ai-crypto-key", rotation_period=timedelta(days=90), labels={"app": "ai"}
    )
    assert changed == ["created"]
    assert key.name == f"{ring}/cryptoKeys/ai-crypto-key"
    assert key.purpose.name == "ENCRYPT_DECRYPT"
    assert key.version_template.algorithm.name == "GOOGLE_SYMMETRIC_ENCRYPTION"
    assert key.version_template.protection_level.name == "SOFTWARE"
    assert key.rotation_period == timedelta(days=90)
    next_time = key.next_rotation_time
    assert before + timedelta(days=90) - timedelta(seconds=5) <= next_time
    assert next_time <= datetime.now(UTC) + timedelta(days=90)
    assert key.primary.name.endswith("/cryptoKeyVersions/1")

    again, changed_again = ensure_crypto_key(
        owner, ring, "ai-crypto-key", rotation_period=timedelta(days=90), labels={"app": "ai"}
    )
    assert changed_again == []
    assert again.next_rotation_time == key.next_rotation_time


def test_ensure_crypto_key_updates_only_what_differs(owner, ring) -> None:  # type: ignore[no-untyped-def]
    ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=30), labels={"a": "1"})
    key, changed = ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=90), labels={"a": "1"})
    assert changed == ["rotation_period"]
    assert key.rotation_period == timedelta(days=90)

    key, changed = ensure_crypto_key(
        owner, ring, "k", rotation_period=timedelta(days=90), labels={"a": "2", "b": "x"}
    )
    assert changed == ["labels"]
    assert dict(key.labels) == {"a": "2", "b": "x"}

    wanted_next = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    key, changed = ensure_crypto_key(
        owner,
        ring,
        "k",
        rotation_period=timedelta(days=90),
        next_rotation_time=wanted_next,
        labels={"a": "2", "b": "x"},
    )
    assert changed == ["next_rotation_time"]
    assert key.next_rotation_time == wanted_next

    # labels=None means "not managed": the live labels are accepted as they are.
    _, changed = ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=90))
    assert changed == []


def test_ensure_crypto_key_rotation_none_clears_the_schedule(owner, ring) -> None:  # type: ignore[no-untyped-def]
    ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=7))
    key, changed = ensure_crypto_key(owner, ring, "k", rotation_period=None)
    assert changed == ["rotation_period", "next_rotation_time"]
    assert "rotation_period" not in key and "next_rotation_time" not in key
    _, changed = ensure_crypto_key(owner, ring, "k")
    assert changed == []
    # Starting a schedule again sets a first rotation time (KMS requires one).
    key, changed = ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(days=7))
    assert changed == ["rotation_period", "next_rotation_time"]
    assert key.next_rotation_time > datetime.now(UTC) + timedelta(days=6)


@pytest.mark.parametrize(
    ("kwargs", "field", "current", "wanted"),
    [
        ({"protection_level": "HSM"}, "protection_level", "SOFTWARE", "HSM"),
        (
            {"destroy_scheduled_duration": timedelta(days=7)},
            "destroy_scheduled_duration",
            timedelta(days=30),
            timedelta(days=7),
        ),
    ],
)
def test_ensure_crypto_key_refuses_immutable_changes(  # type: ignore[no-untyped-def]
    owner, ring, kwargs, field, current, wanted
) -> None:
    created, _ = ensure_crypto_key(
        owner, ring, "k", rotation_period=DAY * 90, destroy_scheduled_duration=timedelta(days=30)
    )
    with pytest.raises(ImmutableFieldError) as info:
        ensure_crypto_key(owner, ring, "k", rotation_period=DAY * 90, **kwargs)
    error = info.value
    assert (error.field, error.current, error.wanted) == (field, current, wanted)
    assert field in str(error) and str(wanted) in str(error)
    # Nothing was written: the key is exactly as it was.
    assert get_key(owner, created.name) == created


def test_ensure_crypto_key_reports_every_immutable_conflict(owner, ring) -> None:  # type: ignore[no-untyped-def]
    ensure_crypto_key(owner, ring, "k")
    with pytest.raises(ImmutableFieldError) as info:
        ensure_crypto_key(owner, ring, "k", protection_level="HSM", destroy_scheduled_duration=DAY * 2)
    assert [c.field for c in info.value.conflicts] == [
        "protection_level",
        "destroy_scheduled_duration",
    ]


def test_ensure_crypto_key_rejects_unknown_enum_names(owner, ring) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown protection_level 'SOFT'"):
        ensure_crypto_key(owner, ring, "k", protection_level="SOFT")


def test_ensure_crypto_key_kms_rejections_are_typed(owner, ring) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KmsInvalidArgumentError, match="at least 24 hours"):
        ensure_crypto_key(owner, ring, "k", rotation_period=timedelta(hours=1))
    with pytest.raises(KmsNotFoundError):
        ensure_crypto_key(owner, f"{LOCATION}/keyRings/no-such-ring-x", "k")


def test_ensure_crypto_key_concurrent_creators_agree(owner, ring) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(6)
    results: list[list[str]] = []

    def run() -> None:
        barrier.wait()
        results.append(ensure_crypto_key(owner, ring, "k", rotation_period=DAY * 90)[1])

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [[]] * 5 + [["created"]]
    assert len(list_versions(owner, f"{ring}/cryptoKeys/k")) == 1


def test_automatic_rotation_is_not_drift(fresh_emulator, ring_id) -> None:  # type: ignore[no-untyped-def]
    """KMS moves next_rotation_time itself; re-ensuring the same period must not fight it."""
    client = fresh_emulator.client()
    ring, _ = ensure_key_ring(client, LOCATION, ring_id)
    key, _ = ensure_crypto_key(client, ring, "k", rotation_period=DAY)
    fresh_emulator.admin.advance(2.5 * 86400)
    rotated = get_key(client, key.name)
    assert rotated.primary.name.endswith("/3")
    assert rotated.next_rotation_time > key.next_rotation_time
    _, changed = ensure_crypto_key(client, ring, "k", rotation_period=DAY)
    assert changed == []


# ----------------------------------------------------------------------------- versions


def _key(owner, ring) -> str:  # type: ignore[no-untyped-def]
    return ensure_crypto_key(owner, ring, "k", rotation_period=DAY * 90)[0].name


def test_rotate_and_set_primary(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    new = rotate(owner, key)
    assert new.name == f"{key}/cryptoKeyVersions/2"
    assert new.state == VersionState.ENABLED
    assert get_key(owner, key).primary.name == new.name
    back = set_primary(owner, key, 1)
    assert back.name == f"{key}/cryptoKeyVersions/1"
    assert get_key(owner, key).primary.name == back.name
    # Older versions stay ENABLED after rotation: nothing wrapped under them breaks.
    assert [v.state for v in list_versions(owner, key)] == [VersionState.ENABLED] * 2


def test_set_primary_refuses_a_disabled_version(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    rotate(owner, key)
    disable_version(owner, f"{key}/cryptoKeyVersions/1")
    with pytest.raises(KeyVersionUnavailableError, match="not enabled"):
        set_primary(owner, key, "1")


def test_guards_refuse_to_disable_or_destroy_the_primary(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    primary = get_key(owner, key).primary.name
    before = get_version(owner, primary)
    with pytest.raises(KmsGuardError, match="primary"):
        disable_version(owner, primary)
    with pytest.raises(KmsGuardError, match="primary"):
        destroy_version(owner, primary)
    assert get_version(owner, primary) == before
    assert get_key(owner, key).primary.name == primary


def test_disable_enable_destroy_restore_cycle(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    rotate(owner, key)
    old = f"{key}/cryptoKeyVersions/1"
    assert disable_version(owner, old).state == VersionState.DISABLED
    assert disable_version(owner, old).state == VersionState.DISABLED  # idempotent
    assert enable_version(owner, old).state == VersionState.ENABLED
    assert enable_version(owner, old).state == VersionState.ENABLED  # idempotent
    scheduled = destroy_version(owner, old)
    assert scheduled.state == VersionState.DESTROY_SCHEDULED
    assert scheduled.destroy_time is not None
    assert destroy_version(owner, old).destroy_time == scheduled.destroy_time  # idempotent
    restored = restore_version(owner, old)
    assert restored.state == VersionState.DISABLED
    assert restore_version(owner, old).state == VersionState.DISABLED  # nothing to restore
    destroy_version(owner, old)
    assert restore_version(owner, old, enable=True).state == VersionState.ENABLED


def test_restore_within_the_window_then_destroyed_for_good(fresh_emulator, ring_id) -> None:  # type: ignore[no-untyped-def]
    client = fresh_emulator.client()
    ring, _ = ensure_key_ring(client, LOCATION, ring_id)
    key, _ = ensure_crypto_key(client, ring, "k", destroy_scheduled_duration=DAY)
    rotate(client, key.name)
    old = f"{key.name}/cryptoKeyVersions/1"
    destroy_version(client, old)
    fresh_emulator.admin.advance(12 * 3600)  # half the window: still restorable
    assert restore_version(client, old, enable=True).state == VersionState.ENABLED

    destroy_version(client, old)
    fresh_emulator.admin.advance(25 * 3600)  # past the window: KMS destroys the material
    assert get_version(client, old).state == VersionState.DESTROYED
    with pytest.raises(KeyVersionUnavailableError, match="DESTROYED"):
        restore_version(client, old)
    assert destroy_version(client, old).state == VersionState.DESTROYED  # idempotent


def test_version_operations_on_missing_versions_are_typed(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    with pytest.raises(KmsNotFoundError):
        enable_version(owner, f"{key}/cryptoKeyVersions/99")
    with pytest.raises(KmsNotFoundError):
        get_key(owner, f"{ring}/cryptoKeys/nope")


def test_list_versions_filters_by_state_and_reads_every_page(owner, ring) -> None:  # type: ignore[no-untyped-def]
    key = _key(owner, ring)
    for _ in range(6):
        rotate(owner, key)
    disable_version(owner, f"{key}/cryptoKeyVersions/2")
    disable_version(owner, f"{key}/cryptoKeyVersions/4")
    destroy_version(owner, f"{key}/cryptoKeyVersions/5")

    every = list_versions(owner, key, page_size=2)
    assert [v.name.rsplit("/", 1)[1] for v in every] == ["1", "2", "3", "4", "5", "6", "7"]
    disabled = list_versions(owner, key, states=["DISABLED"], page_size=1)
    assert [v.name.rsplit("/", 1)[1] for v in disabled] == ["2", "4"]
    live = list_versions(owner, key, states=[VersionState.ENABLED, "disabled"], page_size=2)
    assert [v.name.rsplit("/", 1)[1] for v in live] == ["1", "2", "3", "4", "6", "7"]
    assert list_versions(owner, key, states=[]) == []


def test_callers_without_permission_get_typed_errors_and_change_nothing(  # type: ignore[no-untyped-def]
    iam_emulator, owner, ring
) -> None:
    key = _key(owner, ring)
    rotate(owner, key)
    kiam.grant(owner, ring, kiam.VIEWER_ROLE, VIEWER)
    viewer = iam_emulator.client(VIEWER)
    assert get_key(viewer, key).name == key  # reading is allowed
    with pytest.raises(KmsPermissionError):
        rotate(viewer, key)
    with pytest.raises(KmsPermissionError):
        ensure_crypto_key(viewer, ring, "k", rotation_period=DAY * 30)
    with pytest.raises(KmsPermissionError):
        destroy_version(viewer, f"{key}/cryptoKeyVersions/1")
    assert get_key(owner, key).rotation_period == DAY * 90
    assert [v.state for v in list_versions(owner, key)] == [VersionState.ENABLED] * 2


def test_ensure_when_nothing_differs_needs_only_read_access(iam_emulator, owner, ring) -> None:  # type: ignore[no-untyped-def]
    """Proof that "already as wanted" makes no mutating call: a read-only viewer gets through."""
    key, _ = ensure_crypto_key(owner, ring, "k", rotation_period=DAY * 90, labels={"a": "b"})
    kiam.grant(owner, ring, kiam.VIEWER_ROLE, VIEWER)
    viewer = iam_emulator.client(VIEWER)
    ring_id = ring.rsplit("/", 1)[1]
    assert ensure_key_ring(viewer, LOCATION, ring_id)[1] is False
    same, changed = ensure_crypto_key(viewer, ring, "k", rotation_period=DAY * 90, labels={"a": "b"})
    assert changed == [] and same == key
    with pytest.raises(KmsPermissionError):  # ...while a real difference needs update rights
        ensure_crypto_key(viewer, ring, "k", rotation_period=DAY * 90, labels={"a": "c"})
