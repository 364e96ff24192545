"""The gRPC server: KeyManagementService, IAMPolicy, Locations, Operations (GetOperation) and the
emulator's Admin service on one port.

Handlers are registered generically from ``backend.KMS_METHODS``/``IAM_METHODS`` using the protobuf
classes ``google-cloud-kms`` ships, so no proto is copied. Every KMS and IAM call reads the caller's
principal from ``x-kmsflow-principal`` metadata, may meet an injected fault, then reaches the backend.
The Admin service (clock, faults, call counts) speaks ``google.protobuf.Struct`` and is neither
IAM-checked, fault-injected nor counted: it is the test harness's hand on the emulator, not part of
Cloud KMS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from kmsflow_emulator.backend import (
    IAM_METHODS,
    KMS_METHODS,
    LOCATIONS_METHODS,
    OPERATIONS_METHODS,
    Backend,
)
from kmsflow_emulator.calls import CallCounter
from kmsflow_emulator.errors import EmulatorError
from kmsflow_emulator.faults import FaultInjector, FaultPlan, corrupt

log = logging.getLogger(__name__)

KMS_SERVICE = "google.cloud.kms.v1.KeyManagementService"
IAM_SERVICE = "google.iam.v1.IAMPolicy"
LOCATIONS_SERVICE = "google.cloud.location.Locations"
OPERATIONS_SERVICE = "google.longrunning.Operations"
# Wire names, not module paths: ``kmsflow.emulator.v1.Admin`` predates the ``kmsflow_emulator``
# distribution and stays as is (kmsflow's own clock reader and older clients call it by this name).
ADMIN_SERVICE = "kmsflow.emulator.v1.Admin"
# The caller's IAM member (``serviceAccount:...``), as kmsflow's client interceptor sends it.
PRINCIPAL_METADATA_KEY = "x-kmsflow-principal"


def _principal(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == PRINCIPAL_METADATA_KEY:
            return str(value)
    return None


class EmulatorServer:
    """An emulator bound to ``host:port`` (port 0 picks a free one; see ``.port``)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        enforce_iam: bool = False,
        owner: str | None = None,
        faults: FaultPlan | None = None,
        max_workers: int = 32,
        generation_delay: float = 0.0,
    ) -> None:
        self.backend = Backend(
            data_dir=data_dir, enforce_iam=enforce_iam, owner=owner, generation_delay=generation_delay
        )
        self.faults = FaultInjector(faults)
        self.calls = CallCounter()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kms-emulator")
        )
        self._server.add_generic_rpc_handlers(
            (
                self._service(KMS_SERVICE, KMS_METHODS),
                self._service(IAM_SERVICE, IAM_METHODS),
                self._service(LOCATIONS_SERVICE, LOCATIONS_METHODS),
                self._service(OPERATIONS_SERVICE, OPERATIONS_METHODS),
                self._admin_service(),
            )
        )
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        self._server.start()
        return self

    def stop(self, grace: float | None = 2.0) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    # ------------------------------------------------------------------ handlers

    def _service(
        self, service_name: str, methods: dict[str, tuple[Any, Callable[..., Any]]]
    ) -> grpc.GenericRpcHandler:
        handlers = {
            rpc: grpc.unary_unary_rpc_method_handler(
                self._wrap(rpc, func),
                request_deserializer=request_cls.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
            for rpc, (request_cls, func) in methods.items()
        }
        return grpc.method_handlers_generic_handler(service_name, handlers)

    def _wrap(self, rpc: str, func: Callable[..., Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        backend, faults, calls = self.backend, self.faults, self.calls

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            calls.count(rpc)
            fault = faults.next_fault(rpc)
            if isinstance(fault, grpc.StatusCode):
                context.abort(fault, f"kmsflow emulator: injected {fault.name} for {rpc}")
            try:
                response = func(backend, request, _principal(context))
            except EmulatorError as exc:
                context.abort(exc.code, exc.message)
            return response if fault is None else corrupt(response, fault)

        return handle

    def _admin_service(self) -> grpc.GenericRpcHandler:
        def struct_handler(func: Callable[[dict[str, Any]], dict[str, Any]]) -> grpc.RpcMethodHandler:
            def handle(request: struct_pb2.Struct, context: grpc.ServicerContext) -> struct_pb2.Struct:
                try:
                    answer = func(json_format.MessageToDict(request))
                except (ValueError, TypeError, KeyError) as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                out = struct_pb2.Struct()
                out.update(answer)
                return out

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=struct_pb2.Struct.FromString,
                response_serializer=struct_pb2.Struct.SerializeToString,
            )

        def advance(body: dict[str, Any]) -> dict[str, Any]:
            now = self.backend.advance_clock(float(body["seconds"]))
            log.info("clock advanced by %ss", body["seconds"])
            return {"now": now}

        def clock(_: dict[str, Any]) -> dict[str, Any]:
            return {"now": self.backend.now()}

        def set_faults(body: dict[str, Any]) -> dict[str, Any]:
            self.faults.configure(
                FaultPlan(
                    rate=float(body.get("rate", 0.0)),
                    codes=list(body.get("codes", ["UNAVAILABLE"])),
                    script=list(body.get("script", [])),
                    methods=list(body.get("methods", [])),
                    seed=int(body["seed"]) if "seed" in body else None,
                )
            )
            return self.faults.status()

        def get_faults(_: dict[str, Any]) -> dict[str, Any]:
            return self.faults.status()

        def get_calls(_: dict[str, Any]) -> dict[str, Any]:
            return {"calls": self.calls.snapshot()}

        def reset_calls(_: dict[str, Any]) -> dict[str, Any]:
            return {"calls": self.calls.reset()}

        return grpc.method_handlers_generic_handler(
            ADMIN_SERVICE,
            {
                "AdvanceClock": struct_handler(advance),
                "GetClock": struct_handler(clock),
                "SetFaults": struct_handler(set_faults),
                "GetFaults": struct_handler(get_faults),
                "GetCalls": struct_handler(get_calls),
                "ResetCalls": struct_handler(reset_calls),
            },
        )
