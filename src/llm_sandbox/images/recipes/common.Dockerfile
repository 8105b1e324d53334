# Common layer of every llm-sandbox image, built on the imported debootstrap rootfs.
# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").
# The builder passes ROOTFS_IMAGE (the rootfs tag under the chosen engine).
ARG ROOTFS_IMAGE=llm-sandbox/rootfs:bookworm
FROM ${ROOTFS_IMAGE}

# Trust the host's CA bundle (copied into the rootfs by the builder) in every client the sandbox runs.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# apt: no recommends, and no downloaded .deb files left behind (keeps layers and sandbox installs small).
# Nothing the sandbox user (uid/gid 65534) can write is ever on root's PATH or run by root: the Python venv
# /opt/venv stays root's. The sandbox user owns the workdir /sandbox and its library prefix /opt/llm-sandbox/user
# (what session.install() puts there is on the code's own search paths only; see llm_sandbox.languages.base).
RUN printf '%s\n' 'APT::Install-Recommends "false";' 'APT::Install-Suggests "false";' \
        'APT::Keep-Downloaded-Packages "false";' > /etc/apt/apt.conf.d/90llm-sandbox \
    && update-ca-certificates \
    && python3 -m venv /opt/venv \
    && install -d -o 0 -g 0 -m 0755 /opt/llm-sandbox \
    && install -d -o 65534 -g 65534 -m 0755 /sandbox /opt/llm-sandbox/user

ENV PATH=/opt/venv/bin:$PATH
WORKDIR /sandbox
CMD ["/bin/bash"]
