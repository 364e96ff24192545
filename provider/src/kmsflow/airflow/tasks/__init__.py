"""The kmsflow DAGs' task logic: plain, typed, testable functions the files in ``dags/`` wire up.

One module per DAG (``provision``, ``rotate_rewrap``, ``shred``, ``erase``, ``ml_pipeline``), what
they share in ``common`` (spec path and loading, ``hook_scope``, ``run_label``, audit log, clock),
and the shape of every XCom passed between tasks in ``payloads`` (TypedDicts).

Deliberately empty of imports (like :mod:`kmsflow.airflow`): a DAG file imports only the modules it
wires, and nothing here creates a KMS client at import time.
"""
