"""Injected failures, so reliability tests meet the transient errors real Cloud KMS gives.

A *script* (a list of status names, ``OK`` meaning "answer normally") is consumed call by call
first; after it runs out, each call fails with probability ``rate`` with one of ``codes``.
``methods`` limits injection to those RPC names (empty: every KMS and IAM call).
Besides status codes, a fault may be a *corruption* (:data:`CORRUPTIONS`): the call is answered,
wrongly, so clients' CRC32C checks meet what they exist for.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc

INJECTABLE = {
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
}

CORRUPTIONS = ("CORRUPT_RESPONSE", "UNVERIFIED_REQUEST")
"""``CORRUPT_RESPONSE`` flips one bit of the response's first non-empty bytes field and leaves its
checksum as it was (a corruption in transit); ``UNVERIFIED_REQUEST`` sets every ``verified_*``
field false (what KMS answers when the request's checksums never reached it)."""

Fault: TypeAlias = "grpc.StatusCode | str"
"""What :meth:`FaultInjector.next_fault` hands out: a status to fail with, or a corruption name."""


def corrupt(response: Any, corruption: str) -> Any:
    """``response`` (a protobuf message) altered as ``corruption`` says, in place."""
    fields = response.DESCRIPTOR.fields
    if corruption == "UNVERIFIED_REQUEST":
        for field in fields:
            if field.name.startswith("verified_"):
                setattr(response, field.name, False)
        return response
    for field in fields:
        value = getattr(response, field.name)
        if field.type == field.TYPE_BYTES and value:
            setattr(response, field.name, value[:-1] + bytes([value[-1] ^ 1]))
            break
    return response


@dataclass
class FaultPlan:
    rate: float = 0.0
    codes: list[str] = field(default_factory=lambda: ["UNAVAILABLE"])
    script: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    seed: int | None = None

    def validate(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        for name in [*self.codes, *self.script]:
            if name != "OK" and name not in INJECTABLE and name not in CORRUPTIONS:
                choices = ", ".join([*sorted(INJECTABLE), *CORRUPTIONS])
                raise ValueError(f"cannot inject {name!r}: choose from OK, {choices}")
        if self.rate > 0 and not self.codes:
            raise ValueError("a fault rate needs at least one code")


class FaultInjector:
    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._injected = 0
        self.configure(plan or FaultPlan())

    def configure(self, plan: FaultPlan) -> None:
        plan.validate()
        with self._lock:
            self._plan = plan
            self._script = list(plan.script)
            self._random = random.Random(plan.seed)

    def status(self) -> dict[str, object]:
        with self._lock:
            return {
                "rate": self._plan.rate,
                "codes": list(self._plan.codes),
                "script_remaining": list(self._script),
                "methods": list(self._plan.methods),
                "injected": self._injected,
            }

    def next_fault(self, method: str) -> Fault | None:
        """The status to fail this call with, the corruption to answer it with, or None."""
        with self._lock:
            plan = self._plan
            if plan.methods and method not in plan.methods:
                return None
            if self._script:
                name = self._script.pop(0)
            elif plan.rate > 0 and self._random.random() < plan.rate:
                name = self._random.choice(plan.codes)
            else:
                return None
            if name == "OK":
                return None
            self._injected += 1
            status: Fault = INJECTABLE.get(name, name)
            return status
