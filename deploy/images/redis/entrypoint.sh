#!/bin/sh
# Like the official image: `redis-server ARGS` serves on every interface of the container with
# protected mode off and its files in /data (the working directory).
set -eu
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
  shift
  exec redis-server --bind '* -::*' --protected-mode no --dir /data "$@"
fi
exec "$@"
