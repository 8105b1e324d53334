#!/usr/bin/env bash
# Run the reference implementation's own example scripts (llm-sandbox 0.3.46, downloaded from the package index for
# the run) against this library on Docker and Podman: tests/reference_examples. Kept out of the default test run
# (it takes several minutes). Sets the machine up first, as scripts/test.sh does; arguments go to pytest.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export LLM_SANDBOX_PODMAN="${LLM_SANDBOX_PODMAN:-1}"
export LLM_SANDBOX_LANGS="${LLM_SANDBOX_LANGS:-all}"
export LLM_SANDBOX_PODMAN_LANGS="${LLM_SANDBOX_PODMAN_LANGS:-$LLM_SANDBOX_LANGS}"
bash scripts/setup.sh

exec .venv/bin/pytest tests/reference_examples/test_reference_examples.py "$@"
