"""The kmsflow Key Lifecycle page, for an Airflow that loads plugins from this folder.

Installing ``airflow-provider-kmsflow`` already registers the page through the provider's
``airflow.plugins`` entry point; a second class named ``kmsflow`` here would make Airflow log
"Plugin 'kmsflow' already registered" and list an import error. So this file exposes the plugin
class only where the entry point is missing (the provider's source on ``PYTHONPATH``, not
installed) and is empty otherwise.
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.name == "kmsflow" for ep in entry_points(group="airflow.plugins")):
    from kmsflow.airflow.plugin import KmsflowPlugin

    __all__ = ["KmsflowPlugin"]
