"""Stateful property: whatever the order of encrypt, rotate, rewrap, shred runs and clock jumps,
every envelope ever written still decrypts -- only erasure may make data undecryptable."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from kmsflow.envelope import Envelope
from kmsflow.kms import resources
from kmsflow.lifecycle import rewrap
from kmsflow.lifecycle.retirement.shred import run_shred

from .shredkit import World, make_world, state, unwraps


def machine(emulator: Any, base: Path) -> type[RuleBasedStateMachine]:
    class ShredMachine(RuleBasedStateMachine):
        """One example = one fresh key ring on the shared private emulator, one root, one audit log."""

        def __init__(self) -> None:
            super().__init__()
            workdir = Path(tempfile.mkdtemp(dir=base))
            self.world: World = make_world(
                emulator,
                workdir,
                f"ring-{uuid.uuid4().hex[:12]}",
                retention={"retired_version_enabled_for": "2d", "soak_period": "3d"},
            )
            self.count = 0
            self.actions: list[str] = []

        @initialize(size=st.integers(min_value=0, max_value=300), rotate=st.booleans())
        def start(self, size: int, rotate: bool) -> None:
            """Usually begin with an envelope on a version that is about to retire."""
            self.encrypt(size)
            if rotate:
                self.rotate()

        @rule(size=st.integers(min_value=0, max_value=300))
        def encrypt(self, size: int) -> None:
            self.world.encrypt(f"e{self.count}.enc", size)
            self.count += 1

        @rule()
        def rotate(self) -> None:
            resources.rotate(self.world.client, self.world.key)

        @precondition(lambda self: self.count > 0)
        @rule()
        def rewrap_root(self) -> None:
            report = rewrap(self.world.client, [str(self.world.root)])
            assert report.ok, report.to_dict()

        @rule()
        def shred(self) -> None:
            report = run_shred(
                self.world.client,
                self.world.spec,
                now=self.world.now(),
                dry_run=False,
                audit=self.world.audit,
                keys=["data"],
                confirm="data",
                run_id="hypothesis",
            )
            self.actions.extend(f"{d.version.rsplit('/', 1)[-1]}:{d.outcome}" for d in report.actions)

        @rule(days=st.integers(min_value=1, max_value=40))
        def advance(self, days: int) -> None:
            # A few minutes past whole days: sums of jumps never land exactly on a retention or
            # soak boundary, where replaying an example (wall time moves on) could flip a decision.
            self.world.advance_days(days + 0.0125)

        @rule(days=st.integers(min_value=1, max_value=10))
        def advance_then_shred(self, days: int) -> None:
            self.advance(days)
            self.shred()

        @invariant()
        def every_envelope_decrypts(self) -> None:
            for made in self.world.made:
                assert unwraps(self.world.client, made.dst), made.dst

        @invariant()
        def the_primary_is_enabled(self) -> None:
            primary = resources.get_key(self.world.client, self.world.key).primary.name
            assert state(self.world.client, primary) == "ENABLED"

        def teardown(self) -> None:
            if self.world.made:  # one full decrypt (data, not just the key) per example
                made = self.world.made[-1]
                out = Path(tempfile.mkdtemp(dir=base)) / "out"
                Envelope.open(made.dst).decrypt(self.world.client, str(out))
                assert out.read_bytes() == made.src.read_bytes()

    return ShredMachine


def test_nothing_but_erase_makes_data_undecryptable(fresh_emulator: Any, tmp_path: Path) -> None:
    run_state_machine_as_test(
        machine(fresh_emulator, tmp_path),
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
            # No shrinking: the emulator's clock keeps moving between replays, so a shrunk replay
            # is not the same world; the generated failing sequence is reported as is.
            phases=[Phase.generate],
        ),
    )
