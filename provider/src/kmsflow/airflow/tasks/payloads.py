"""The shapes of every value the kmsflow DAGs pass between tasks (XCom), and of their params.

TypedDicts, not dataclasses: an XCom is stored as the JSON of a plain dict, so a TypedDict is
exactly what is stored (byte-identical to before: same keys, same order, no ``__type`` wrapper)
while mypy checks every producer (a ``return {...}`` literal) and every consumer (``x["key"]``).
Where a payload is a core report's ``to_dict()`` (still ``dict[str, Any]`` in the Airflow-free
core), :func:`report_payload` is the one place that asserts the shape.

Everything here is names, ids, versions, states, counts and one-line reasons: never plaintext or
key material (invariant 4). No imports beyond ``typing``: DAG files import this at parse time.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, TypeVar, cast

Mode = Literal["rewrap", "reencrypt"]

_P = TypeVar("_P")


def report_payload(data: dict[str, Any], shape: type[_P]) -> _P:
    """A core report's ``to_dict()`` as its payload type (the shapes below mirror those methods)."""
    del shape  # only names the type for the reader and for mypy
    return cast(_P, data)


# -- shared ------------------------------------------------------------------------------------


class IssuePayload(TypedDict):
    """``lifecycle.Issue.to_dict()``: an envelope a step could not handle."""

    url: str
    error: str
    reason: str


class FindingPayload(TypedDict):
    """``inventory.Finding.to_dict()``."""

    kind: str
    url: str
    detail: str
    blocking: bool


# -- kmsflow_provision -------------------------------------------------------------------------


class ProvisionParams(TypedDict):
    spec_path: str
    dry_run: bool
    audit_log: str
    kmsflow_conn_id: str


class SpecSummary(TypedDict):
    """``validate``: what the spec declares."""

    spec_path: str
    location: str
    key_rings: list[str]
    crypto_keys: list[str]


class PlanPayload(TypedDict):
    """``plan``: ``spec.Plan.to_dict()`` (``Plan.from_dict`` rebuilds it, spec included)."""

    location: str
    empty: bool
    summary: dict[str, int]
    changes: list[dict[str, Any]]
    spec: dict[str, Any]


class ApplyPayload(TypedDict):
    """``apply``: ``spec.ApplyReport.to_dict()``."""

    changed: bool
    applied: list[dict[str, Any]]


class ConvergedPayload(TypedDict):
    """``verify``."""

    converged: bool
    location: str


# -- kmsflow_rotate_rewrap ---------------------------------------------------------------------


class RotateRewrapParams(TypedDict):
    spec_path: str
    key: str
    roots: list[str]
    mode: Mode
    dry_run: bool
    max_parallel: int
    rotate_first: bool
    batch_size: int
    reason: str
    kmsflow_conn_id: str


class RunConfig(TypedDict):
    """``plan``: the params checked against the spec."""

    spec_path: str
    mode: str
    keys: list[str]
    roots: list[str]
    batch_size: int
    max_parallel: int


Rotated = dict[str, str]
"""``rotate``: ``{crypto key: new primary version}``."""


class KeyRotation(TypedDict):
    primary: str
    previous_primary: str | None
    rotated: bool
    how: str  # first_run | none | kmsflow | automatic | external
    rotation_period_s: int | None
    next_rotation_time: str | None


class RotationEvent(TypedDict):
    """A ``KeyRotationTrigger`` event's payload (the asset event's ``extra["payload"]``)."""

    key: str
    previous_primary: str
    primary: str


class Detection(TypedDict):
    """``detect``: each key's primary vs. the last successful run's."""

    keys: dict[str, KeyRotation]
    primaries: dict[str, str]
    rotated: list[str]
    automatic: list[str]


class ScanStatistics(TypedDict):
    """Part of ``inventory.Inventory.to_dict()``: per-key and per-version statistics, findings."""

    keys: dict[str, dict[str, Any]]
    versions: dict[str, dict[str, Any]]
    envelope_count: int
    findings: list[FindingPayload]


class InventoryPayload(TypedDict):
    """``inventory``: the record URLs to visit (``targets``) and per-version counts."""

    scan_id: str
    complete: bool
    roots: list[str]
    envelopes: int
    other_keys_envelopes: int
    versions_before: dict[str, int]
    stale: int
    targets: list[str]
    blocking_findings: list[FindingPayload]
    summary: ScanStatistics


Batch = list[str]
"""One mapped instance's record URLs (``batches`` returns ``list[Batch]``)."""


class BatchReport(TypedDict):
    """What the two mapped tasks' reports share (``check`` and ``publish`` read these)."""

    dry_run: bool
    ok: bool
    started_at: str
    finished_at: str
    elapsed_s: float
    envelopes: int
    conflicts: list[IssuePayload]
    failures: list[IssuePayload]
    scan_complete: bool
    scan_findings: list[FindingPayload]
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    audit_events: int


class RewrapBatchReport(BatchReport):
    """``rewrap[i]``: ``lifecycle.RewrapReport.to_dict()`` plus ``audit_events``."""

    rewrapped: int
    would_rewrap: int
    already_current: int


class ReencryptResult(TypedDict):
    """One envelope of a re-encrypt batch (``lifecycle.reencrypt.EnvelopeOutcome.to_dict()``)."""

    url: str
    kind: str
    status: str  # reencrypted | would_reencrypt | failed | conflict
    old_envelope_id: str | None
    new_envelope_id: str | None
    old_version: str | None
    new_version: str | None
    files: int
    plaintext_bytes: int
    error: str
    reason: str


class ReencryptBatchReport(BatchReport):
    """``reencrypt[i]``: ``lifecycle.ReencryptReport.to_dict()`` plus per-version counts and
    ``audit_events``."""

    reencrypted: int
    would_reencrypt: int
    files: int
    plaintext_bytes: int
    recovered: list[IssuePayload]
    removed_temps: list[str]
    results: list[ReencryptResult]


ModeReport = TypeVar("ModeReport", RewrapBatchReport, ReencryptBatchReport)
"""The report of whichever mode's mapped task ran."""


class VerifyPayload(TypedDict):
    """``check``: the fresh scan's verdict (only returned when ``ok``; else the task fails)."""

    ok: bool
    scan_id: str
    scan_complete: bool
    envelopes: int
    versions_after: dict[str, int]
    not_primary: int
    issues: list[IssuePayload]
    batch_issues: list[IssuePayload]


class IfApplied(TypedDict, total=False):
    """Dry runs only: the per-version counts had the run been live."""

    versions_after_if_applied: dict[str, int]


class RunSummary(TypedDict):
    """``publish``: the run in numbers."""

    dry_run: bool
    mode: str
    keys: list[str]
    primaries: dict[str, str]
    rotated_since_last_run: list[str]
    automatic_rotations: list[str]
    rotated_by_this_run: dict[str, str]
    scan_id: str
    envelopes: int
    stale_before: int
    batches: int
    rewrapped: int
    would_rewrap: int
    reencrypted: int
    would_reencrypt: int
    audit_events: int
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    versions_after_if_applied: NotRequired[dict[str, int]]  # dry runs only
    verify_scan_id: str


# -- kmsflow_shred -----------------------------------------------------------------------------


class ShredParams(TypedDict):
    spec_path: str
    keys: list[str]
    dry_run: bool | None
    confirm: str
    restore_version: str
    restore_enable: bool
    reason: str
    kmsflow_conn_id: str


class ScanPayload(TypedDict):
    """``lifecycle.shred_report.ScanSummary.to_dict()``: one proof scan."""

    scan_id: str
    roots: list[str]
    complete: bool
    envelopes: int
    blocking_findings: list[FindingPayload]


class VersionDecisionPayload(TypedDict):
    version: str
    state: str
    outcome: str
    reason: str
    references: int
    scan_id: str | None
    since: str | None
    due: str | None


class KeyDecisionPayload(TypedDict):
    key: str
    primary: str | None
    roots: list[str]
    scan: ScanPayload | None
    blocked: str | None
    versions: list[VersionDecisionPayload]


class ShredReportPayload(TypedDict):
    """``shred``: ``lifecycle.ShredReport.to_dict()``."""

    run_id: str
    now: str
    dry_run: bool
    manual: bool
    summary: dict[str, int]
    scan_ids: list[str]
    keys: list[KeyDecisionPayload]


class RestoredPayload(TypedDict):
    """``restore``."""

    version: str
    state: str
    enabled: bool


# -- kmsflow_erase -----------------------------------------------------------------------------


class EraseParams(TypedDict):
    spec_path: str
    key: str
    confirm_tenant: str
    confirm_key: str
    reason: str
    prove_only: bool
    kmsflow_conn_id: str


class ErasedVersionPayload(TypedDict):
    version: str
    state_before: str
    state_after: str
    primary: bool
    destroy_time: str | None
    action: str


class EnvelopeCheckPayload(TypedDict):
    url: str
    crypto_key_version: str
    tenant: bool
    ok: bool
    detail: str
    state: str | None


class ErasureSummary(TypedDict):
    tenant_envelopes: int
    tenant_undecryptable: int
    other_envelopes: int
    other_still_decrypt: int
    problems: int


class ErasureReportPayload(TypedDict):
    """``erase`` / ``prove``: ``lifecycle.ErasureReport.to_dict()``."""

    key: str
    tenant: str
    run_id: str
    time: str
    ok: bool
    all_destroyed: bool
    versions: list[ErasedVersionPayload]
    scan_id: str
    snapshot_scan_id: str | None
    scan_complete: bool
    blocking_findings: list[FindingPayload]
    records_compared: bool
    tenant_envelopes: list[EnvelopeCheckPayload]
    other_envelopes: list[EnvelopeCheckPayload]
    summary: ErasureSummary


# -- kmsflow_ml_pipeline -----------------------------------------------------------------------


class MlParams(TypedDict):
    output_root: str
    key_name: str
    producer_conn_id: str
    consumer_conn_id: str
    signing_key: str  # "" = envelopes are not signed
    recipient: str  # "" = envelopes are wrapped by key_name in KMS


class Prepared(TypedDict):
    """``prepare`` (``multiple_outputs``: one XCom per key)."""

    staging: str
    output: str
    dataset_src: str
    dataset_dst: str


class ArtifactPayload(TypedDict):
    """What ``EncryptArtifactOperator`` pushes (``encrypt_dataset``, ``encrypt_files[i]``)."""

    src: str
    dst: str
    kind: str
    envelope_id: str
    crypto_key: str
    key_version: str
    file_count: int
    plaintext_bytes: int
    signed_by: NotRequired[str]  # only with ``sign_with``: the signing CryptoKeyVersion
    omitted: NotRequired[list[dict[str, str]]]  # only with ``skip_unsupported``


class LeastPrivilege(TypedDict):
    """``check_least_privilege``."""

    producer_decrypt: str
    consumer_encrypt: str


class ScorePayload(TypedDict):
    """``score``."""

    train_accuracy: float
    holdout_accuracy: float
    matches_training_metrics: bool
    envelopes: list[str]
