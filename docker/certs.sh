#!/usr/bin/env bash
# One-shot `certs` service of docker-compose.yml (runs in the Elasticsearch image as root):
# CA + node certificate, then (once es01 answers) the kibana_system password and the
# least-privilege role/user the pipeline writes with.  Safe to re-run: existing files are kept.
#
# Form of Elastic's docker-compose for a secured cluster (elastic/elasticsearch,
# docs/reference/setup/install/docker/docker-compose.yml): the working directory is $ES_HOME
# and every path is under config/certs/.  The elasticsearch-certutil wrapper changes to
# $ES_HOME before Java starts, so a path relative to any other directory would land in
# /usr/share/elasticsearch instead.
set -euo pipefail

ES_HOME=${ES_HOME:-/usr/share/elasticsearch}
cd "$ES_HOME"
CERTS=config/certs
CERTUTIL=bin/elasticsearch-certutil
ES_URL=${ES_URL:-https://es01:9200}
MEDIAMON_INDEX_PREFIX=${MEDIAMON_INDEX_PREFIX:-mediamon}

for v in ELASTIC_PASSWORD KIBANA_PASSWORD MEDIAMON_WRITER_PASSWORD; do
  if [ -z "${!v:-}" ]; then
    echo "certs: $v is not set: run 'mediamon secrets generate' and copy its output into .env" >&2
    exit 1
  fi
done

mkdir -p "$CERTS"
if [ ! -f "$CERTS/ca/ca.crt" ]; then
  echo "creating the CA"
  rm -f "$CERTS/ca.zip"   # certutil refuses to overwrite a leftover of an interrupted run
  "$CERTUTIL" ca --silent --pem -out "$CERTS/ca.zip"
  unzip -q -o "$CERTS/ca.zip" -d "$CERTS"
fi
if [ ! -f "$CERTS/es01/es01.crt" ]; then
  echo "creating the es01 certificate"
  rm -f "$CERTS/certs.zip"
  printf 'instances:\n  - name: es01\n    dns: [es01, localhost]\n    ip: [127.0.0.1]\n' > "$CERTS/instances.yml"
  "$CERTUTIL" cert --silent --pem -out "$CERTS/certs.zip" --in "$CERTS/instances.yml" \
    --ca-cert "$CERTS/ca/ca.crt" --ca-key "$CERTS/ca/ca.key"
  unzip -q -o "$CERTS/certs.zip" -d "$CERTS"
fi
# readable by the Airflow containers (uid AIRFLOW_UID, gid 0), the CA key by root only
chown -R root:root "$CERTS"
find "$CERTS" -type d -exec chmod 755 {} +
find "$CERTS" -type f -exec chmod 644 {} +
chmod 600 "$CERTS/ca/ca.key"

echo "waiting for es01"
until curl -s --cacert "$CERTS/ca/ca.crt" "$ES_URL" | grep -q "missing authentication credentials"; do
  sleep 5
done

es() {
  curl -s -f --cacert "$CERTS/ca/ca.crt" -u "elastic:${ELASTIC_PASSWORD}" \
    -H "Content-Type: application/json" "$@"
}

until es -X POST "$ES_URL/_security/user/kibana_system/_password" \
    -d "{\"password\": \"${KIBANA_PASSWORD}\"}" > /dev/null; do
  sleep 5
done
# least privilege for the pipeline: its own indices only, no cluster privileges
es -X PUT "$ES_URL/_security/role/mediamon_writer" -d "{
  \"cluster\": [],
  \"indices\": [{\"names\": [\"${MEDIAMON_INDEX_PREFIX}-*\"],
                 \"privileges\": [\"read\", \"write\", \"create_index\", \"view_index_metadata\"]}]}" > /dev/null
es -X PUT "$ES_URL/_security/user/mediamon_writer" -d "{
  \"password\": \"${MEDIAMON_WRITER_PASSWORD}\", \"roles\": [\"mediamon_writer\"],
  \"full_name\": \"mediamon pipeline writer\"}" > /dev/null
echo "certificates, kibana_system and mediamon_writer are ready"
