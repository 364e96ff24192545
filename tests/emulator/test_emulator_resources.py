"""Key rings, crypto keys and versions through the real client: CRUD, masks, filters, paging, errors."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1

State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
Algorithm = kms_v1.CryptoKeyVersion.CryptoKeyVersionAlgorithm
Protection = kms_v1.ProtectionLevel
DAY = 86400


def version_ids(versions: Any) -> list[int]:
    return [int(v.name.rsplit("/", 1)[1]) for v in versions]


def set_state(kms: kms_v1.KeyManagementServiceClient, name: str, state: Any) -> kms_v1.CryptoKeyVersion:
    return kms.update_crypto_key_version(
        request={"crypto_key_version": {"name": name, "state": state}, "update_mask": {"paths": ["state"]}}
    )


# ----------------------------------------------------------------------------- key rings


def test_key_ring_create_get_list(
    kms: kms_v1.KeyManagementServiceClient, location: str, ring_id: str, emulator: Any
) -> None:
    before = emulator.admin.now()
    created = kms.create_key_ring(request={"parent": location, "key_ring_id": ring_id, "key_ring": {}})
    assert created.name == f"{location}/keyRings/{ring_id}"
    assert before - 1 <= created.create_time.timestamp() <= emulator.admin.now() + 1

    got = kms.get_key_ring(name=created.name)
    assert got.name == created.name
    assert got.create_time == created.create_time

    listed = [r.name for r in kms.list_key_rings(request={"parent": location})]
    assert created.name in listed
    assert listed == sorted(listed)
    only = list(kms.list_key_rings(request={"parent": location, "filter": f"name={created.name}"}))
    assert [r.name for r in only] == [created.name]


def test_key_rings_are_listed_per_location(kms: kms_v1.KeyManagementServiceClient, ring_id: str) -> None:
    other = f"projects/other-{ring_id}/locations/europe-west1"  # unique: the emulator is shared
    name = kms.create_key_ring(request={"parent": other, "key_ring_id": ring_id, "key_ring": {}}).name
    assert [r.name for r in kms.list_key_rings(request={"parent": other})] == [name]


def test_key_ring_errors(kms: kms_v1.KeyManagementServiceClient, location: str, ring: str) -> None:
    ring_id = ring.rsplit("/", 1)[1]
    with pytest.raises(exceptions.AlreadyExists):
        kms.create_key_ring(request={"parent": location, "key_ring_id": ring_id, "key_ring": {}})
    with pytest.raises(exceptions.NotFound):
        kms.get_key_ring(name=f"{location}/keyRings/no-such-ring-{ring_id}")
    for bad in ("bad id!", "x" * 64, "", "a/b"):
        with pytest.raises(exceptions.InvalidArgument):
            kms.create_key_ring(request={"parent": location, "key_ring_id": bad, "key_ring": {}})
    with pytest.raises(exceptions.InvalidArgument):
        kms.create_key_ring(request={"parent": "projects/p", "key_ring_id": ring_id + "z", "key_ring": {}})
    for malformed in ("projects/p/keyRings/r", f"{location}/keyRings/bad id", "keyRings/r", ""):
        with pytest.raises(exceptions.InvalidArgument):
            kms.get_key_ring(name=malformed)
    # 63 characters is the longest valid id (in a location of its own: the emulator is shared).
    edge = "y" * 63
    made = kms.create_key_ring(
        request={"parent": f"projects/edge-{ring_id}/locations/l", "key_ring_id": edge, "key_ring": {}}
    )
    assert made.name.endswith("/" + edge)


# ----------------------------------------------------------------------------- crypto keys


def test_crypto_key_create_has_enabled_primary(
    kms: kms_v1.KeyManagementServiceClient, ring: str, new_key: Callable[..., kms_v1.CryptoKey]
) -> None:
    key = new_key(kms, ring, "key", labels={"team": "ml"})
    assert key.name == f"{ring}/cryptoKeys/key"
    assert key.purpose == kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT
    assert key.primary.name == f"{key.name}/cryptoKeyVersions/1"
    assert key.primary.state == State.ENABLED
    assert key.primary.algorithm == Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert key.version_template.algorithm == Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert key.version_template.protection_level == Protection.SOFTWARE
    assert key.destroy_scheduled_duration == dt.timedelta(days=30)
    assert dict(key.labels) == {"team": "ml"}
    assert not key.rotation_period

    got = kms.get_crypto_key(name=key.name)
    assert got == key
    versions = list(kms.list_crypto_key_versions(request={"parent": key.name}))
    assert version_ids(versions) == [1]


def test_crypto_key_skip_initial_version(
    kms: kms_v1.KeyManagementServiceClient, ring: str, new_key: Callable[..., kms_v1.CryptoKey]
) -> None:
    key = new_key(kms, ring, "empty", skip_initial_version_creation=True)
    assert not key.primary.name
    assert list(kms.list_crypto_key_versions(request={"parent": key.name})) == []
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(name=key.name, plaintext=b"no primary yet")
    version = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert version.name == f"{key.name}/cryptoKeyVersions/1"
    # A new version does not become primary by itself.
    assert not kms.get_crypto_key(name=key.name).primary.name
    kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
    assert kms.encrypt(name=key.name, plaintext=b"now").name == version.name


def test_crypto_key_hsm_and_list(
    kms: kms_v1.KeyManagementServiceClient, ring: str, new_key: Callable[..., kms_v1.CryptoKey]
) -> None:
    hsm = new_key(kms, ring, "hsm", version_template={"protection_level": Protection.HSM})
    assert hsm.version_template.protection_level == Protection.HSM
    assert hsm.primary.protection_level == Protection.HSM
    assert kms.encrypt(name=hsm.name, plaintext=b"x").protection_level == Protection.HSM
    for key_id in ("c", "a", "b"):
        new_key(kms, ring, key_id)
    listed = [k.name.rsplit("/", 1)[1] for k in kms.list_crypto_keys(request={"parent": ring})]
    assert listed == ["a", "b", "c", "hsm"]
    page = kms.list_crypto_keys(request={"parent": ring, "page_size": 3})
    first = next(iter(page.pages))
    assert [k.name.rsplit("/", 1)[1] for k in first.crypto_keys] == ["a", "b", "c"]
    assert first.next_page_token
    assert first.total_size == 4


def test_crypto_key_create_errors(
    kms: kms_v1.KeyManagementServiceClient,
    ring: str,
    location: str,
    new_key: Callable[..., kms_v1.CryptoKey],
    emulator: Any,
) -> None:
    new_key(kms, ring, "dup")
    with pytest.raises(exceptions.AlreadyExists):
        new_key(kms, ring, "dup")
    with pytest.raises(exceptions.NotFound):
        new_key(kms, f"{location}/keyRings/missing-{ring.rsplit('/', 1)[1]}", "k")
    for bad in ("bad id!", "k" * 64, ""):
        with pytest.raises(exceptions.InvalidArgument):
            new_key(kms, ring, bad)
    assert new_key(kms, ring, "k" * 63).name.endswith("/" + "k" * 63)

    soon = {"seconds": int(emulator.admin.now()) + DAY}
    with pytest.raises(exceptions.InvalidArgument, match="24 hours"):
        new_key(kms, ring, "short", rotation_period={"seconds": DAY - 1}, next_rotation_time=soon)
    with pytest.raises(exceptions.InvalidArgument, match="next_rotation_time"):
        new_key(kms, ring, "no-next", rotation_period={"seconds": DAY})
    with pytest.raises(exceptions.InvalidArgument):
        new_key(kms, ring, "sign", purpose=kms_v1.CryptoKey.CryptoKeyPurpose.ASYMMETRIC_SIGN)
    with pytest.raises(exceptions.InvalidArgument):
        new_key(kms, ring, "rsa", version_template={"algorithm": Algorithm.RSA_SIGN_PSS_2048_SHA256})
    with pytest.raises(exceptions.InvalidArgument):
        new_key(kms, ring, "quick", destroy_scheduled_duration={"seconds": 3600})
    with pytest.raises(exceptions.InvalidArgument):
        new_key(kms, "projects/p/locations/l", "k")
    # None of the refused keys exists.
    listed = {k.name.rsplit("/", 1)[1] for k in kms.list_crypto_keys(request={"parent": ring})}
    assert listed == {"dup", "k" * 63}


def test_get_missing_and_malformed(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    ring = key.name.rsplit("/cryptoKeys/", 1)[0]
    with pytest.raises(exceptions.NotFound):
        kms.get_crypto_key(name=f"{ring}/cryptoKeys/missing")
    with pytest.raises(exceptions.NotFound):
        kms.get_crypto_key_version(name=f"{key.name}/cryptoKeyVersions/99")
    with pytest.raises(exceptions.NotFound):
        kms.list_crypto_key_versions(request={"parent": f"{ring}/cryptoKeys/missing"})
    with pytest.raises(exceptions.NotFound):
        kms.list_crypto_keys(request={"parent": ring + "-missing"})
    for malformed in (f"{key.name}/cryptoKeyVersions/0", f"{key.name}/cryptoKeyVersions/x", key.name):
        with pytest.raises(exceptions.InvalidArgument):
            kms.get_crypto_key_version(name=malformed)
    with pytest.raises(exceptions.InvalidArgument):
        kms.get_crypto_key(name=f"{ring}/keys/k")


# ----------------------------------------------------------------------------- UpdateCryptoKey


def test_update_crypto_key_honours_mask(
    kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey, emulator: Any
) -> None:
    next_time = int(emulator.admin.now()) + 7 * DAY
    wanted = {
        "name": key.name,
        "rotation_period": {"seconds": 7 * DAY},
        "next_rotation_time": {"seconds": next_time},
        "labels": {"env": "test"},
    }
    # Only the masked field changes, though the message carries others.
    updated = kms.update_crypto_key(request={"crypto_key": wanted, "update_mask": {"paths": ["labels"]}})
    assert dict(updated.labels) == {"env": "test"}
    assert not updated.rotation_period
    assert not updated.next_rotation_time

    updated = kms.update_crypto_key(
        request={"crypto_key": wanted, "update_mask": {"paths": ["rotation_period", "next_rotation_time"]}}
    )
    assert updated.rotation_period == dt.timedelta(days=7)
    assert int(updated.next_rotation_time.timestamp()) == next_time
    assert kms.get_crypto_key(name=key.name) == updated

    # Labels are replaced as a whole; an unmasked rotation period is left alone.
    updated = kms.update_crypto_key(
        request={
            "crypto_key": {"name": key.name, "labels": {"owner": "ml"}},
            "update_mask": {"paths": ["labels"]},
        }
    )
    assert dict(updated.labels) == {"owner": "ml"}
    assert updated.rotation_period == dt.timedelta(days=7)

    # Masked but absent clears: rotation off.
    cleared = kms.update_crypto_key(
        request={
            "crypto_key": {"name": key.name},
            "update_mask": {"paths": ["rotation_period", "next_rotation_time"]},
        }
    )
    assert not cleared.rotation_period
    assert not cleared.next_rotation_time

    template = kms.update_crypto_key(
        request={
            "crypto_key": {
                "name": key.name,
                "version_template": {"algorithm": Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION},
            },
            "update_mask": {"paths": ["version_template"]},
        }
    )
    assert template.version_template.algorithm == Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert template.version_template.protection_level == Protection.SOFTWARE


def test_update_crypto_key_errors(
    kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey, emulator: Any
) -> None:
    def update(spec: dict[str, Any], paths: list[str]) -> kms_v1.CryptoKey:
        return kms.update_crypto_key(
            request={"crypto_key": {"name": key.name, **spec}, "update_mask": {"paths": paths}}
        )

    soon = {"seconds": int(emulator.admin.now()) + DAY}
    with pytest.raises(exceptions.InvalidArgument):
        update({"labels": {"a": "b"}}, [])
    with pytest.raises(exceptions.InvalidArgument):
        update({"labels": {"a": "b"}}, ["no_such_field"])
    with pytest.raises(exceptions.InvalidArgument):
        update({"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.MAC}, ["purpose"])
    with pytest.raises(exceptions.InvalidArgument):
        update({"labels": {"a": "b"}}, ["labels", "primary"])
    with pytest.raises(exceptions.InvalidArgument, match="24 hours"):
        update(
            {"rotation_period": {"seconds": 3600}, "next_rotation_time": soon},
            ["rotation_period", "next_rotation_time"],
        )
    with pytest.raises(exceptions.InvalidArgument, match="next_rotation_time"):
        update({"rotation_period": {"seconds": DAY}}, ["rotation_period"])
    with pytest.raises(exceptions.InvalidArgument):
        update({"version_template": {"algorithm": Algorithm.EC_SIGN_P256_SHA256}}, ["version_template"])
    with pytest.raises(exceptions.InvalidArgument):
        update({"version_template": {"protection_level": Protection.HSM}}, ["version_template"])
    with pytest.raises(exceptions.NotFound):
        kms.update_crypto_key(
            request={"crypto_key": {"name": key.name + "-gone"}, "update_mask": {"paths": ["labels"]}}
        )
    # Nothing above changed the key.
    assert kms.get_crypto_key(name=key.name) == key


def test_update_primary_version(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert v2.name == f"{key.name}/cryptoKeyVersions/2"
    assert kms.get_crypto_key(name=key.name).primary.name == key.primary.name

    updated = kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    assert updated.primary.name == v2.name
    assert kms.encrypt(name=key.name, plaintext=b"p").name == v2.name

    set_state(kms, key.primary.name, State.DISABLED)
    with pytest.raises(exceptions.FailedPrecondition):
        kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
    with pytest.raises(exceptions.NotFound):
        kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="7")
    with pytest.raises(exceptions.InvalidArgument):
        kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="one")
    assert kms.get_crypto_key(name=key.name).primary.name == v2.name


# ----------------------------------------------------------------------------- versions


def test_version_create_get_update(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    v2 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert v2.state == State.ENABLED
    assert v2.algorithm == Algorithm.GOOGLE_SYMMETRIC_ENCRYPTION
    assert v2.protection_level == Protection.SOFTWARE
    assert kms.get_crypto_key_version(name=v2.name) == v2

    v3 = kms.create_crypto_key_version(parent=key.name, crypto_key_version={"state": State.DISABLED})
    assert v3.name.endswith("/cryptoKeyVersions/3")
    assert v3.state == State.DISABLED

    assert set_state(kms, v2.name, State.DISABLED).state == State.DISABLED
    assert kms.get_crypto_key_version(name=v2.name).state == State.DISABLED
    assert set_state(kms, v2.name, State.ENABLED).state == State.ENABLED
    assert kms.get_crypto_key_version(name=v2.name).state == State.ENABLED

    with pytest.raises(exceptions.InvalidArgument):
        set_state(kms, v2.name, State.DESTROYED)
    with pytest.raises(exceptions.InvalidArgument):
        kms.update_crypto_key_version(
            request={
                "crypto_key_version": {"name": v2.name, "state": State.DISABLED},
                "update_mask": {"paths": ["algorithm"]},
            }
        )
    with pytest.raises(exceptions.InvalidArgument):
        kms.create_crypto_key_version(parent=key.name, crypto_key_version={"state": State.DESTROYED})
    with pytest.raises(exceptions.NotFound):
        kms.create_crypto_key_version(parent=key.name + "-gone", crypto_key_version={})
    with pytest.raises(exceptions.NotFound):
        set_state(kms, f"{key.name}/cryptoKeyVersions/42", State.DISABLED)


def test_destroy_and_restore(
    kms: kms_v1.KeyManagementServiceClient,
    ring: str,
    new_key: Callable[..., kms_v1.CryptoKey],
    emulator: Any,
) -> None:
    key = new_key(kms, ring, "default")
    before = emulator.admin.now()
    destroyed = kms.destroy_crypto_key_version(name=key.primary.name)
    after = emulator.admin.now()
    assert destroyed.state == State.DESTROY_SCHEDULED
    assert before + 30 * DAY - 0.01 <= destroyed.destroy_time.timestamp() <= after + 30 * DAY + 0.01
    assert not destroyed.destroy_event_time
    assert kms.get_crypto_key_version(name=key.primary.name).state == State.DESTROY_SCHEDULED
    with pytest.raises(exceptions.FailedPrecondition):
        kms.encrypt(name=key.name, plaintext=b"x")
    with pytest.raises(exceptions.FailedPrecondition):
        kms.destroy_crypto_key_version(name=key.primary.name)
    with pytest.raises(exceptions.FailedPrecondition):
        set_state(kms, key.primary.name, State.ENABLED)

    restored = kms.restore_crypto_key_version(name=key.primary.name)
    assert restored.state == State.DISABLED
    assert not restored.destroy_time
    with pytest.raises(exceptions.FailedPrecondition):
        kms.restore_crypto_key_version(name=key.primary.name)
    set_state(kms, key.primary.name, State.ENABLED)
    assert kms.encrypt(name=key.name, plaintext=b"x").name == key.primary.name

    # The key's own destroy_scheduled_duration decides destroy_time.
    short = new_key(kms, ring, "short", destroy_scheduled_duration={"seconds": 2 * DAY})
    assert short.destroy_scheduled_duration == dt.timedelta(days=2)
    before = emulator.admin.now()
    scheduled = kms.destroy_crypto_key_version(name=short.primary.name)
    after = emulator.admin.now()
    assert before + 2 * DAY - 0.01 <= scheduled.destroy_time.timestamp() <= after + 2 * DAY + 0.01

    with pytest.raises(exceptions.NotFound):
        kms.destroy_crypto_key_version(name=f"{short.name}/cryptoKeyVersions/5")
    with pytest.raises(exceptions.NotFound):
        kms.restore_crypto_key_version(name=f"{short.name}/cryptoKeyVersions/5")


def test_list_versions_filter_and_paging(
    kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey
) -> None:
    # 1 ENABLED, 2 DISABLED, 3 ENABLED, 4 DESTROY_SCHEDULED, 5 DISABLED, 6 ENABLED, 7 ENABLED
    for _ in range(6):
        kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    version = f"{key.name}/cryptoKeyVersions/"
    set_state(kms, version + "2", State.DISABLED)
    kms.destroy_crypto_key_version(name=version + "4")
    set_state(kms, version + "5", State.DISABLED)

    def listed(filter_: str = "", page_size: int = 0) -> list[int]:
        return version_ids(
            kms.list_crypto_key_versions(
                request={"parent": key.name, "filter": filter_, "page_size": page_size}
            )
        )

    assert listed() == [1, 2, 3, 4, 5, 6, 7]
    assert listed("state=ENABLED") == [1, 3, 6, 7]
    assert listed("state = DISABLED") == [2, 5]
    assert listed('state="DESTROY_SCHEDULED"') == [4]
    assert listed("state=ENABLED OR state=DISABLED") == [1, 2, 3, 5, 6, 7]
    assert listed("state!=ENABLED") == [2, 4, 5]
    assert listed("NOT state:DESTROY") == [1, 2, 3, 5, 6, 7]
    assert listed("state=DESTROYED") == []
    assert listed("state=ENABLED", page_size=3) == [1, 3, 6, 7]

    # Pages of two, followed by hand through next_page_token.
    pages: list[list[int]] = []
    token = ""
    while True:
        pager = kms.list_crypto_key_versions(
            request={"parent": key.name, "page_size": 2, "page_token": token}
        )
        response = next(iter(pager.pages))
        pages.append(version_ids(response.crypto_key_versions))
        assert response.total_size == 7
        token = response.next_page_token
        if not token:
            break
    assert pages == [[1, 2], [3, 4], [5, 6], [7]]

    pager = kms.list_crypto_key_versions(
        request={"parent": key.name, "page_size": 3, "filter": "state=ENABLED OR state=DISABLED"}
    )
    assert [version_ids(p.crypto_key_versions) for p in pager.pages] == [[1, 2, 3], [5, 6, 7]]

    for bad_filter in ("state", "colour=red", "state=ENABLED AND"):
        with pytest.raises(exceptions.InvalidArgument):
            listed(bad_filter)
    with pytest.raises(exceptions.InvalidArgument):
        kms.list_crypto_key_versions(request={"parent": key.name, "page_size": -1})
    for bad_token in ("not a token", base64.urlsafe_b64encode(b"-1").decode()):
        with pytest.raises(exceptions.InvalidArgument):
            kms.list_crypto_key_versions(request={"parent": key.name, "page_token": bad_token})
