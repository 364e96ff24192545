"""Loading and validating key specs: the seed example, defaults, and field-path error messages."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from kmsflow.kms.iam import ADMIN_ROLE, CONSUMER_ROLE, PRODUCER_ROLE, VIEWER_ROLE
from kmsflow.spec import KeySpec, SpecError, load_spec

SEED = Path(__file__).resolve().parents[2] / "examples" / "specs" / "seed.yaml"
PIPELINE = "serviceAccount:ml-pipeline@kmsflow-demo.iam.gserviceaccount.com"


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(textwrap.dedent(text))
    return info.value.problems


def test_seed_example_reproduces_the_pulumi_seed() -> None:
    spec = load_spec(SEED)
    assert spec.project == "kmsflow-demo"
    assert spec.location_name == "projects/kmsflow-demo/locations/us-central1"
    [ring] = spec.key_rings
    assert ring.id == "ai-key-ring"
    assert ring.wanted_iam() == {ADMIN_ROLE: {"user:kms-admin@example.com"}}
    key = ring.keys[0]
    assert key.id == "ai-crypto-key"
    assert (key.purpose, key.algorithm, key.protection_level) == (
        "ENCRYPT_DECRYPT",
        "GOOGLE_SYMMETRIC_ENCRYPTION",
        "SOFTWARE",
    )
    assert key.rotation_period == timedelta(seconds=7776000) == timedelta(days=90)
    assert key.wanted_iam() == {
        PRODUCER_ROLE: {PIPELINE},
        CONSUMER_ROLE: {"serviceAccount:inference@kmsflow-demo.iam.gserviceaccount.com"},
    }
    assert key.roots == ["demo-output/artifacts"]
    tenant_key = ring.keys[1]
    assert tenant_key.tenant == "acme"
    assert tenant_key.retention.soak_period == timedelta(days=1)
    assert [name for name, _ in spec.crypto_keys()] == [
        "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring/cryptoKeys/ai-crypto-key",
        "projects/kmsflow-demo/locations/us-central1/keyRings/ai-key-ring/cryptoKeys/tenant-acme-key",
    ]
    assert spec.find_key(spec.key_name("ai-key-ring", "tenant-acme-key")) is tenant_key
    assert spec.find_key(spec.key_name("ai-key-ring", "nope")) is None


def test_load_spec_accepts_a_path_string_text_and_a_mapping() -> None:
    from_path = load_spec(str(SEED))
    from_text = load_spec(SEED.read_text())
    from_dict = load_spec(from_path.to_dict())
    assert from_path == from_text == from_dict


def test_defaults_are_sensible() -> None:
    spec = load_spec("project: p\nlocation: global\nkey_rings: [{id: r, keys: [{id: k}]}]\n")
    key = spec.key_rings[0].keys[0]
    assert key.purpose == "ENCRYPT_DECRYPT"
    assert key.algorithm == "GOOGLE_SYMMETRIC_ENCRYPTION"
    assert key.protection_level == "SOFTWARE"
    assert key.rotation_period == timedelta(days=90)
    assert key.destroy_scheduled_duration is None  # KMS default, not managed
    assert key.labels is None  # not managed
    assert key.retention.retired_version_enabled_for == timedelta(days=30)
    assert key.retention.soak_period == timedelta(days=7)
    assert key.wanted_iam() == {}
    assert key.tenant is None and key.roots == []


def test_rotation_null_means_no_automatic_rotation() -> None:
    spec = load_spec("project: p\nlocation: l\nkey_rings: [{id: r, keys: [{id: k, rotation_period: null}]}]")
    assert spec.key_rings[0].keys[0].settings().rotation_period is None


def test_producers_given_empty_still_owns_the_role() -> None:
    """`producers: []` means "nobody may encrypt" (revoke all), not "leave the role alone"."""
    spec = load_spec(
        """
        project: p
        location: l
        key_rings:
          - id: r
            keys:
              - {id: a, producers: []}
              - {id: b}
              - id: c
                iam: {roles/cloudkms.cryptoKeyEncrypter: ["user:x@example.com"]}
                producers: ["user:y@example.com"]
        """
    )
    a, b, c = spec.key_rings[0].keys
    assert a.wanted_iam() == {PRODUCER_ROLE: set()}
    assert b.wanted_iam() == {}
    assert c.wanted_iam() == {PRODUCER_ROLE: {"user:x@example.com", "user:y@example.com"}}
    # ...and that survives the JSON round trip used for XCom.
    assert load_spec(spec.to_dict()).key_rings[0].keys[0].wanted_iam() == {PRODUCER_ROLE: set()}


def test_bad_durations_are_reported_with_field_paths() -> None:
    problems = _problems(
        """
        project: p
        location: us-central1
        key_rings:
          - id: r
            keys:
              - {id: ok}
              - id: fast
                rotation_period: 1h
                destroy_scheduled_duration: 121d
                retention: {soak_period: soon}
        """
    )
    assert problems == [
        "key_rings[0].keys[1].rotation_period: must be at least 24h (got 1h)",
        "key_rings[0].keys[1].destroy_scheduled_duration: must be within 24h..120d (got 121d)",
        "key_rings[0].keys[1].retention.soak_period: not a duration: 'soon' "
        "(want e.g. 90d, 2160h, 30m, 7776000s or 1d12h)",
    ]


def test_bad_ids_roles_and_members_are_reported_with_field_paths() -> None:
    problems = _problems(
        """
        project: "my project"
        location: us-central1
        key_rings:
          - id: ring
            iam:
              roles/owner: [user:a@example.com]
              roles/cloudkms.admin: [alice@example.com, allUsers]
            keys:
              - id: key.with.dots
                producers: [robot:x@example.com]
                consumers: [user:nobody]
        """
    )
    assert problems[0] == "project: must match [a-zA-Z0-9_-]{1,63} (got 'my project')"
    assert problems[1].startswith("key_rings[0].iam['roles/owner']: unknown role 'roles/owner' (known:")
    assert ADMIN_ROLE in problems[1] and VIEWER_ROLE in problems[1]
    assert problems[2].startswith(
        "key_rings[0].iam['roles/cloudkms.admin'][0]: 'alice@example.com' is not an IAM member"
    )
    assert problems[3] == (
        "key_rings[0].iam['roles/cloudkms.admin'][1]: allUsers is refused: a KMS key must never be public"
    )
    assert problems[4] == "key_rings[0].keys[0].id: must match [a-zA-Z0-9_-]{1,63} (got 'key.with.dots')"
    assert problems[5].startswith("key_rings[0].keys[0].producers[0]: 'robot:x@example.com'")
    assert problems[6] == (
        "key_rings[0].keys[0].consumers[0]: 'user:nobody': 'nobody' is not an email address"
    )
    assert len(problems) == 7


def test_structure_problems_typos_and_missing_fields() -> None:
    problems = _problems(
        """
        location: us-central1
        key_rings:
          - id: r
            keys:
              - id: k
                rotaton_period: 30d
                protection_level: SOFT
                algorithm: AES_GCM
                labels: {Team: ml}
                roots: "not-a-list"
        """
    )
    assert problems == [
        "project: required",
        "key_rings[0].keys[0].algorithm: must be one of Cloud KMS algorithm names (got 'AES_GCM')",
        "key_rings[0].keys[0].protection_level: must be one of SOFTWARE, HSM, EXTERNAL, "
        "EXTERNAL_VPC (got 'SOFT')",
        "key_rings[0].keys[0].labels: label key 'Team' must match [a-z][a-z0-9_-]{0,62}",
        "key_rings[0].keys[0].roots: input should be a valid list (got 'not-a-list')",
        "key_rings[0].keys[0].rotaton_period: unknown field (check the spelling)",
    ]


def test_duplicates_and_incompatible_algorithms_are_reported() -> None:
    problems = _problems(
        """
        project: p
        location: l
        key_rings:
          - id: r
            keys:
              - {id: k}
              - {id: k}
              - {id: rsa, algorithm: RSA_SIGN_PSS_2048_SHA256}
          - id: r
        """
    )
    assert problems == [
        "key_rings[0].keys[1].id: duplicate key id 'k' in key ring 'r' (also keys[0])",
        "key_rings[0].keys[2].algorithm: ENCRYPT_DECRYPT keys need GOOGLE_SYMMETRIC_ENCRYPTION "
        "(got 'RSA_SIGN_PSS_2048_SHA256')",
        "key_rings[1].id: duplicate key ring id 'r' (also key_rings[0])",
    ]


def test_spec_error_message_lists_every_problem() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("project: p\nlocation: l\nkey_rings: [{id: r, keys: [{id: k, rotation_period: 2h}]}]")
    assert str(info.value) == (
        "invalid key spec (1 problem):\n"
        "  - key_rings[0].keys[0].rotation_period: must be at least 24h (got 2h)"
    )


def test_yaml_errors_and_wrong_shapes(tmp_path: Path) -> None:
    assert _problems("project: p\nkey_rings: [unclosed\n")[0].startswith("line 3, column 1: not valid YAML")
    assert _problems("- just\n- a list\n") == [
        "(document): want a mapping with project, location, key_rings (got list)"
    ]
    missing = tmp_path / "nope.yaml"
    assert _problems(str(missing)) == [f"(document): no such spec file {str(missing)!r}"]
    path = tmp_path / "bad.yaml"
    path.write_text("project: p\nlocation: l\nkey_rings: [{id: r, extra: 1}]\n")
    with pytest.raises(SpecError, match=r"(?s)invalid .*bad\.yaml .*key_rings\[0\]\.extra: unknown field"):
        load_spec(path)


def test_to_dict_is_json_safe_and_round_trips() -> None:
    import json

    spec = load_spec(SEED)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["key_rings"][0]["keys"][0]["rotation_period"] == "90d"
    assert KeySpec.model_validate(data) == spec
