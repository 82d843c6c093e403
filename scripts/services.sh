#!/usr/bin/env bash
# Starts or stops the services the tests need, from Debian packages, on loopback only, with
# their data under .cache/services (ignored by git):
#   PostgreSQL 127.0.0.1:55432, MariaDB 127.0.0.1:53306, Redis 127.0.0.1:56379,
#   Mosquitto 127.0.0.1:51883, etcd 127.0.0.1:52379 + kube-apiserver https://127.0.0.1:56443
#   (built from Go modules by scripts/kube-tools.sh; see scripts/services/kube.sh).
# `scripts/services.sh start` installs what is missing, starts what is not running (idempotent)
# and prints the environment the tests read; `scripts/services.sh stop` stops them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.cache/services"
PG_PORT=55432 MY_PORT=53306 REDIS_PORT=56379 MQTT_PORT=51883
PASSWORD=microdash-test

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

wait_for() { # command, what
  for _ in $(seq 1 100); do "${@:1:$#-1}" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "error: ${*: -1} did not start; see its log under $DIR" >&2
  return 1
}

# PostgreSQL runs as user postgres, which must reach its data directory. A checkout inside a
# private folder (`mktemp -d` makes 0700 ones) is out of its reach: the data then goes to
# /var/tmp, one directory per checkout.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

pg_data() {
  mkdir -p "$DIR"
  if as_postgres test -x "$DIR" 2>/dev/null; then
    echo "$DIR/postgres"
  else
    echo "/var/tmp/microdash-test-postgres-$(printf %s "$DIR" | sha256sum | cut -c1-12)"
  fi
}

start_postgres() {
  local bin data
  bin=$(pg_bin)
  data=$(pg_data)
  if [[ ! -f "$data/PG_VERSION" ]]; then
    mkdir -p "$data" && chown postgres:postgres "$data" && chmod 700 "$data"
    echo "$PASSWORD" > "$data.pgpass" && chown postgres "$data.pgpass"
    as_postgres "$bin/initdb" -D "$data" -U microdash --pwfile="$data.pgpass" -A scram-sha-256 >/dev/null
    rm -f "$data.pgpass"
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $data -c fsync=on -c max_connections=200" start >/dev/null
  fi
  PGPASSWORD=$PASSWORD wait_for psql -h 127.0.0.1 -p $PG_PORT -U microdash -d postgres -c 'select 1' PostgreSQL
}

start_mariadb() {
  local data="$DIR/mariadb"
  mkdir -p "$DIR"
  if [[ ! -d "$data/mysql" ]]; then
    mkdir -p "$data"
    mariadb-install-db --datadir="$data" --user=root --auth-root-authentication-method=socket >/dev/null
  fi
  if ! mariadb-admin --socket="$data/mysqld.sock" ping >/dev/null 2>&1; then
    (mariadbd --datadir="$data" --socket="$data/mysqld.sock" --pid-file="$data/mysqld.pid" --port=$MY_PORT \
      --bind-address=127.0.0.1 --user=root --innodb-flush-log-at-trx-commit=1 --max-connections=300 \
      >"$DIR/mariadb.log" 2>&1 &)
    wait_for mariadb-admin --socket="$data/mysqld.sock" ping MariaDB
  fi
  mariadb --socket="$data/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'microdash'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
    GRANT ALL PRIVILEGES ON *.* TO 'microdash'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_redis() {
  mkdir -p "$DIR/redis"
  if ! redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port $REDIS_PORT --dir "$DIR/redis" --appendonly yes --appendfsync everysec \
      --daemonize yes --logfile "$DIR/redis.log" --pidfile "$DIR/redis/redis.pid" >/dev/null
    wait_for redis-cli -p $REDIS_PORT ping Redis
  fi
}

# Always a fresh broker: persistent sessions left by earlier runs' bridges would still take
# their share of a shared subscription.
start_mosquitto() {
  "$ROOT/scripts/services/mosquitto.sh" install
  [[ -d "$DIR/mosquitto" ]] && "$ROOT/scripts/services/mosquitto.sh" stop "$DIR/mosquitto" >/dev/null 2>&1 || true
  rm -rf "$DIR/mosquitto"
  "$ROOT/scripts/services/mosquitto.sh" start "$DIR/mosquitto" $MQTT_PORT >&2
}

# The tests and benchmarks make a database each (md_test_*, microdash_bench_*) and leave it for
# a failure to be looked at; at `stop` no test is running, so they go: left alone, a checkout's
# PostgreSQL grew to 4.5 GB over some hundred runs.
drop_test_databases() {
  local pg_list my_list
  pg_list=$(PGPASSWORD=$PASSWORD psql -h 127.0.0.1 -p $PG_PORT -U microdash -d postgres -Atc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'md\_test\_%' OR datname LIKE 'microdash\_bench\_%'" 2>/dev/null) || true
  [[ -z "$pg_list" ]] || printf 'DROP DATABASE IF EXISTS %s WITH (FORCE);\n' $pg_list |
    PGPASSWORD=$PASSWORD psql -h 127.0.0.1 -p $PG_PORT -U microdash -d postgres -q >/dev/null 2>&1 || true
  [[ -S "$DIR/mariadb/mysqld.sock" ]] || return 0
  my_list=$(mariadb --socket="$DIR/mariadb/mysqld.sock" -N -e \
    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'md\_test\_%' OR schema_name LIKE 'microdash\_bench\_%'" 2>/dev/null) || true
  [[ -z "$my_list" ]] || printf 'DROP DATABASE IF EXISTS `%s`;\n' $my_list |
    mariadb --socket="$DIR/mariadb/mysqld.sock" >/dev/null 2>&1 || true
}

case "${1:-}" in
  start)
    ensure_debs postgresql postgresql-client mariadb-server mariadb-client redis-server
    start_postgres
    start_mariadb
    start_redis
    start_mosquitto
    "$ROOT/scripts/services/kube.sh" start "$DIR/kube"
    echo "export MICRODASH_TEST_KUBECONFIG=$DIR/kube/kubeconfig"
    echo "export MICRODASH_TEST_KUBE_BIN=$("$ROOT/scripts/kube-tools.sh")"
    echo "export MICRODASH_TEST_MOSQUITTO=127.0.0.1:$MQTT_PORT"
    echo "export MICRODASH_TEST_POSTGRES_URL=postgres://microdash:$PASSWORD@127.0.0.1:$PG_PORT/postgres"
    echo "export MICRODASH_TEST_MYSQL_URL=mysql://microdash:$PASSWORD@127.0.0.1:$MY_PORT/mysql"
    echo "export MICRODASH_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    ;;
  stop)
    drop_test_databases
    pg=$(pg_data)
    [[ -d "$pg" ]] && as_postgres "$(pg_bin)/pg_ctl" -D "$pg" -m fast stop >/dev/null 2>&1 || true
    [[ -S "$DIR/mariadb/mysqld.sock" ]] && mariadb-admin --socket="$DIR/mariadb/mysqld.sock" shutdown >/dev/null 2>&1 || true
    redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
    [[ -d "$DIR/mosquitto" ]] && "$ROOT/scripts/services/mosquitto.sh" stop "$DIR/mosquitto" >/dev/null 2>&1 || true
    "$ROOT/scripts/services/kube.sh" stop "$DIR/kube" >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
