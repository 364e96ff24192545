"""The declarative key spec (no Airflow): schema and validation, plan (diff), apply, verify.

spec = load_spec("examples/specs/seed.yaml")   # SpecError lists every problem by field path
the_plan = plan(spec, client)                  # reads only; conflicts reported, not raised
print(the_plan.render())
report = apply(the_plan, client)               # idempotent ensure/set operations
verify(spec, client)                           # plan again; SpecDriftError unless empty
"""

from kmsflow.spec.apply import ApplyReport, SpecDriftError, apply, verify
from kmsflow.spec.durations import format_duration, parse_duration
from kmsflow.spec.loader import SpecError, load_spec, parse_spec
from kmsflow.spec.model import CryptoKeySpec, KeyRingSpec, KeySpec, Retention
from kmsflow.spec.plan import Change, Plan, plan

__all__ = [
    "ApplyReport",
    "Change",
    "CryptoKeySpec",
    "KeyRingSpec",
    "KeySpec",
    "Plan",
    "Retention",
    "SpecDriftError",
    "SpecError",
    "apply",
    "format_duration",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "plan",
    "verify",
]
