#!/usr/bin/env bash
# One-shot `airflow-init` service of docker-compose.yml (runs as root, "0:0", like the
# reference's airflow-init in apache/airflow airflow-core/docs/howto/docker-compose/docker-compose.yaml):
# 1. give the named volumes to ${AIRFLOW_UID}:0 (a volume created by an older image, or by
#    Docker for a path missing from the image, is root-owned 755 and the tasks could not write),
# 2. migrate the metadata DB and create the admin user (the image's /entrypoint does both when
#    _AIRFLOW_DB_MIGRATE / _AIRFLOW_WWW_USER_CREATE are set),
# 3. create the pools the mediamon_feeds DAG schedules into (without them its tasks never run).
set -euo pipefail

AIRFLOW_UID=${AIRFLOW_UID:-50000}
# every path of a named volume the Airflow containers write to (see x-airflow-common volumes)
WRITABLE=(/opt/airflow/logs /opt/airflow/mediamon-data /opt/airflow/model-cache)

/entrypoint airflow version
airflow pools set mediamon_fetch 4 "mediamon feed polling (mapped poll tasks)"
airflow pools set mediamon_translate 1 "mediamon translation: one model load at a time"

# last, as the reference does, so nothing the commands above wrote stays root-owned
mkdir -p "${WRITABLE[@]}"
chown -R "${AIRFLOW_UID}:0" "${WRITABLE[@]}"
chmod -R g+rwX "${WRITABLE[@]}"
echo "airflow-init done: volumes owned by ${AIRFLOW_UID}:0, database migrated, pools set"
