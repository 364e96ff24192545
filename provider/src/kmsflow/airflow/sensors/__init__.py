"""Sensors for kmsflow."""

from kmsflow.airflow.sensors.key_version import KeyVersionStateSensor

__all__ = ["KeyVersionStateSensor"]
