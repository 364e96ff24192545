"""kmsflow: Cloud KMS key lifecycle and streaming envelope encryption of ML artifacts.

The core (everything but ``kmsflow.airflow``) never imports Airflow, so an E2EE consumer can install
the package without it. Neither the core nor the provider imports the KMS/GCS emulators: they are the
separate ``kmsflow-emulator`` dev/test distribution (``kmsflow_emulator``).
"""

__version__ = "0.1.0"
