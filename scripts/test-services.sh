#!/usr/bin/env bash
# PostgreSQL and Redis on loopback for the CeleryExecutor end-to-end test
# (tests/test_airflow_celery.py), from the Debian packages:
#   scripts/test-services.sh install   apt-get install postgresql redis-server shellcheck chromium (root)
#   scripts/test-services.sh start     start both on 127.0.0.1, create the test role
#   scripts/test-services.sh stop      stop both
# The test connects to MEDIAMON_TEST_POSTGRES_URL / MEDIAMON_TEST_REDIS_URL (defaults below).
# PostgreSQL refuses to run as root: the Debian cluster tools switch to the postgres user.
set -euo pipefail

PG_ROLE=${PG_ROLE:-mediamon_test}
PG_PASSWORD=${PG_PASSWORD:-mediamon_test}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_DIR=${REDIS_DIR:-/tmp/mediamon-test-redis}

pg_cluster() {  # "<version> <name>" of the first cluster, created if there is none
  local line
  line=$(pg_lsclusters --no-header 2>/dev/null | head -n 1 || true)
  if [ -z "$line" ]; then
    local ver
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)
    pg_createcluster "$ver" main >/dev/null
    line=$(pg_lsclusters --no-header | head -n 1)
  fi
  echo "$line" | awk '{print $1, $2}'
}

case "${1:-}" in
  install)
    apt-get update -qq
    # chromium: tests/test_web_browser.py (Playwright launches Debian's executable; no browser download)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server shellcheck chromium >/dev/null
    ;;
  start)
    read -r ver name < <(pg_cluster)
    pg_ctlcluster "$ver" "$name" start -- -o "-c listen_addresses=127.0.0.1" 2>/dev/null \
      || pg_ctlcluster "$ver" "$name" status >/dev/null
    for _ in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 && break
      sleep 1
    done
    runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${PG_ROLE}') THEN
          CREATE ROLE ${PG_ROLE} LOGIN CREATEDB PASSWORD '${PG_PASSWORD}';
        END IF; END \$\$;"
    mkdir -p "$REDIS_DIR"
    if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
      redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save "" --appendonly no \
        --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
    fi
    for _ in $(seq 1 30); do
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
      sleep 1
    done
    echo "test services: postgresql $ver/$name and redis :$REDIS_PORT on 127.0.0.1"
    ;;
  stop)
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    if read -r ver name < <(pg_lsclusters --no-header 2>/dev/null | head -n 1 | awk '{print $1, $2}'); then
      pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
    fi
    ;;
  *)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
