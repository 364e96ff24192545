"""Triggers (run in the Airflow triggerer): the deferrable sensor's, and the asset watchers'."""

from kmsflow.airflow.triggers.key_rotation import KeyRotationTrigger
from kmsflow.airflow.triggers.key_spec import KeySpecChangeTrigger
from kmsflow.airflow.triggers.key_version import KeyVersionStateTrigger

__all__ = ["KeyRotationTrigger", "KeySpecChangeTrigger", "KeyVersionStateTrigger"]
