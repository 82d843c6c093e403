#!/usr/bin/env bash
# Builds the Docker Compose CLI plugin from Go modules (github.com/docker/compose/v2) into
# .cache/docker/cli-plugins, so `DOCKER_CONFIG=.cache/docker docker compose config` validates
# docker-compose.yml on a machine that has the Docker client but neither the compose plugin nor
# an engine. Prints the DOCKER_CONFIG folder. Idempotent: keeps a plugin built for this version.
set -euo pipefail

COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}

root=$(cd "$(dirname "$0")/.." && pwd)
config="$root/.cache/docker"
plugin="$config/cli-plugins/docker-compose"
mod="$root/.cache/compose-build"
mkdir -p "$config/cli-plugins" "$mod"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x "$plugin" && "$(cat "$plugin.version" 2>/dev/null)" == "$COMPOSE_VERSION" ]]; then
  echo "$config"
  exit 0
fi
echo "==> Building the docker compose plugin $COMPOSE_VERSION from Go modules (first time: a few minutes)" >&2
printf 'module microdash.local/compose\n\ngo 1.26\n\nrequire github.com/docker/compose/v2 %s\n' "$COMPOSE_VERSION" >"$mod/go.mod"
printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/docker/compose/v2/cmd"\n' >"$mod/tools.go"
(cd "$mod" && go mod tidy >/dev/null 2>"$mod/tidy.log") || { cat "$mod/tidy.log" >&2; exit 1; }
(cd "$mod" && go build -trimpath -ldflags "-s -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
  -o "$plugin" github.com/docker/compose/v2/cmd)
echo "$COMPOSE_VERSION" >"$plugin.version"
echo "$config"
