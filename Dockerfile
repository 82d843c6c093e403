# syntax=docker/dockerfile:1
# One multi-stage build for the three images (pick one with --target):
#   docker build --target microdash          -t microdash:latest .
#   docker build --target microdash-agent    -t microdash-agent:latest .
#   docker build --target microdash-operator -t microdash-operator:latest .
# Every image runs as an unprivileged user (uid 10001) on debian:bookworm-slim.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

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
COPY migrations migrations
COPY --from=dashboard /src/dashboard/dist dashboard/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p microdash -p microdash-agent -p microdash-operator \
 && mkdir -p /out \
 && cp target/release/microdash target/release/microdash-agent target/release/microdash-operator /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 microdash \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/microdash --create-home --shell /usr/sbin/nologin microdash
ARG VERSION=0.1.0
LABEL org.opencontainers.image.source="https://github.com/microdash/microdash" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# --- microdash: API, dashboard, workers, embedded MQTT broker ----------------------------------
FROM runtime AS microdash
LABEL org.opencontainers.image.title="microdash" \
      org.opencontainers.image.description="Multi-tenant observability micro-dashboard: HTTP/MQTT ingest, SQL storage, live dashboard, alerts"
COPY --from=build /out/microdash /usr/local/bin/microdash
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
COPY --from=build /out/microdash-agent /usr/local/bin/microdash-agent
USER 10001:10001
ENV MICRODASH_AGENT_SPOOL_DIR=/var/lib/microdash/spool
VOLUME ["/var/lib/microdash"]
ENTRYPOINT ["microdash-agent"]

# --- microdash-operator: the Kubernetes operator -----------------------------------------------
FROM runtime AS microdash-operator
LABEL org.opencontainers.image.title="microdash-operator" \
      org.opencontainers.image.description="Kubernetes operator for microdash (MicroDash, Tenant, AlertRule, NotificationChannel)"
COPY --from=build /out/microdash-operator /usr/local/bin/microdash-operator
USER 10001:10001
ENTRYPOINT ["microdash-operator"]
