# llm-sandbox cpp image: g++ (C++17) and the C library headers.
# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").
# The builder passes BASE_IMAGE (the base tag under the chosen engine); the base already holds the CA setup,
# the Python helper venv /opt/venv and the workdir /sandbox. update-ca-certificates runs again after the
# install so that package hooks (Java's keystore) pick up the host CA.
ARG BASE_IMAGE=llm-sandbox/base:bookworm
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && update-ca-certificates \
    && g++ --version
