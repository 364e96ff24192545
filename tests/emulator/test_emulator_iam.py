"""IAM: policies with etags on key rings and keys, and per-caller enforcement (``--enforce-iam``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1
from google.iam.v1 import policy_pb2

ENCRYPT = "cloudkms.cryptoKeyVersions.useToEncrypt"
DECRYPT = "cloudkms.cryptoKeyVersions.useToDecrypt"
GET_KEY = "cloudkms.cryptoKeys.get"
UPDATE_KEY = "cloudkms.cryptoKeys.update"

Clients = Callable[..., kms_v1.KeyManagementServiceClient]


def member() -> str:
    return f"serviceAccount:sa-{uuid.uuid4().hex[:8]}@proj.iam.gserviceaccount.com"


def grant(
    client: kms_v1.KeyManagementServiceClient, resource: str, role: str, *members: str
) -> policy_pb2.Policy:
    """Read-modify-write one binding into ``resource``'s policy, as a careful caller would."""
    policy = client.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role=role, members=list(members))
    return client.set_iam_policy(request={"resource": resource, "policy": policy})


# ----------------------------------------------------------------------------- policies and etags


@pytest.mark.parametrize("on", ["keyRing", "cryptoKey"])
def test_policy_get_set_with_etags(
    kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey, on: str
) -> None:
    resource = key.name if on == "cryptoKey" else key.name.rsplit("/cryptoKeys/", 1)[0]
    empty = kms.get_iam_policy(request={"resource": resource})
    assert list(empty.bindings) == []
    assert empty.etag
    assert kms.get_iam_policy(request={"resource": resource}).etag == empty.etag

    reader = member()
    policy = policy_pb2.Policy(
        etag=empty.etag,
        bindings=[
            policy_pb2.Binding(
                role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                members=[reader, "user:a@example.com", reader],
            ),
            policy_pb2.Binding(role="roles/cloudkms.viewer", members=["group:ml@example.com"]),
        ],
    )
    written = kms.set_iam_policy(request={"resource": resource, "policy": policy})
    assert written.etag and written.etag != empty.etag
    assert [(b.role, list(b.members)) for b in written.bindings] == [
        ("roles/cloudkms.cryptoKeyEncrypterDecrypter", sorted({reader, "user:a@example.com"})),
        ("roles/cloudkms.viewer", ["group:ml@example.com"]),
    ]
    read = kms.get_iam_policy(request={"resource": resource})
    assert read == written

    # A write based on the superseded etag is refused and changes nothing.
    stale = policy_pb2.Policy(etag=empty.etag, bindings=[])
    with pytest.raises(exceptions.Aborted):
        kms.set_iam_policy(request={"resource": resource, "policy": stale})
    assert kms.get_iam_policy(request={"resource": resource}) == written

    # Without an etag the write is unconditional.
    cleared = kms.set_iam_policy(request={"resource": resource, "policy": policy_pb2.Policy()})
    assert list(cleared.bindings) == []
    assert cleared.etag not in (written.etag, empty.etag)

    # Without enforcement everyone holds everything.
    asked = [ENCRYPT, DECRYPT, GET_KEY]
    granted = kms.test_iam_permissions(request={"resource": resource, "permissions": asked})
    assert list(granted.permissions) == asked


def test_policy_errors(kms: kms_v1.KeyManagementServiceClient, key: kms_v1.CryptoKey) -> None:
    def set_policy(resource: str, *bindings: policy_pb2.Binding) -> policy_pb2.Policy:
        return kms.set_iam_policy(
            request={"resource": resource, "policy": policy_pb2.Policy(bindings=bindings)}
        )

    with pytest.raises(exceptions.InvalidArgument, match=r"roles/owner"):
        set_policy(key.name, policy_pb2.Binding(role="roles/owner", members=["user:a@example.com"]))
    with pytest.raises(exceptions.InvalidArgument):
        set_policy(key.name, policy_pb2.Binding(role="roles/cloudkms.viewer", members=[]))
    with pytest.raises(exceptions.InvalidArgument):
        kms.get_iam_policy(request={"resource": key.primary.name})
    with pytest.raises(exceptions.InvalidArgument):
        kms.get_iam_policy(request={"resource": "projects/p/locations/l"})
    with pytest.raises(exceptions.NotFound):
        kms.get_iam_policy(request={"resource": key.name + "-gone"})
    with pytest.raises(exceptions.NotFound):
        kms.test_iam_permissions(request={"resource": key.name + "-gone", "permissions": [ENCRYPT]})
    assert list(kms.get_iam_policy(request={"resource": key.name}).bindings) == []


# ----------------------------------------------------------------------------- enforcement


@pytest.fixture
def owned(iam_emulator: Any, owner: str, clients: Clients, new_ring: Callable[..., str], new_key: Any) -> Any:
    """A key ring and key on the IAM emulator, created by the owner; returns (owner client, ring, key)."""
    admin = clients(iam_emulator, owner)
    ring = new_ring(admin)
    key = new_key(admin, ring)
    return admin, ring, key


def test_owner_can_do_everything(owned: Any, location: str) -> None:
    admin, ring, key = owned
    sealed = admin.encrypt(name=key.name, plaintext=b"p")
    assert admin.decrypt(name=key.name, ciphertext=sealed.ciphertext).plaintext == b"p"
    assert ring in [r.name for r in admin.list_key_rings(request={"parent": location})]
    assert admin.get_key_ring(name=ring).name == ring
    v2 = admin.create_crypto_key_version(parent=key.name, crypto_key_version={})
    admin.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    admin.destroy_crypto_key_version(name=v2.name)
    admin.restore_crypto_key_version(name=v2.name)
    assert len(admin.generate_random_bytes(location=location, length_bytes=16).data) == 16
    grant(admin, key.name, "roles/cloudkms.viewer", member())
    asked = [ENCRYPT, DECRYPT, GET_KEY, UPDATE_KEY, "cloudkms.cryptoKeys.setIamPolicy"]
    assert (
        list(admin.test_iam_permissions(request={"resource": key.name, "permissions": asked}).permissions)
        == asked
    )


def test_encrypter_and_decrypter_roles(owned: Any, iam_emulator: Any, clients: Clients) -> None:
    admin, _, key = owned
    encrypter, decrypter = member(), member()
    grant(admin, key.name, "roles/cloudkms.cryptoKeyEncrypter", encrypter)
    grant(admin, key.name, "roles/cloudkms.cryptoKeyDecrypter", decrypter)
    as_encrypter, as_decrypter = clients(iam_emulator, encrypter), clients(iam_emulator, decrypter)

    sealed = as_encrypter.encrypt(name=key.name, plaintext=b"artifact")
    assert sealed.name == key.primary.name
    with pytest.raises(exceptions.PermissionDenied):
        as_encrypter.decrypt(name=key.name, ciphertext=sealed.ciphertext)

    assert as_decrypter.decrypt(name=key.name, ciphertext=sealed.ciphertext).plaintext == b"artifact"
    with pytest.raises(exceptions.PermissionDenied):
        as_decrypter.encrypt(name=key.name, plaintext=b"artifact")

    # Neither can read the key, change it or its policy.
    for client in (as_encrypter, as_decrypter):
        with pytest.raises(exceptions.PermissionDenied):
            client.get_crypto_key(name=key.name)
        with pytest.raises(exceptions.PermissionDenied):
            client.create_crypto_key_version(parent=key.name, crypto_key_version={})
        with pytest.raises(exceptions.PermissionDenied):
            client.get_iam_policy(request={"resource": key.name})

    asked = [ENCRYPT, DECRYPT, GET_KEY]
    held = as_encrypter.test_iam_permissions(request={"resource": key.name, "permissions": asked})
    assert list(held.permissions) == [ENCRYPT]
    held = as_decrypter.test_iam_permissions(request={"resource": key.name, "permissions": asked})
    assert list(held.permissions) == [DECRYPT]


def test_key_ring_binding_is_inherited(
    owned: Any, iam_emulator: Any, clients: Clients, new_ring: Callable[..., str], new_key: Any
) -> None:
    admin, ring, key = owned
    user = member()
    grant(admin, ring, "roles/cloudkms.cryptoKeyEncrypterDecrypter", user)
    later = new_key(admin, ring, "later")  # created after the grant: inherits too
    other_ring = new_ring(admin)
    elsewhere = new_key(admin, other_ring)
    as_user = clients(iam_emulator, user)

    for name in (key.name, later.name):
        sealed = as_user.encrypt(name=name, plaintext=b"x")
        assert as_user.decrypt(name=name, ciphertext=sealed.ciphertext).plaintext == b"x"
        # Through an explicit version too (permissions come from the version's key).
        assert as_user.encrypt(name=f"{name}/cryptoKeyVersions/1", plaintext=b"y").name.endswith("/1")
    with pytest.raises(exceptions.PermissionDenied):
        as_user.encrypt(name=elsewhere.name, plaintext=b"x")
    held = as_user.test_iam_permissions(request={"resource": later.name, "permissions": [ENCRYPT, DECRYPT]})
    assert list(held.permissions) == [ENCRYPT, DECRYPT]
    # A key's own policy does not show the inherited binding.
    assert list(admin.get_iam_policy(request={"resource": later.name}).bindings) == []


def test_viewer_reads_but_cannot_use_or_change(
    owned: Any, iam_emulator: Any, clients: Clients, location: str
) -> None:
    admin, ring, key = owned
    viewer = member()
    grant(admin, ring, "roles/cloudkms.viewer", viewer)
    as_viewer = clients(iam_emulator, viewer)

    assert as_viewer.get_key_ring(name=ring).name == ring
    assert as_viewer.get_crypto_key(name=key.name).name == key.name
    assert [k.name for k in as_viewer.list_crypto_keys(request={"parent": ring})] == [key.name]
    assert [v.name for v in as_viewer.list_crypto_key_versions(request={"parent": key.name})] == [
        key.primary.name
    ]
    assert as_viewer.get_crypto_key_version(name=key.primary.name).name == key.primary.name

    denied = [
        lambda: as_viewer.encrypt(name=key.name, plaintext=b"x"),
        lambda: as_viewer.decrypt(
            name=key.name, ciphertext=admin.encrypt(name=key.name, plaintext=b"x").ciphertext
        ),
        lambda: as_viewer.update_crypto_key(
            request={
                "crypto_key": {"name": key.name, "labels": {"a": "b"}},
                "update_mask": {"paths": ["labels"]},
            }
        ),
        lambda: as_viewer.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1"),
        lambda: as_viewer.destroy_crypto_key_version(name=key.primary.name),
        lambda: as_viewer.create_crypto_key(
            request={"parent": ring, "crypto_key_id": "mine", "crypto_key": {"purpose": "ENCRYPT_DECRYPT"}}
        ),
        lambda: as_viewer.set_iam_policy(request={"resource": key.name, "policy": policy_pb2.Policy()}),
        # Location-level actions have no policy: only the owner may take them.
        lambda: as_viewer.list_key_rings(request={"parent": location}),
        lambda: as_viewer.create_key_ring(
            request={"parent": location, "key_ring_id": "mine", "key_ring": {}}
        ),
        lambda: as_viewer.generate_random_bytes(location=location, length_bytes=16),
    ]
    for call in denied:
        with pytest.raises(exceptions.PermissionDenied):
            call()
    assert admin.get_crypto_key(name=key.name) == key


def test_call_without_principal_is_refused(owned: Any, iam_emulator: Any, clients: Clients) -> None:
    _, ring, key = owned
    anonymous = clients(iam_emulator, None)
    with pytest.raises(exceptions.PermissionDenied, match="x-kmsflow-principal"):
        anonymous.get_key_ring(name=ring)
    with pytest.raises(exceptions.PermissionDenied):
        anonymous.encrypt(name=key.name, plaintext=b"x")
    # Unknown principals are refused too, and cannot tell a missing key from a hidden one.
    stranger = clients(iam_emulator, member())
    with pytest.raises(exceptions.PermissionDenied):
        stranger.get_crypto_key(name=key.name)
    with pytest.raises(exceptions.PermissionDenied):
        stranger.get_crypto_key(name=key.name + "-missing")
    assert (
        list(
            stranger.test_iam_permissions(
                request={"resource": key.name, "permissions": [GET_KEY]}
            ).permissions
        )
        == []
    )
    with pytest.raises(exceptions.PermissionDenied):
        grant(stranger, key.name, "roles/cloudkms.admin", "user:me@example.com")


def test_admin_role_and_unknown_role(owned: Any, iam_emulator: Any, clients: Clients) -> None:
    admin, ring, key = owned
    key_admin = member()
    grant(admin, ring, "roles/cloudkms.admin", key_admin)
    as_key_admin = clients(iam_emulator, key_admin)
    updated = as_key_admin.update_crypto_key(
        request={"crypto_key": {"name": key.name, "labels": {"a": "b"}}, "update_mask": {"paths": ["labels"]}}
    )
    assert dict(updated.labels) == {"a": "b"}
    # cloudkms.admin manages keys but may not use them.
    with pytest.raises(exceptions.PermissionDenied):
        as_key_admin.encrypt(name=key.name, plaintext=b"x")

    policy = admin.get_iam_policy(request={"resource": key.name})
    policy.bindings.add(role="roles/cloudkms.superuser", members=["user:x@example.com"])
    with pytest.raises(exceptions.InvalidArgument, match=r"roles/cloudkms\.superuser"):
        admin.set_iam_policy(request={"resource": key.name, "policy": policy})
    assert list(admin.get_iam_policy(request={"resource": key.name}).bindings) == []
