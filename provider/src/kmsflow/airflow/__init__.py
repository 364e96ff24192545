"""Apache Airflow integration for kmsflow: hooks, operators, sensors, triggers, provider info.

Deliberately empty of imports: Airflow's providers manager imports ``kmsflow.airflow.get_provider_info``
during discovery, and pulling operators (and with them ``airflow.sdk``) in here would make every
``airflow`` CLI start-up pay for them, or worse, import cycles. Import from the subpackages instead:
``kmsflow.airflow.hooks``, ``kmsflow.airflow.operators``, ``kmsflow.airflow.sensors``,
``kmsflow.airflow.triggers``.
"""
