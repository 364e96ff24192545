"""kmsflow: Cloud KMS key lifecycle and streaming envelope encryption of ML artifacts.

The core (``kmsflow.kms``, ``kmsflow.emulator`` and, later, ``kmsflow.envelope``) never imports
Airflow, so an E2EE consumer can install the package without it.
"""

__version__ = "0.1.0"
