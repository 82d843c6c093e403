#!/usr/bin/env bash
# A throwaway Mosquitto for the MQTT tests and the bench, on loopback, not under systemd.
#
#   scripts/services/mosquitto.sh install          # Debian packages mosquitto + mosquitto-clients (+ openssl for the TLS test)
#   scripts/services/mosquitto.sh start DIR PORT   # config, persistence and log in DIR; waits until it listens
#   scripts/services/mosquitto.sh stop DIR         # SIGTERM (it saves its persistence file), waits for the exit
#
# Then: export MICRODASH_TEST_MOSQUITTO=127.0.0.1:PORT
# Anonymous access is allowed: this broker is for tests on 127.0.0.1 only.
set -euo pipefail

MOSQUITTO=/usr/sbin/mosquitto

install() {
    if [[ -x $MOSQUITTO ]] && command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null \
        && command -v openssl >/dev/null; then
        return 0
    fi
    echo "Installing mosquitto, mosquitto-clients and openssl …" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq mosquitto mosquitto-clients openssl >/dev/null 2>&1 </dev/null
    # The package starts a system-wide broker on :1883; the tests start their own.
    if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
        systemctl stop mosquitto || true
    fi
}

start() {
    local dir=${1:?usage: start DIR PORT} port=${2:?usage: start DIR PORT}
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/mosquitto.pid ]] && kill -0 "$(cat "$dir/mosquitto.pid")" 2>/dev/null; then
        echo "mosquitto already runs from $dir (pid $(cat "$dir/mosquitto.pid"))" >&2
        return 0
    fi
    cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
# Run as root, Mosquitto would switch to its own user and could not write to DIR.
user $(id -un)
allow_anonymous true
persistence true
persistence_location $dir/
log_dest file $dir/mosquitto.log
# Room for a bridge that acknowledges only after a durable commit, and for the messages
# queued while it is away (Mosquitto's defaults are 20 and 1000).
max_inflight_messages 1000
max_queued_messages 1000000
CONF
    # Not -d: the pid file is ours, and the process stays in the caller's process group.
    (
        cd "$dir"
        nohup "$MOSQUITTO" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.out" 2>&1 &
        echo $! >"$dir/mosquitto.pid"
    )
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "mosquitto listens on 127.0.0.1:$port (pid $(cat "$dir/mosquitto.pid"), files in $dir)" >&2
            return 0
        fi
        if ! kill -0 "$(cat "$dir/mosquitto.pid")" 2>/dev/null; then
            echo "mosquitto exited; its output:" >&2
            cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    echo "mosquitto did not listen on 127.0.0.1:$port within 10 s" >&2
    return 1
}

stop() {
    local dir=${1:?usage: stop DIR}
    local pidfile=$dir/mosquitto.pid
    [[ -f $pidfile ]] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" "${3:-}" ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: $0 install | start DIR PORT | stop DIR" >&2
        exit 2
        ;;
esac
