"""Injected failures, so reliability tests meet the transient errors real Cloud KMS gives.

A *script* (a list of status names, ``OK`` meaning "answer normally") is consumed call by call
first; after it runs out, each call fails with probability ``rate`` with one of ``codes``.
``methods`` limits injection to those RPC names (empty: every KMS and IAM call).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import grpc

INJECTABLE = {
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DEADLINE_EXCEEDED": grpc.StatusCode.DEADLINE_EXCEEDED,
    "RESOURCE_EXHAUSTED": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


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
            if name != "OK" and name not in INJECTABLE:
                raise ValueError(f"cannot inject {name!r}: choose from OK, {', '.join(sorted(INJECTABLE))}")
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

    def next_fault(self, method: str) -> grpc.StatusCode | None:
        """The status to fail this call with, or None to answer normally."""
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
            return INJECTABLE[name]
