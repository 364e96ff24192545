"""The emulator as a process: persistence across restarts, clean shutdown, and no key material in logs."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import kms_v1
from google.iam.v1 import policy_pb2

State = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
DAY = 86400


def set_state(kms: kms_v1.KeyManagementServiceClient, name: str, state: Any) -> None:
    kms.update_crypto_key_version(
        request={"crypto_key_version": {"name": name, "state": state}, "update_mask": {"paths": ["state"]}}
    )


def snapshot(kms: kms_v1.KeyManagementServiceClient, location: str) -> dict[str, Any]:
    """Everything a client can see about the emulator's resources and policies."""
    out: dict[str, Any] = {}
    for ring in kms.list_key_rings(request={"parent": location}):
        out[ring.name] = (ring, kms.get_iam_policy(request={"resource": ring.name}))
        for key in kms.list_crypto_keys(request={"parent": ring.name}):
            versions = list(kms.list_crypto_key_versions(request={"parent": key.name}))
            out[key.name] = (key, kms.get_iam_policy(request={"resource": key.name}), versions)
    return out


def test_state_survives_restart_despite_leftover_temp_files(
    fresh_emulator: Any,
    shared: Any,
    launch: Callable[..., Any],
    clients: Any,
    new_ring: Callable[..., str],
    new_key: Any,
    location: str,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "kms"
    kms = clients(fresh_emulator)
    ring = new_ring(kms)
    now = fresh_emulator.admin.now()
    rotating = new_key(
        kms,
        ring,
        "rotating",
        labels={"team": "ml"},
        rotation_period={"seconds": 7 * DAY},
        next_rotation_time={"seconds": int(now) + 20 * DAY},
    )
    kms.create_crypto_key_version(parent=rotating.name, crypto_key_version={})
    kms.update_crypto_key_primary_version(name=rotating.name, crypto_key_version_id="2")
    old = kms.encrypt(
        request={"name": rotating.primary.name, "plaintext": b"v1", "additional_authenticated_data": b"a"}
    )
    new = kms.encrypt(name=rotating.name, plaintext=b"v2")

    states = new_key(kms, ring, "states", destroy_scheduled_duration={"seconds": 3 * DAY})
    kms.create_crypto_key_version(parent=states.name, crypto_key_version={"state": State.DISABLED})
    kms.destroy_crypto_key_version(name=states.primary.name)
    new_key(kms, ring, "hsm", version_template={"protection_level": kms_v1.ProtectionLevel.HSM})

    ring_policy = kms.set_iam_policy(
        request={
            "resource": ring,
            "policy": policy_pb2.Policy(
                bindings=[policy_pb2.Binding(role="roles/cloudkms.viewer", members=["user:v@example.com"])]
            ),
        }
    )
    key_policy = kms.set_iam_policy(
        request={
            "resource": rotating.name,
            "policy": policy_pb2.Policy(
                bindings=[
                    policy_pb2.Binding(
                        role="roles/cloudkms.cryptoKeyDecrypter", members=["user:d@example.com"]
                    )
                ]
            ),
        }
    )
    # A policy that was only ever read keeps its etag too.
    read_only_etag = kms.get_iam_policy(request={"resource": states.name}).etag
    clock = fresh_emulator.admin.advance(DAY)
    before = snapshot(kms, location)
    assert set(before) == {ring, rotating.name, states.name, f"{ring}/cryptoKeys/hsm"}

    assert shared.stop_emulator(fresh_emulator) == 0
    whole = (data_dir / "state.json").read_text()
    json.loads(whole)
    # What a crash in the middle of a write leaves behind: half-written temporary files.
    (data_dir / ".state-crashed").write_text(whole[: len(whole) // 2])
    (data_dir / ".state-garbage").write_bytes(b"\x00\xff not json at all")

    restarted = launch("--data-dir", str(data_dir))
    kms = clients(restarted)
    assert restarted.admin.now() >= clock
    assert restarted.admin.now() < clock + 600
    after = snapshot(kms, location)
    assert after == before
    assert after[ring][1] == ring_policy
    assert after[rotating.name][1] == key_policy
    assert [v.state for v in after[states.name][2]] == [State.DESTROY_SCHEDULED, State.DISABLED]
    assert kms.get_iam_policy(request={"resource": states.name}).etag == read_only_etag

    # Old ciphertexts decrypt; the next version id continues; etags still guard policy writes.
    opened = kms.decrypt(
        request={"name": rotating.name, "ciphertext": old.ciphertext, "additional_authenticated_data": b"a"}
    )
    assert (opened.plaintext, opened.used_primary) == (b"v1", False)
    assert kms.decrypt(name=rotating.name, ciphertext=new.ciphertext).plaintext == b"v2"
    assert kms.create_crypto_key_version(parent=rotating.name, crypto_key_version={}).name.endswith("/3")
    updated = kms.set_iam_policy(
        request={"resource": rotating.name, "policy": policy_pb2.Policy(etag=key_policy.etag)}
    )
    assert list(updated.bindings) == []
    kms.set_iam_policy(request={"resource": states.name, "policy": policy_pb2.Policy(etag=read_only_etag)})

    # Schedules carry on from the persisted clock: destruction after 3 days, rotation after 20.
    restarted.admin.advance(2 * DAY + 60)
    assert kms.get_crypto_key_version(name=states.primary.name).state == State.DESTROYED
    restarted.admin.advance(17 * DAY)
    assert kms.get_crypto_key(name=rotating.name).primary.name.endswith("/cryptoKeyVersions/4")
    assert json.loads((data_dir / "state.json").read_text())["clock_offset"] >= 20 * DAY


def test_state_file_is_valid_json_after_every_write(
    fresh_emulator: Any, clients: Any, new_ring: Callable[..., str], new_key: Any, tmp_path: Path
) -> None:
    state_file = tmp_path / "kms" / "state.json"
    kms = clients(fresh_emulator)

    def state() -> dict[str, Any]:
        data = json.loads(state_file.read_text())
        assert isinstance(data, dict)
        # Writes go through a temporary file that is renamed into place; none may be left over.
        assert [p.name for p in state_file.parent.iterdir()] == ["state.json"]
        return data

    ring = new_ring(kms)
    assert ring in state()["key_rings"]
    key = new_key(kms, ring)
    assert set(state()["crypto_keys"][key.name]["versions"]) == {"1"}
    version = kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    assert set(state()["crypto_keys"][key.name]["versions"]) == {"1", "2"}
    kms.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    assert state()["crypto_keys"][key.name]["primary_id"] == 2
    set_state(kms, key.primary.name, State.DISABLED)
    assert state()["crypto_keys"][key.name]["versions"]["1"]["state"] == State.DISABLED
    kms.destroy_crypto_key_version(name=version.name)
    assert state()["crypto_keys"][key.name]["versions"]["2"]["state"] == State.DESTROY_SCHEDULED
    kms.update_crypto_key(
        request={"crypto_key": {"name": key.name, "labels": {"k": "v"}}, "update_mask": {"paths": ["labels"]}}
    )
    assert state()["crypto_keys"][key.name]["labels"] == {"k": "v"}
    kms.set_iam_policy(
        request={
            "resource": key.name,
            "policy": policy_pb2.Policy(
                bindings=[policy_pb2.Binding(role="roles/cloudkms.viewer", members=["user:x@example.com"])]
            ),
        }
    )
    assert state()["crypto_keys"][key.name]["policy"]["bindings"][0]["members"] == ["user:x@example.com"]
    fresh_emulator.admin.advance(31 * DAY)
    data = state()
    assert data["clock_offset"] >= 31 * DAY
    assert data["crypto_keys"][key.name]["versions"]["2"]["state"] == State.DESTROYED
    assert data["crypto_keys"][key.name]["versions"]["2"]["material"] is None


def test_key_material_is_never_logged_and_sigterm_stops_cleanly(
    launch: Callable[..., Any],
    clients: Any,
    new_ring: Callable[..., str],
    new_key: Any,
    tmp_path: Path,
    location: str,
) -> None:
    data_dir = tmp_path / "logged"
    running = launch("--data-dir", str(data_dir))
    kms = clients(running)
    ring = new_ring(kms)
    key = new_key(
        kms,
        ring,
        rotation_period={"seconds": DAY},
        next_rotation_time={"seconds": int(running.admin.now()) + DAY},
    )
    for i in range(3):
        sealed = kms.encrypt(
            request={"name": key.name, "plaintext": b"p" * i, "additional_authenticated_data": b"a"}
        )
        kms.decrypt(
            request={"name": key.name, "ciphertext": sealed.ciphertext, "additional_authenticated_data": b"a"}
        )
        running.admin.advance(DAY)  # rotates: a new version (and new material) each time
    kms.create_crypto_key_version(parent=key.name, crypto_key_version={})
    kms.generate_random_bytes(location=location, length_bytes=64)
    for bad in (b"garbage", sealed.ciphertext[:-1]):
        with pytest.raises(exceptions.InvalidArgument):
            kms.decrypt(name=key.name, ciphertext=bad)

    versions = json.loads((data_dir / "state.json").read_text())["crypto_keys"][key.name]["versions"]
    materials = [base64.b64decode(v["material"]) for v in versions.values()]
    assert len(materials) == 5

    # SIGTERM stops the server cleanly: exit status 0 and a last word on stdout.
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=10) == 0
    assert running.stop() == 0
    assert "kmsflow-emulator stopped" in running.stdout_rest

    output = running.stdout_rest + running.stderr
    assert "clock advanced" in output  # the log really was captured
    for material in materials:
        for form in (
            base64.b64encode(material).decode(),
            base64.urlsafe_b64encode(material).decode(),
            base64.b64encode(material).decode().rstrip("="),
            material.hex(),
            repr(material)[2:-1],
        ):
            assert form not in output
