"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``, Airflow 3.2+) rather
than through the deprecated hook methods ``get_connection_form_widgets``/``get_ui_field_behaviour``,
so the UI can render the form without importing the hook (or wtforms).
"""

from __future__ import annotations

from typing import Any

from kmsflow import __version__

_INTEGRATION = "Google Cloud KMS (kmsflow)"


def _string(label: str, description: str, *, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if fmt:
        schema["format"] = fmt
    return {"label": label, "description": description, "schema": schema}


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "project": _string("Project Id", "Default Google Cloud project (used for console links)."),
    "key_path": _string("Keyfile Path", "Path to a service-account JSON key on the workers."),
    "keyfile_dict": _string("Keyfile JSON", "Service-account JSON key contents.", fmt="password"),
    "credential_config_file": _string(
        "Credential Configuration File", "Workload identity federation configuration (path or JSON)."
    ),
    "scope": _string("Scopes (comma separated)", "OAuth scopes; default cloud-platform."),
    "impersonation_chain": _string(
        "Impersonation Chain", "Service account(s) to impersonate, comma separated (last one is used)."
    ),
    "quota_project_id": _string("Quota Project ID", "Project billed for API quota."),
    "endpoint": _string(
        "Emulator endpoint (host:port)",
        "Talk plaintext gRPC to a kmsflow-emulator instead of Cloud KMS (else KMS_EMULATOR_HOST, if set).",
    ),
    "principal": _string(
        "Emulator principal",
        "IAM member the emulator sees as the caller (x-kmsflow-principal), e.g. "
        "serviceAccount:pipeline@proj.iam.gserviceaccount.com. Falls back to KMSFLOW_PRINCIPAL.",
    ),
    "audit_log": _string(
        "Audit log",
        "Where kmsflow records every state-changing KMS action (local path or gs://bucket/prefix).",
    ),
    "deadline": {
        "label": "Retry deadline (seconds)",
        "description": "Total time transient KMS errors are retried before a call fails.",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the kmsflow provider to Airflow's providers manager."""
    return {
        "package-name": "airflow-provider-kmsflow",
        "name": "kmsflow",
        "description": (
            "Cloud KMS key lifecycle (key rings, keys, rotation, version states, IAM, declarative "
            "specs) and envelope encryption of ML artifacts."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://cloud.google.com/kms/docs",
                "tags": ["gcp"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "kmsflow",
                "hook-class-name": "kmsflow.airflow.hooks.kms.KmsHook",
                "hook-name": "Cloud KMS (kmsflow)",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "password", "port", "extra"],
                    "relabeling": {},
                    "placeholders": {
                        "endpoint": "127.0.0.1:8093",
                        "principal": "user:me@example.com",
                        "project": "my-project",
                    },
                },
                "conn-fields": CONN_FIELDS,
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": ["kmsflow.airflow.hooks.kms"]}],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "kmsflow.airflow.operators.key_ring",
                    "kmsflow.airflow.operators.crypto_key",
                    "kmsflow.airflow.operators.versions",
                    "kmsflow.airflow.operators.iam",
                    "kmsflow.airflow.operators.secrets",
                    "kmsflow.airflow.operators.artifacts",
                ],
            }
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["kmsflow.airflow.sensors.key_version"]}
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "kmsflow.airflow.triggers.key_version",
                    "kmsflow.airflow.triggers.key_rotation",
                    "kmsflow.airflow.triggers.key_spec",
                ],
            }
        ],
        "extra-links": ["kmsflow.airflow.links.KmsConsoleLink"],
    }
