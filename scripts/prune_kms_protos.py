"""Cut Google's Cloud KMS protos down to the data-plane messages kmsflow calls, under its own package.

Run by ``scripts/gen_kms_protos.sh`` (with the generator venv's protobuf), not imported by kmsflow.
Input: a ``FileDescriptorSet`` that protoc made from ``google/cloud/kms/v1/service.proto`` with
``--include_imports``. Output: a ``FileDescriptorSet`` holding one file, ``OUT_FILE``, with every
message and enum the ``ROOTS`` reach (fields unchanged: numbers, types, labels, nesting), in the
package ``OUT_PACKAGE``, without options or services, plus the well-known types it imports.

Why a package of its own: ``google-cloud-kms`` registers ``google.cloud.kms.v1.*`` in protobuf's
default descriptor pool, and a second definition of the same full names in one process is refused.
The wire format knows field numbers only, so the renamed messages are byte-for-byte the same
requests and responses; the RPC paths (``/google.cloud.kms.v1.KeyManagementService/...``) are
spelled in ``kmsflow.kms.dataplane``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

SOURCE_PACKAGE = "google.cloud.kms.v1"
OUT_PACKAGE = "kmsflow.kms.dataplane.v1"
OUT_FILE = "kmsflow/kms/_proto/kms_dataplane.proto"
ROOTS = (
    "EncryptRequest",
    "EncryptResponse",
    "DecryptRequest",
    "DecryptResponse",
    "AsymmetricSignRequest",
    "AsymmetricSignResponse",
    "AsymmetricDecryptRequest",
    "AsymmetricDecryptResponse",
    "DecapsulateRequest",
    "DecapsulateResponse",
    "GetPublicKeyRequest",
    "PublicKey",
)


def main(source: str, out: str) -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(source).read_bytes())
    kms_files = [f for f in fds.file if f.package == SOURCE_PACKAGE]
    top: dict[str, descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto] = {}
    for f in kms_files:
        for m in f.message_type:
            top[m.name] = m
        for e in f.enum_type:
            top[e.name] = e

    prefix = f".{SOURCE_PACKAGE}."
    wanted: list[str] = []
    deps: set[str] = set()

    def visit(name: str) -> None:
        if name in wanted:
            return
        wanted.append(name)
        node = top[name]
        if isinstance(node, descriptor_pb2.DescriptorProto):
            walk(node)

    def walk(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            if field.type_name.startswith(prefix):
                visit(field.type_name[len(prefix) :].split(".")[0])
            elif field.type_name.startswith(".google.protobuf."):
                deps.add(field.type_name)
        for nested in message.nested_type:
            walk(nested)

    for root in ROOTS:
        visit(root)

    def clean(message: descriptor_pb2.DescriptorProto) -> None:
        message.ClearField("options")
        for field in message.field:
            field.ClearField("options")
            field.ClearField("json_name")
            if field.type_name.startswith(prefix):
                field.type_name = f".{OUT_PACKAGE}." + field.type_name[len(prefix) :]
        for oneof in message.oneof_decl:
            oneof.ClearField("options")
        for nested in message.nested_type:
            clean(nested)
        for enum in message.enum_type:
            enum.ClearField("options")
            for value in enum.value:
                value.ClearField("options")

    out_file = descriptor_pb2.FileDescriptorProto(name=OUT_FILE, package=OUT_PACKAGE, syntax="proto3")
    for name in sorted(wanted):
        node = top[name]
        if isinstance(node, descriptor_pb2.DescriptorProto):
            copy = out_file.message_type.add()
            copy.CopyFrom(node)
            clean(copy)
        else:
            enum_copy = out_file.enum_type.add()
            enum_copy.CopyFrom(node)
            enum_copy.ClearField("options")
            for value in enum_copy.value:
                value.ClearField("options")

    well_known = {f.name: f for f in fds.file if f.package == "google.protobuf"}
    needed = sorted(
        name
        for name, f in well_known.items()
        if any(t[len(".google.protobuf.") :] in {m.name for m in f.message_type} for t in deps)
    )
    out_file.dependency.extend(needed)
    result = descriptor_pb2.FileDescriptorSet()
    for name in needed:
        result.file.add().CopyFrom(well_known[name])
    result.file.add().CopyFrom(out_file)
    Path(out).write_bytes(result.SerializeToString())
    print(f"{OUT_FILE}: {len(wanted)} top-level types from {SOURCE_PACKAGE}, imports {needed}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
