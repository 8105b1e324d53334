#!/usr/bin/env bash
# Set the machine up (scripts/setup.sh), then run every check: ruff lint, ruff format check, mypy, pytest.
# Arguments go to pytest (for example: scripts/test.sh tests/unit -x). Every check runs even when an earlier one
# fails; the exit status is non-zero when any of them failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The suite runs its contract tests on Docker and on Podman.
export LLM_SANDBOX_PODMAN="${LLM_SANDBOX_PODMAN:-1}"
# Every language's image: the language suite runs in all seven.
export LLM_SANDBOX_LANGS="${LLM_SANDBOX_LANGS:-all}"
# ... on Podman too: the language suite and the README examples run on both engines.
export LLM_SANDBOX_PODMAN_LANGS="${LLM_SANDBOX_PODMAN_LANGS:-$LLM_SANDBOX_LANGS}"
bash scripts/setup.sh

failed=()
check() {
    printf '\n==> %s\n' "$*"
    if ! "$@"; then
        failed+=("$*")
    fi
}

check .venv/bin/ruff check .
check .venv/bin/ruff format --check .
check .venv/bin/mypy
# The slowest tests are listed at the end: the suite must stay within its time budget (README, "Tests").
check .venv/bin/pytest --durations=25 "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nFAILED:\n' >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
printf '\nall checks passed\n'
