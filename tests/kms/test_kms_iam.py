"""kmsflow.kms.iam against the IAM-enforcing emulator: grants, authority, drift, ABORTED retries."""

from __future__ import annotations

import pytest

from kmsflow.kms import crypto
from kmsflow.kms import iam as kiam
from kmsflow.kms.errors import KmsConflictError, KmsInvalidArgumentError, KmsPermissionError
from kmsflow.kms.resources import ensure_crypto_key, ensure_key_ring
from kmsflow_emulator.iam import ROLE_PERMISSIONS

LOCATION = "projects/kmsflow-test/locations/us-central1"  # as in tests/conftest.py
OWNER = "user:owner@example.com"  # the owner tests/conftest.py starts iam_emulator with
PRODUCER = "serviceAccount:producer@proj.iam.gserviceaccount.com"
CONSUMER = "serviceAccount:consumer@proj.iam.gserviceaccount.com"
ALICE = "user:alice@example.com"
BOB = "user:bob@example.com"


@pytest.fixture
def owner(iam_emulator):  # type: ignore[no-untyped-def]
    return iam_emulator.client(OWNER)


@pytest.fixture
def key(owner, ring_id) -> str:  # type: ignore[no-untyped-def]
    ring, _ = ensure_key_ring(owner, LOCATION, ring_id)
    return ensure_crypto_key(owner, ring, "k")[0].name


def _members(client, resource) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    return kiam.role_members(kiam.get_policy(client, resource))


def test_known_roles_match_what_the_emulator_enforces() -> None:
    assert frozenset(ROLE_PERMISSIONS) == kiam.KMS_ROLES
    assert kiam.PRODUCER_ROLE == "roles/cloudkms.cryptoKeyEncrypter"
    assert kiam.CONSUMER_ROLE == "roles/cloudkms.cryptoKeyDecrypter"


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("serviceAccount:a@p.iam.gserviceaccount.com", None),
        ("user:a@example.com", None),
        ("group:team@example.com", None),
        ("domain:example.com", None),
        ("alice@example.com", "not an IAM member"),
        ("robot:a@example.com", "not an IAM member"),
        ("user:alice", "not an email address"),
        ("domain:nodot", "not a domain name"),
        ("allUsers", "must never be public"),
        ("allAuthenticatedUsers", "must never be public"),
    ],
)
def test_member_problem(member: str, problem: str | None) -> None:
    found = kiam.member_problem(member)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_role_problem() -> None:
    assert kiam.role_problem("roles/cloudkms.admin") is None
    message = kiam.role_problem("roles/owner")
    assert message is not None and "roles/cloudkms.viewer" in message


def test_grant_is_idempotent_and_writes_only_on_change(owner, key) -> None:  # type: ignore[no-untyped-def]
    assert kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER]) is True
    etag = kiam.get_policy(owner, key).etag
    assert kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER]) is False
    assert kiam.get_policy(owner, key).etag == etag  # no SetIamPolicy happened
    assert kiam.grant(owner, key, kiam.PRODUCER_ROLE, PRODUCER) is False  # a lone string is a member
    assert _members(owner, key) == {kiam.PRODUCER_ROLE: {PRODUCER}}


def test_revoke_is_idempotent_and_drops_empty_bindings(owner, key) -> None:  # type: ignore[no-untyped-def]
    kiam.grant(owner, key, kiam.CONSUMER_ROLE, [CONSUMER, ALICE])
    assert kiam.revoke(owner, key, kiam.CONSUMER_ROLE, [ALICE]) is True
    assert _members(owner, key) == {kiam.CONSUMER_ROLE: {CONSUMER}}
    assert kiam.revoke(owner, key, kiam.CONSUMER_ROLE, [ALICE]) is False
    assert kiam.revoke(owner, key, kiam.CONSUMER_ROLE, [CONSUMER]) is True
    assert _members(owner, key) == {}
    assert kiam.revoke(owner, key, kiam.ADMIN_ROLE, [BOB]) is False


def test_least_privilege_roles_do_what_they_say(iam_emulator, owner, key) -> None:  # type: ignore[no-untyped-def]
    kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER])
    kiam.grant(owner, key, kiam.CONSUMER_ROLE, [CONSUMER])
    producer, consumer = iam_emulator.client(PRODUCER), iam_emulator.client(CONSUMER)
    wrapped = crypto.encrypt(producer, key, b"data key")
    assert crypto.decrypt(consumer, key, wrapped.ciphertext) == b"data key"
    with pytest.raises(KmsPermissionError):
        crypto.decrypt(producer, key, wrapped.ciphertext)
    with pytest.raises(KmsPermissionError):
        crypto.encrypt(consumer, key, b"x")
    kiam.revoke(owner, key, kiam.CONSUMER_ROLE, [CONSUMER])
    with pytest.raises(KmsPermissionError):
        crypto.decrypt(consumer, key, wrapped.ciphertext)


def test_set_role_members_is_authoritative_only_for_listed_roles(owner, key) -> None:  # type: ignore[no-untyped-def]
    kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER, ALICE])
    kiam.grant(owner, key, kiam.VIEWER_ROLE, [BOB])
    kiam.grant(owner, key, kiam.CONSUMER_ROLE, [CONSUMER])
    fixed = kiam.set_role_members(
        owner,
        key,
        {kiam.PRODUCER_ROLE: [PRODUCER]},
        authoritative_roles=[kiam.PRODUCER_ROLE, kiam.CONSUMER_ROLE],
    )
    assert fixed == [
        kiam.Drift(kiam.CONSUMER_ROLE, (), (CONSUMER,)),
        kiam.Drift(kiam.PRODUCER_ROLE, (), (ALICE,)),
    ]
    assert _members(owner, key) == {kiam.PRODUCER_ROLE: {PRODUCER}, kiam.VIEWER_ROLE: {BOB}}
    assert kiam.set_role_members(owner, key, {kiam.PRODUCER_ROLE: [PRODUCER]}) == []


def test_drift_reports_missing_and_unexpected_members(owner, key) -> None:  # type: ignore[no-untyped-def]
    kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER, ALICE])
    kiam.grant(owner, key, kiam.VIEWER_ROLE, [BOB])
    report = kiam.drift(
        owner,
        key,
        {kiam.PRODUCER_ROLE: [PRODUCER], kiam.CONSUMER_ROLE: [CONSUMER]},
    )
    assert report == [
        kiam.Drift(kiam.CONSUMER_ROLE, missing=(CONSUMER,)),
        kiam.Drift(kiam.PRODUCER_ROLE, unexpected=(ALICE,)),
    ]
    assert report[0].to_dict() == {
        "role": kiam.CONSUMER_ROLE,
        "missing": [CONSUMER],
        "unexpected": [],
    }
    assert kiam.drift(owner, key, {kiam.VIEWER_ROLE: [BOB]}) == []


def test_stale_etag_is_retried_and_keeps_the_concurrent_change(iam_emulator, owner, key) -> None:  # type: ignore[no-untyped-def]
    """A concurrent writer changes the policy between our read and write: ABORTED, re-read, retry."""
    other = iam_emulator.client(OWNER)
    calls: list[int] = []

    def concurrent_writer() -> None:
        calls.append(1)
        if len(calls) == 1:
            kiam.grant(other, key, kiam.VIEWER_ROLE, [BOB])

    assert kiam.grant(owner, key, kiam.PRODUCER_ROLE, [PRODUCER], before_write=concurrent_writer)
    assert len(calls) == 2  # first write was refused (stale etag), second succeeded
    assert _members(owner, key) == {kiam.PRODUCER_ROLE: {PRODUCER}, kiam.VIEWER_ROLE: {BOB}}


def test_persistent_conflict_gives_up_after_bounded_attempts(iam_emulator, owner, key) -> None:  # type: ignore[no-untyped-def]
    other = iam_emulator.client(OWNER)
    calls: list[int] = []

    def always_concurrent() -> None:
        calls.append(1)
        kiam.grant(other, key, kiam.VIEWER_ROLE, [f"user:u{len(calls)}@example.com"])

    kiam.grant(owner, key, kiam.VIEWER_ROLE, [ALICE])
    with pytest.raises(KmsConflictError, match="concurrent"):
        kiam.revoke(owner, key, kiam.VIEWER_ROLE, [ALICE], attempts=3, before_write=always_concurrent)
    assert len(calls) == 3
    assert ALICE in _members(owner, key)[kiam.VIEWER_ROLE]  # our change never landed half-way


def test_iam_refusals_are_typed(iam_emulator, owner, key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KmsInvalidArgumentError, match="not supported"):
        kiam.grant(owner, key, "roles/owner", [ALICE])
    kiam.grant(owner, key, kiam.VIEWER_ROLE, [ALICE])
    viewer = iam_emulator.client(ALICE)
    with pytest.raises(KmsPermissionError, match=r"(set|get)IamPolicy"):
        kiam.grant(viewer, key, kiam.ADMIN_ROLE, [ALICE])
    assert _members(owner, key) == {kiam.VIEWER_ROLE: {ALICE}}


def test_key_ring_policies_are_managed_the_same_way(owner, key) -> None:  # type: ignore[no-untyped-def]
    ring = key.rsplit("/cryptoKeys/", 1)[0]
    assert kiam.grant(owner, ring, kiam.ADMIN_ROLE, [ALICE]) is True
    assert kiam.drift(owner, ring, {kiam.ADMIN_ROLE: [ALICE]}) == []
    assert kiam.drift(owner, key, {kiam.ADMIN_ROLE: [ALICE]}) == [
        kiam.Drift(kiam.ADMIN_ROLE, missing=(ALICE,))
    ]  # a key's own policy; the ring's bindings are inherited, not copied
