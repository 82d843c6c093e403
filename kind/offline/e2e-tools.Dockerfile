# Test-only helper image for scripts/cluster/e2e.sh (the webhook receiver, curl): the Debian
# base plus python3 and curl. Built here; tagged microdash-cluster/e2e-tools.
ARG BASE_IMAGE=microdash-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY webhook-receiver.py /usr/local/bin/webhook-receiver
USER 65532
ENTRYPOINT ["python3", "/usr/local/bin/webhook-receiver"]
