"""Every audit event's ``action``, named once.

The values are what the audit log stores and what ``kmsflow audit --action`` filters on; a
``StrEnum`` member is its string, so events read back from older logs compare equal.
``provision-<change>`` events (one per landed spec change) are built by :func:`provision`.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a state-changing KMS action (or its proof) was."""

    ROTATE = "rotate"
    REWRAP_BATCH = "rewrap-batch"
    REENCRYPT_BATCH = "reencrypt-batch"
    DISABLE = "disable"
    SOAK_START = "soak-start"
    DESTROY = "destroy"
    DESTROYED_CONFIRMED = "destroyed-confirmed"
    RESTORE = "restore"
    ERASE = "erase"
    ERASE_PROVED = "erase-proved"


SOAK_ACTIONS = (Action.DISABLE, Action.SOAK_START, Action.RESTORE)
"""The events that start (or restart) a retired version's soak clock."""


def provision(change_action: str) -> str:
    """The action of a landed provisioning change (``provision-create``, ``provision-grant``, ...)."""
    return f"provision-{change_action}"
