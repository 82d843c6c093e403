#!/bin/sh
# First start: create the system tables, the root password, the database and its user from
# MARIADB_* (as the official image does), with a server that listens on its socket only, so
# nothing can connect (and the healthcheck cannot pass) before the users exist. Then run
# mariadbd as user mysql with the given arguments.
set -eu
case "${1:-}" in -*) set -- mariadbd "$@" ;; esac
[ "$1" = mariadbd ] || exec "$@"
shift

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld "$DATADIR"

# A single-quoted SQL string literal (backslashes and quotes escaped).
sql_string() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"; }

if [ ! -d "$DATADIR/mysql" ]; then
  : "${MARIADB_ROOT_PASSWORD:?set MARIADB_ROOT_PASSWORD}"
  echo "entrypoint: initialising the database in $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=socket \
    --skip-test-db >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" --skip-networking &
  pid=$!
  i=0
  until mariadb-admin --socket="$SOCKET" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || { echo "entrypoint: the init server did not start" >&2; exit 1; }
    sleep 0.2
  done
  healthcheck_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  {
    echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($(sql_string "$MARIADB_ROOT_PASSWORD"));"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$MARIADB_ROOT_PASSWORD");"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    echo "CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY '$healthcheck_password';"
    echo "CREATE USER 'healthcheck'@'::1' IDENTIFIED BY '$healthcheck_password';"
    echo "CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '$healthcheck_password';"
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      : "${MARIADB_PASSWORD:?set MARIADB_PASSWORD with MARIADB_USER}"
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "$MARIADB_PASSWORD");"
      [ -z "${MARIADB_DATABASE:-}" ] || echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO $(sql_string "$MARIADB_USER")@'%';"
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$SOCKET" -uroot
  printf '[mariadb-client]\nport=3306\nuser=healthcheck\npassword=%s\n' "$healthcheck_password" > "$DATADIR/.my-healthcheck.cnf"
  chown mysql:mysql "$DATADIR/.my-healthcheck.cnf" && chmod 0600 "$DATADIR/.my-healthcheck.cnf"
  kill "$pid" && wait "$pid"
  echo "entrypoint: initialised"
fi
exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" --bind-address=0.0.0.0 "$@"
