# A Kubernetes component image (registry.k8s.io/NAME:TAG for kubeadm), built offline from the
# Go-built binary on the Debian base: the official images are distroless; the commands kubeadm
# writes into its manifests (kube-apiserver, etcd, coredns …) only need the binary on PATH.
ARG BASE_IMAGE=microdash-base:bookworm
FROM ${BASE_IMAGE}
ARG PACKAGES=
RUN if [ -n "$PACKAGES" ]; then apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; fi
COPY bin/ /usr/local/bin/
