"""DeleteCryptoKeyVersion, DeleteCryptoKey (long-running operations), retired resources, GetOperation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1
from google.longrunning import operations_pb2

Client = kms_v1.KeyManagementServiceClient
State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
DAY = 24 * 3600


def test_delete_versions_then_the_key(
    launch: Callable[..., Any], clients: Callable[..., Client], new_ring: Callable[..., str], tmp_path: Any
) -> None:
    data_dir = tmp_path / "kms"
    running = launch("--data-dir", str(data_dir))
    kms = clients(running)
    ring = new_ring(kms)
    location = ring.rsplit("/keyRings/", 1)[0]
    key = kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "doomed",
            "crypto_key": {"purpose": "ENCRYPT_DECRYPT", "destroy_scheduled_duration": {"seconds": DAY}},
        }
    )
    v1 = key.primary.name
    with pytest.raises(exceptions.FailedPrecondition, match="only DESTROYED"):
        kms.delete_crypto_key_version(name=v1)
    with pytest.raises(exceptions.FailedPrecondition, match="delete every version"):
        kms.delete_crypto_key(name=key.name)
    kms.destroy_crypto_key_version(name=v1)
    with pytest.raises(exceptions.FailedPrecondition, match="DESTROY_SCHEDULED"):
        kms.delete_crypto_key_version(name=v1)
    running.admin.advance(DAY + 1)
    assert kms.get_crypto_key_version(name=v1).state == State.DESTROYED

    deleted = kms.delete_crypto_key_version(name=v1)  # a google.api_core Operation
    assert deleted.done()
    deleted.result()  # Empty
    assert isinstance(deleted.metadata, kms_v1.DeleteCryptoKeyVersionMetadata)
    with pytest.raises(exceptions.NotFound):
        kms.get_crypto_key_version(name=v1)
    assert list(kms.list_crypto_key_versions(parent=key.name)) == []
    assert not kms.get_crypto_key(name=key.name).primary.name

    gone = kms.delete_crypto_key(name=key.name)
    gone.result()
    retired_name = gone.metadata.retired_resource
    assert retired_name.startswith(f"{location}/retiredResources/")
    with pytest.raises(exceptions.NotFound):
        kms.get_crypto_key(name=key.name)
    retired = kms.get_retired_resource(name=retired_name)
    assert (retired.original_resource, retired.resource_type) == (
        key.name,
        "cloudkms.googleapis.com/CryptoKey",
    )
    assert retired.delete_time
    assert [r.name for r in kms.list_retired_resources(parent=location)] == [retired_name]
    # The name of a deleted key is never reused.
    with pytest.raises(exceptions.AlreadyExists, match="cannot be reused"):
        kms.create_crypto_key(
            request={"parent": ring, "crypto_key_id": "doomed", "crypto_key": {"purpose": "ENCRYPT_DECRYPT"}}
        )

    # The operation is served by google.longrunning.Operations, also after a restart.
    op_name = gone.operation.name
    assert op_name.startswith(f"{location}/operations/")
    assert running.stop() == 0
    kms = clients(launch("--data-dir", str(data_dir)))
    op = kms.get_operation(request=operations_pb2.GetOperationRequest(name=op_name))
    assert op.done and op.name == op_name
    assert kms.get_retired_resource(name=retired_name).original_resource == key.name
    with pytest.raises(exceptions.NotFound):
        kms.get_operation(request=operations_pb2.GetOperationRequest(name=f"{location}/operations/nope"))


def test_delete_preconditions_and_errors(kms: Client, ring: str) -> None:
    key = kms.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "imp",
            "crypto_key": {"purpose": "ENCRYPT_DECRYPT", "import_only": True},
            "skip_initial_version_creation": True,
        }
    )
    job = kms.create_import_job(
        request={
            "parent": ring,
            "import_job_id": f"j-{uuid.uuid4().hex[:6]}",
            "import_job": {"import_method": "RSA_OAEP_3072_SHA256", "protection_level": "SOFTWARE"},
        }
    )
    failed = kms.import_crypto_key_version(
        request={"parent": key.name, "import_job": job.name, "algorithm": 1, "wrapped_key": os.urandom(384)}
    )
    assert failed.state == State.IMPORT_FAILED
    kms.delete_crypto_key_version(name=failed.name).result()  # IMPORT_FAILED versions can be deleted
    with pytest.raises(exceptions.NotFound):
        kms.delete_crypto_key_version(name=failed.name)
    with pytest.raises(exceptions.NotFound):
        kms.delete_crypto_key(name=f"{ring}/cryptoKeys/absent")
    with pytest.raises(exceptions.InvalidArgument):
        kms.get_retired_resource(name=f"{ring}/retiredResources/x")
    with pytest.raises(exceptions.NotFound):
        kms.get_retired_resource(name=ring.rsplit("/keyRings/", 1)[0] + "/retiredResources/absent")
    assert list(kms.list_retired_resources(parent="projects/none/locations/global")) == []


def test_delete_needs_permissions(iam_emulator: Any, owner: str, clients: Any, new_ring: Any) -> None:
    admin = clients(iam_emulator, owner)
    ring = new_ring(admin)
    key = admin.create_crypto_key(
        request={
            "parent": ring,
            "crypto_key_id": "k",
            "crypto_key": {"purpose": "ENCRYPT_DECRYPT"},
            "skip_initial_version_creation": True,
        }
    )
    viewer = f"serviceAccount:v-{uuid.uuid4().hex[:6]}@p.iam.gserviceaccount.com"
    policy = admin.get_iam_policy(request={"resource": ring})
    policy.bindings.add(role="roles/cloudkms.viewer", members=[viewer])
    admin.set_iam_policy(request={"resource": ring, "policy": policy})
    as_viewer = clients(iam_emulator, viewer)
    with pytest.raises(exceptions.PermissionDenied):
        as_viewer.delete_crypto_key(name=key.name)
    with pytest.raises(exceptions.PermissionDenied):
        as_viewer.list_retired_resources(parent=ring.rsplit("/keyRings/", 1)[0])
    admin.delete_crypto_key(name=key.name).result()
