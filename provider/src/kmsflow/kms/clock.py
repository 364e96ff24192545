"""The emulator's clock, read over its Admin RPC without importing the emulator.

Against real Cloud KMS, time is UTC now. The kmsflow emulator (the separate ``kmsflow-emulator``
dev/test distribution, which the product never imports) has a clock that tests move forward, so
shred and erasure, which compare audit-event times with KMS timestamps, must read it. The emulator
documents a small Admin gRPC service speaking ``google.protobuf.Struct``; this module speaks the one
method it needs, ``GetClock`` (``{}`` -> ``{"now": <epoch seconds>}``), over plaintext gRPC.
Only called when an emulator endpoint is configured (``KMS_EMULATOR_HOST`` or a connection's
``endpoint``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import struct_pb2

#: The emulator's Admin service (a wire name, kept stable by the emulator) and its clock method.
EMULATOR_ADMIN_SERVICE = "kmsflow.emulator.v1.Admin"
GET_CLOCK = f"/{EMULATOR_ADMIN_SERVICE}/GetClock"


def emulator_now(endpoint: str, timeout: float = 5.0) -> datetime:
    """The emulated time (UTC) of the kmsflow emulator at ``host:port``.

    Raises ``grpc.RpcError`` when nothing answers there or the endpoint has no Admin service (e.g. a
    proxy to real Cloud KMS), and ``ValueError`` when the answer carries no time.
    """
    with grpc.insecure_channel(endpoint) as channel:
        rpc = channel.unary_unary(
            GET_CLOCK,
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString,
        )
        response = rpc(struct_pb2.Struct(), timeout=timeout)
    if "now" not in response.fields:
        raise ValueError(f"the emulator at {endpoint} answered GetClock without 'now'")
    return datetime.fromtimestamp(float(response["now"]), UTC)
