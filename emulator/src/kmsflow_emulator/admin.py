"""Client for the emulator's Admin service: move the clock, script faults, count calls."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from kmsflow_emulator.server import ADMIN_SERVICE


class AdminClient:
    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(endpoint)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = struct_pb2.Struct()
        request.update(body or {})
        rpc = self._channel.unary_unary(
            f"/{ADMIN_SERVICE}/{method}",
            request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString,
        )
        return json_format.MessageToDict(rpc(request, timeout=self._timeout))

    def advance(self, seconds: float) -> float:
        """Move the emulated clock forward; returns the new emulated time (epoch seconds)."""
        return float(self._call("AdvanceClock", {"seconds": seconds})["now"])

    def now(self) -> float:
        return float(self._call("GetClock")["now"])

    def set_faults(
        self,
        *,
        rate: float = 0.0,
        codes: list[str] | None = None,
        script: list[str] | None = None,
        methods: list[str] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rate": rate,
            "codes": codes or ["UNAVAILABLE"],
            "script": script or [],
            "methods": methods or [],
        }
        if seed is not None:
            body["seed"] = seed
        return self._call("SetFaults", body)

    def faults(self) -> dict[str, Any]:
        return self._call("GetFaults")

    def calls(self) -> dict[str, int]:
        """How many times each KMS/IAM RPC was received since start (or the last reset), by name."""
        return {name: int(n) for name, n in self._call("GetCalls").get("calls", {}).items()}

    def reset_calls(self) -> dict[str, int]:
        """Zero the counts; returns them as they were."""
        return {name: int(n) for name, n in self._call("ResetCalls").get("calls", {}).items()}
