"""Hooks binding a ``kmsflow`` Airflow connection to the Airflow-free KMS core."""

from kmsflow.airflow.hooks.kms import KmsAsyncHook, KmsHook

__all__ = ["KmsAsyncHook", "KmsHook"]
