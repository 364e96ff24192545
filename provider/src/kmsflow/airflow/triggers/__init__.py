"""Triggers (run in the Airflow triggerer) for deferrable kmsflow sensors."""

from kmsflow.airflow.triggers.key_version import KeyVersionStateTrigger

__all__ = ["KeyVersionStateTrigger"]
