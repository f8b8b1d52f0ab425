# mediamon on Apache Airflow 3: the image used by every Airflow service and by the one-shot
# `mediamon-setup` service of docker-compose.yml.
#   docker compose build        (or: docker build -t mediamon-airflow .)
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.12
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# CPU-only torch first, from the PyTorch CPU index, so the project install does not pull the
# multi-GB CUDA build from PyPI.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY --chown=airflow:root pyproject.toml README.md /opt/mediamon/
COPY --chown=airflow:root pipeline /opt/mediamon/pipeline
COPY --chown=airflow:root config /opt/mediamon/config
COPY --chown=airflow:root docker /opt/mediamon/docker
# pin apache-airflow to the base image's version so installing the project cannot up/downgrade it
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /opt/mediamon

# The paths docker-compose.yml mounts named volumes at must exist in the image, owned by the
# airflow user and group 0 with group write: a fresh named volume copies them, and the
# containers run as ${AIRFLOW_UID}:0 (any uid, group 0 -- the Airflow image's convention).
# Volumes created before this (root-owned) are fixed by airflow-init (docker/airflow-init.sh).
USER root
RUN mkdir -p /opt/airflow/mediamon-data /opt/airflow/model-cache \
    && chown -R airflow:0 /opt/airflow/mediamon-data /opt/airflow/model-cache \
    && chmod -R g+rwX /opt/airflow/mediamon-data /opt/airflow/model-cache
USER airflow

ENV MEDIAMON_CONFIG_DIR=/opt/mediamon/config \
    MEDIAMON_DATA_DIR=/opt/airflow/mediamon-data \
    HF_HOME=/opt/airflow/model-cache
WORKDIR /opt/airflow
