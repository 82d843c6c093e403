# One multi-stage build for the three images (pick one with --target; BuildKit required):
#   docker build --target microdash          -t microdash:latest .
#   docker build --target microdash-agent    -t microdash-agent:latest .
#   docker build --target microdash-operator -t microdash-operator:latest .
# Every image runs as an unprivileged user (uid 10001) on debian:bookworm-slim.
#
# Where no registry can be reached (no rust/node/debian images to pull), `make images`
# (scripts/images.sh) builds the same runtime stages from release binaries built on the host
# (Debian 12, the same glibc) on a Debian base image made with debootstrap:
#   --build-arg BINARIES=prebuilt --build-arg BASE_IMAGE=microdash-base:bookworm
# with the binaries in .cache/image-bin/. Only the stages a target needs are built, so the
# rust and node stages are not touched then.
# (No `# syntax=` line: it would pull the Dockerfile frontend image from a registry.)

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20
# The runtime base; debian:bookworm-slim, or a local debootstrap image of the same release.
ARG BASE_IMAGE=debian:bookworm-slim
# Where the binaries come from: `build` (the Rust stage below) or `prebuilt` (.cache/image-bin).
ARG BINARIES=build
ARG VERSION=0.1.0
ARG REVISION=unknown

# --- the dashboard (Vue + Vite), embedded into the microdash binary at compile time -------------
FROM node:${NODE_VERSION}-bookworm-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY dashboard/ ./
RUN npm run build

# --- the Rust workspace ------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY apiserver apiserver
COPY model model
COPY agent agent
COPY operator operator
COPY bench bench
COPY testkit testkit
COPY migrations migrations
COPY --from=dashboard /src/dashboard/dist dashboard/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p microdash -p microdash-operator \
 && cargo build --profile agent --locked -p microdash-agent \
 && mkdir -p /out \
 && for bin in microdash microdash-operator; do objcopy --strip-debug target/release/$bin /out/$bin; done \
 && objcopy --strip-debug target/agent/microdash-agent /out/microdash-agent

# --- host-built release binaries (make images without a registry) ------------------------------
FROM scratch AS prebuilt
COPY .cache/image-bin/ /out/

# --- the binaries the runtime stages copy: from `build` or from `prebuilt` -----------------------
FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 microdash \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/microdash --create-home --shell /usr/sbin/nologin microdash
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.source="https://github.com/microdash/microdash" \
      org.opencontainers.image.url="https://github.com/microdash/microdash" \
      org.opencontainers.image.vendor="microdash" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="debian:bookworm"

# --- microdash: API, dashboard, workers, embedded MQTT broker ----------------------------------
FROM runtime AS microdash
LABEL org.opencontainers.image.title="microdash" \
      org.opencontainers.image.description="Multi-tenant observability micro-dashboard: HTTP/MQTT ingest, SQL storage, live dashboard, alerts"
COPY --from=binaries /out/microdash /usr/local/bin/microdash
USER 10001:10001
WORKDIR /var/lib/microdash
ENV MICRODASH_DATA_DIR=/var/lib/microdash \
    MICRODASH_DATABASE_URL=sqlite:///var/lib/microdash/microdash.db \
    MICRODASH_LOG_FORMAT=json
VOLUME ["/var/lib/microdash"]
EXPOSE 8080 1883
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["microdash", "health", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["microdash"]
CMD ["serve"]

# --- microdash-agent: host metrics over HTTP or MQTT, with a disk spool ------------------------
FROM runtime AS microdash-agent
LABEL org.opencontainers.image.title="microdash-agent" \
      org.opencontainers.image.description="microdash host agent (sysinfo metrics over HTTP or MQTT, disk spool)"
COPY --from=binaries /out/microdash-agent /usr/local/bin/microdash-agent
USER 10001:10001
ENV MICRODASH_AGENT_SPOOL_DIR=/var/lib/microdash/spool
VOLUME ["/var/lib/microdash"]
# Fails when no collection was recorded in the spool dir for three intervals (at least 30 s).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["microdash-agent", "--health"]
ENTRYPOINT ["microdash-agent"]

# --- microdash-operator: the Kubernetes operator -----------------------------------------------
FROM runtime AS microdash-operator
LABEL org.opencontainers.image.title="microdash-operator" \
      org.opencontainers.image.description="Kubernetes operator for microdash (MicroDash, Tenant, AlertRule, NotificationChannel)"
COPY --from=binaries /out/microdash-operator /usr/local/bin/microdash-operator
USER 10001:10001
EXPOSE 9090
# GET /healthz on the port of MICRODASH_OPERATOR_LISTEN (default 9090), on loopback.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["microdash-operator", "--health"]
ENTRYPOINT ["microdash-operator"]
