# kmsflow's Airflow image: the official Airflow image (3.3.2 on Python 3.11, the versions
# requirements/lock.txt was compiled for) plus the provider, every dependency at its locked version.
# Nothing of the dev/test emulators (emulator/) goes in: they are not product.
#
#   docker compose build          (docker-compose.yaml builds this file for every Airflow service)
#
# requirements/lock.txt is used as a *constraint* file: it pins every package the provider and its
# [airflow] and [examples] extras pull in, without installing anything the provider does not ask for
# (the lock's test and emulator entries are ignored). apache-airflow is named so pip keeps the
# image's own version instead of resolving it again. Edit provider/pyproject.toml and run
# scripts/lock.sh to change a version, never this file.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements/lock.txt /opt/kmsflow/lock.txt
COPY --chown=airflow:0 provider /opt/kmsflow/provider
RUN pip install --no-cache-dir --constraint /opt/kmsflow/lock.txt \
        "apache-airflow==3.3.2" "/opt/kmsflow/provider[airflow,examples]"
