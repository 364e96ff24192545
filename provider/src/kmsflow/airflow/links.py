"""Extra link from a task to the key (or key ring) it touched, in the Google Cloud console.

Airflow 3 computes operator links on the worker when the task finishes (``finalize`` calls
``get_link`` with the executed operator) and stores the URL in XCom under ``xcom_key``; the UI only
reads that XCom. So ``get_link`` may simply look at the operator's rendered attributes: every kmsflow
operator exposes the resource it acted on as ``console_resource`` (a KMS resource name, possibly set
during ``execute`` once the name is known).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

CONSOLE = "https://console.cloud.google.com/security/kms"

_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/keyRings/(?P<ring>[^/]+)"
    r"(?:/cryptoKeys/(?P<key>[^/]+))?(?:/cryptoKeyVersions/[^/]+)?$"
)


def console_url(resource: str) -> str:
    """The console page of a key ring, key or key version (its key) name; "" for anything else."""
    match = _NAME.match(resource or "")
    if not match:
        return ""
    project, location, ring, key = (
        quote(match[g] or "", safe="") for g in ("project", "location", "ring", "key")
    )
    if key:
        return f"{CONSOLE}/key/manage/{location}/{ring}/{key}?project={project}"
    return f"{CONSOLE}/keyring/manage/{location}/{ring}/key?project={project}"


class KmsConsoleLink(BaseOperatorLink):
    """ "Cloud KMS console" button on kmsflow tasks."""

    name = "Cloud KMS console"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        resource: Any = getattr(operator, "console_resource", None)
        return console_url(resource) if isinstance(resource, str) else ""
