# llm-sandbox python image: Python 3, venv and pip.
# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").
# The builder passes BASE_IMAGE (the base tag under the chosen engine). Everything Python needs is already in
# the base (every language image carries it, because the library runs a small Python helper in each sandbox):
# python3, python3-venv, python3-pip, the venv /opt/venv owned by 65534 first on PATH, and /sandbox.
ARG BASE_IMAGE=llm-sandbox/base:bookworm
FROM ${BASE_IMAGE}
RUN python3 --version && /opt/venv/bin/python -m pip --version
