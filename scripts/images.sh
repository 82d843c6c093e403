#!/usr/bin/env bash
# `make images`: builds the three microdash images locally, tagged $TAG (default dev):
#   microdash:$TAG, microdash-agent:$TAG, microdash-operator:$TAG
# and, where the official service images cannot be pulled, local stand-ins for the Compose stack:
#   microdash-local/mariadb:10.11, microdash-local/redis:7, microdash-local/mosquitto:2
#
# Two ways, one Dockerfile (the same runtime stages either way):
#   source  the Dockerfile's multi-stage build (node → dashboard, rust → binaries, debian-slim
#           runtime): needs a registry to pull those images from.
#   host    release binaries built here by cargo (with the dashboard embedded) copied into the
#           runtime stages (`--build-arg BINARIES=prebuilt`), on a Debian bookworm base image
#           made here with debootstrap (`microdash-base:bookworm`, its tarball cached in
#           .cache/images/). For machines without a registry, like the project's CI.
# MICRODASH_IMAGES_FROM=source|host|auto (default auto: source when debian:bookworm-slim can be
# pulled, host otherwise).
#
# Starts a Docker engine when none answers (scripts/docker-engine.sh). Warm runs reuse the base
# image, the engine's layer cache and cargo's target dir: a few seconds when nothing changed.
#   scripts/images.sh --base-only      # only the debootstrap base image (the test command makes it
#                                      # in the background early)
#   scripts/images.sh --binaries-only  # only the host-built release binaries the images copy in (the
#                                      # test command builds them in the background, at low priority)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh
TAG=${TAG:-dev}
CACHE="$ROOT/.cache/images"
BASE_IMAGE=microdash-base:bookworm
# Bump when the recipe of the base changes: an older cached tarball or image is made again.
BASE_RECIPE=2
TARGETS=(microdash microdash-agent microdash-operator)
mkdir -p "$CACHE"

step() { echo "==> $*" >&2; }

# The binaries of the host way: the dashboard embedded into release builds, the agent in its own
# profile (Cargo.toml: smaller and denser, for its memory on every host).
build_binaries() {
  build_dashboard "$ROOT"
  step "cargo build --release (microdash, microdash-operator) and --profile agent (microdash-agent)"
  cargo build --release --locked --quiet -p microdash -p microdash-operator
  cargo build --profile agent --locked --quiet -p microdash-agent
}

if [[ ${1:-} == --binaries-only ]]; then
  build_binaries
  exit 0
fi

scripts/docker-engine.sh start

# BuildKit is needed (cache mounts, stages built only when a target needs them). The buildx
# plugin where it is installed; otherwise a client with BuildKit built in (Debian's docker.io
# 20.10 client, /usr/bin/docker), since a newer client without buildx only has the legacy builder.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load --progress=plain "$@"
  elif [[ -x /usr/bin/docker ]] && /usr/bin/docker --version 2>/dev/null | grep -q 'version 20\.'; then
    DOCKER_BUILDKIT=1 BUILDKIT_PROGRESS=plain /usr/bin/docker build "$@"
  else
    echo "error: docker build needs BuildKit: install the buildx plugin (Debian: docker-buildx) or Debian's docker.io" >&2
    return 1
  fi
}

# Build output goes to a log; on failure its end is shown.
build_logged() { # name, docker build args...
  local name=$1 log="$CACHE/build-$1.log"
  shift
  if ! docker_build "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "error: building image $name failed (whole log: $log)" >&2
    return 1
  fi
}

mode=${MICRODASH_IMAGES_FROM:-auto}
if [[ $mode == auto ]]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 || timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    mode=source
  else
    mode=host
  fi
fi

# The Debian mirror this machine's apt uses (debootstrap needs one; the image's apt uses it too).
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_base_image() {
  [[ $(docker image inspect -f '{{index .Config.Labels "io.microdash.base.recipe"}}' "$BASE_IMAGE" 2>/dev/null) == "$BASE_RECIPE" ]] \
    && return 0
  local tarball="$CACHE/bookworm-minbase-r$BASE_RECIPE.tar" rootfs="$CACHE/rootfs-bookworm"
  if [[ ! -s $tarball ]]; then
    ensure_debs debootstrap
    step "Making the base image $BASE_IMAGE with debootstrap (first time: about 2 minutes; log in $CACHE/debootstrap.log)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; return 1; }
    # Slim, as debian:bookworm-slim is: no package caches, lists, manuals, docs (copyright files
    # stay) or translations, and dpkg keeps them out of later installs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/var/log/apt/* "$rootfs"/var/log/dpkg.log "$rootfs"/var/log/bootstrap.log
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/99-no-recommends"
    tar -C "$rootfs" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs" "$CACHE"/bookworm-minbase.tar "$CACHE"/bookworm-minbase-r[0-9]*.tar.tmp
  fi
  step "Importing $BASE_IMAGE from $tarball"
  docker import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL io.microdash.base.recipe=$BASE_RECIPE" \
    --change 'LABEL org.opencontainers.image.description="Debian bookworm (debootstrap minbase, slimmed), made locally"' \
    "$tarball" "$BASE_IMAGE" >/dev/null
}

common_args=(--build-arg "VERSION=$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)"
             --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)")

if [[ ${1:-} == --base-only ]]; then
  [[ $mode == source ]] || ensure_base_image
  exit 0
fi

started=$(date +%s)
images=("${TARGETS[@]/%/:$TAG}")
if [[ $mode == source ]]; then
  step "Building images from the Dockerfile's own stages (tag $TAG)"
  for target in "${TARGETS[@]}"; do
    step "image $target:$TAG"
    build_logged "$target" --target "$target" -t "$target:$TAG" "${common_args[@]}" .
  done
else
  ensure_base_image
  build_binaries
  # Without the line tables (kept in target/ for local backtraces): a fifth of the size.
  mkdir -p .cache/image-bin
  for target in "${TARGETS[@]}"; do
    profile=release
    [[ $target == microdash-agent ]] && profile=agent
    objcopy --strip-debug "target/$profile/$target" ".cache/image-bin/$target.tmp"
    mv -f ".cache/image-bin/$target.tmp" ".cache/image-bin/$target"
  done
  for target in "${TARGETS[@]}"; do
    step "image $target:$TAG (host-built binaries on $BASE_IMAGE)"
    build_logged "$target" --target "$target" -t "$target:$TAG" "${common_args[@]}" \
      --build-arg BINARIES=prebuilt --build-arg "BASE_IMAGE=$BASE_IMAGE" .
  done
  # No registry: the Compose stack's service images are built here too (deploy/images/), and,
  # where the engine has no image of the official name, tagged with it as well, so that
  # docker-compose.yml's defaults resolve here with no other step. `docker image inspect`
  # shows what they are (title microdash-local/…); `docker compose pull`, where a registry can
  # be reached, replaces them with the official images.
  for svc in mariadb:10.11=mariadb:10.11 redis:7=redis:7-alpine mosquitto:2=eclipse-mosquitto:2; do
    local_tag=${svc%%=*} official=${svc#*=}
    name=${local_tag%%:*}
    step "image microdash-local/$local_tag (Debian packages on $BASE_IMAGE)"
    build_logged "$name" -t "microdash-local/$local_tag" --build-arg "BASE_IMAGE=$BASE_IMAGE" "deploy/images/$name"
    images+=("microdash-local/$local_tag")
    title=none
    if docker image inspect "$official" >/dev/null 2>&1; then
      title=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.title"}}' "$official")
    fi
    if [[ $title == none || $title == "microdash-local/$name" ]]; then
      docker tag "microdash-local/$local_tag" "$official"
      step "tagged microdash-local/$local_tag as $official (the official image cannot be pulled here)"
    fi
  done
fi

step "Images ready in $(( $(date +%s) - started )) s"
for image in "${images[@]}"; do
  printf '  %-34s %s\n' "$image" "$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1 / 1000000}')" >&2
done
