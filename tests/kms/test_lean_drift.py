"""The lean path's generated messages (``kmsflow.kms._proto``) stay the messages ``google-cloud-kms``
sends: every field's number, type, cardinality, presence and oneof; every enum value; every RPC
path. Regenerating from a newer googleapis commit (scripts/gen_kms_protos.sh) must keep this green."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grpc
import pytest
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports import (
    KeyManagementServiceGrpcTransport,
)
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.wrappers_pb2 import Int64Value
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsflow.kms._proto import kms_dataplane_pb2 as pb
from kmsflow.kms.dataplane import METHODS, SERVICE

LEAN_PACKAGE = "kmsflow.kms.dataplane.v1."
GOOGLE_PACKAGE = "google.cloud.kms.v1."


def _google_name(full_name: str) -> str:
    assert full_name.startswith(LEAN_PACKAGE), full_name
    return GOOGLE_PACKAGE + full_name[len(LEAN_PACKAGE) :]


def _shape(field: FieldDescriptor, rename: bool) -> tuple[Any, ...]:
    target = field.message_type or field.enum_type
    type_name = target.full_name if target else ""
    if rename and type_name.startswith(LEAN_PACKAGE):
        type_name = _google_name(type_name)
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.is_required,
        field.has_presence,
        field.is_packed,
        oneof,
        type_name,
    )


def _google_descriptor(lean: Descriptor) -> Descriptor:
    path = lean.full_name[len(LEAN_PACKAGE) :].split(".")
    google: Any = getattr(kms_v1, path[0]).pb().DESCRIPTOR
    for nested in path[1:]:
        google = google.nested_types_by_name[nested]
    return google  # type: ignore[no-any-return]


def _all_messages() -> list[Descriptor]:
    found: list[Descriptor] = []

    def visit(message: Descriptor) -> None:
        found.append(message)
        for nested in message.nested_types:
            visit(nested)

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        visit(message)
    return found


def _all_enums() -> list[EnumDescriptor]:
    enums = list(pb.DESCRIPTOR.enum_types_by_name.values())
    for message in _all_messages():
        enums.extend(message.enum_types)
    return enums


def _on_the_wire() -> set[str]:
    """Full names of the messages the calls send or receive, and of every message in their fields."""
    seen: set[str] = set()

    def visit(message: Descriptor) -> None:
        if message.full_name not in seen:
            seen.add(message.full_name)
            for field in message.fields:
                if field.message_type and field.message_type.full_name.startswith(LEAN_PACKAGE):
                    visit(field.message_type)

    for request, response in METHODS.values():
        visit(request.DESCRIPTOR)
        visit(response.DESCRIPTOR)
    return seen


@pytest.mark.parametrize("lean", _all_messages(), ids=lambda d: d.full_name)
def test_every_field_equals_google_cloud_kms(lean: Descriptor) -> None:
    """Messages on the wire: the same fields exactly. The others are only there to hold an enum a
    wire message uses (``CryptoKeyVersion.CryptoKeyVersionAlgorithm``): each of their fields must be
    google-cloud-kms's, which may have more (it can be newer than the pinned googleapis commit)."""
    google = _google_descriptor(lean)
    assert google.full_name == _google_name(lean.full_name)
    ours = {f.name: _shape(f, rename=True) for f in lean.fields}
    theirs = {f.name: _shape(f, rename=False) for f in google.fields}
    if lean.full_name in _on_the_wire():
        assert ours == theirs
    else:
        assert ours.items() <= theirs.items()


@pytest.mark.parametrize("lean", _all_enums(), ids=lambda d: d.full_name)
def test_every_enum_value_equals_google_cloud_kms(lean: EnumDescriptor) -> None:
    path = lean.full_name[len(LEAN_PACKAGE) :].split(".")
    if len(path) == 1:  # a top-level enum: proto-plus keeps it as an enum class on kms_v1
        google = {member.name: member.value for member in getattr(kms_v1, path[0])}
    else:
        owner = _google_descriptor(pb.DESCRIPTOR.message_types_by_name[path[0]])
        for nested in path[1:-1]:
            owner = owner.nested_types_by_name[nested]
        google = {v.name: v.number for v in owner.enum_types_by_name[path[-1]].values}
    assert {v.name: v.number for v in lean.values} == google


class _StoppedError(Exception):
    pass


class _Recorder(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records the path and request of the call GAPIC makes, and stops it before the wire."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        self.calls.append((method, request))
        raise _StoppedError


def _snake(method: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_rpc_path_and_request_type_is_gapics(method: str) -> None:
    recorder = _Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel("localhost:1"), recorder)
    client = kms_v1.KeyManagementServiceClient(
        transport=KeyManagementServiceGrpcTransport(channel=channel),
    )
    with pytest.raises(_StoppedError):
        getattr(client, _snake(method))(request={"name": "projects/p"}, retry=None)
    channel.close()
    [(path, request)] = recorder.calls
    request_type, _ = METHODS[method]
    assert path == f"/{SERVICE}/{method}"
    assert type(request).pb().DESCRIPTOR.full_name == _google_name(request_type.DESCRIPTOR.full_name)


@settings(max_examples=50, deadline=None)
@given(
    name=st.text(max_size=80),
    data=st.binary(max_size=512),
    crc=st.integers(min_value=0, max_value=2**32 - 1),
    verified=st.booleans(),
)
def test_the_same_bytes_on_the_wire_both_ways(name: str, data: bytes, crc: int, verified: bool) -> None:
    ours = pb.EncryptRequest(
        name=name,
        plaintext=data,
        additional_authenticated_data=data[::-1],
        plaintext_crc32c=Int64Value(value=crc),
    ).SerializeToString(deterministic=True)
    theirs = kms_v1.EncryptRequest.pb()(
        name=name,
        plaintext=data,
        additional_authenticated_data=data[::-1],
        plaintext_crc32c=Int64Value(value=crc),
    ).SerializeToString(deterministic=True)
    assert ours == theirs
    answer = kms_v1.DecryptResponse.pb()(
        plaintext=data, plaintext_crc32c=Int64Value(value=crc), used_primary=verified, protection_level=2
    )
    parsed = pb.DecryptResponse.FromString(answer.SerializeToString())
    assert (parsed.plaintext, parsed.plaintext_crc32c.value, parsed.used_primary) == (data, crc, verified)
    assert parsed.protection_level == pb.HSM


@pytest.mark.parametrize(
    "order",
    [
        ("google.cloud.kms_v1", "kmsflow.kms._proto.kms_dataplane_pb2"),
        ("kmsflow.kms._proto.kms_dataplane_pb2", "google.cloud.kms_v1"),
    ],
)
def test_both_message_sets_load_in_one_process_either_order(order: tuple[str, str]) -> None:
    """``google-cloud-kms`` owns ``google.cloud.kms.v1.*`` in protobuf's default descriptor pool; the
    lean messages live under their own package, so neither import refuses the other."""
    code = (
        f"import {order[0]}, {order[1]}\n"
        "from google.cloud import kms_v1\n"
        "from kmsflow.kms._proto import kms_dataplane_pb2 as pb\n"
        "r = kms_v1.EncryptRequest(name='k', plaintext=b'x')\n"
        "print(pb.EncryptRequest.FromString(kms_v1.EncryptRequest.serialize(r)).name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "k"), done.stderr
