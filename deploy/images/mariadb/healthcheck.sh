#!/bin/sh
# healthcheck.sh [--connect] [--innodb_initialized]: what docker-compose.yml asks of the
# official image's script. Connects over TCP as the healthcheck user written at the first start
# (the init server listens on its socket only, so this fails until the database is ready).
set -eu
connect=0 innodb=0
for arg in "$@"; do
  case "$arg" in
    --connect) connect=1 ;;
    --innodb_initialized) innodb=1 ;;
    *) echo "healthcheck.sh: unknown check $arg" >&2; exit 2 ;;
  esac
done
cnf=/var/lib/mysql/.my-healthcheck.cnf
[ -f "$cnf" ] || { echo "healthcheck.sh: not initialised yet" >&2; exit 1; }
query="SELECT 1"
[ $innodb = 1 ] && query="SELECT 1 FROM information_schema.ENGINES WHERE engine = 'InnoDB' AND support IN ('YES', 'DEFAULT')"
[ $connect = 1 ] || [ $innodb = 1 ] || query="SELECT 1"
out=$(mariadb --defaults-extra-file="$cnf" --protocol=tcp -h 127.0.0.1 -N -B -e "$query")
[ "$out" = 1 ]
