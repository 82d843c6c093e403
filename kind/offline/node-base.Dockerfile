# The kind base image (sigs.k8s.io/kind images/base/Dockerfile of the kind version in use),
# rebuilt offline: Debian bookworm packages for containerd, runc and the CNI plugins instead of
# binaries built from git clones, and crictl built from its Go module. The build context is
# assembled by scripts/cluster/node-image.sh: files/ is kind's images/base/files, bin/ the
# Go-built tools, offline/ this folder.
ARG BASE_IMAGE=microdash-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz e2fsprogs bash ca-certificates curl jq procps \
      containerd runc containernetworking-plugins \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/crictl.yaml /etc/
COPY files/etc/containerd/ /etc/containerd/
COPY files/etc/default/ /etc/default/
COPY files/etc/sysctl.d/ /etc/sysctl.d/
COPY files/etc/systemd/system/ /etc/systemd/system/
COPY bin/crictl /usr/local/bin/crictl
# Debian's containerd and runc live in /usr/bin and /usr/sbin, kind's units name /usr/local.
# The node runs without CAP_SYS_RESOURCE (docs/kubernetes-ci.md): a container's oom_score_adj may
# not go below containerd's own, hence restrict_oom_score_adj = true.
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* \
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* \
 && rm -f /etc/systemd/system/*.wants/* \
 && rm -f /lib/systemd/system/local-fs.target.wants/* \
 && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
 && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
 && rm -f /lib/systemd/system/basic.target.wants/* \
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
 && ln -sf /usr/lib/systemd/systemd /sbin/init \
 && ln -s /usr/bin/containerd /usr/local/bin/containerd \
 && ln -s /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \
 && ln -s /usr/bin/ctr /usr/local/bin/ctr \
 && ln -s /usr/sbin/runc /usr/local/sbin/runc \
 && mkdir -p /opt/cni/bin && cp -a /usr/lib/cni/. /opt/cni/bin/ \
 && sed -i 's/^  restrict_oom_score_adj = false/  restrict_oom_score_adj = true/' /etc/containerd/config.toml \
 && ctr oci spec \
      | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && mkdir -p /etc/kubernetes/manifests
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
