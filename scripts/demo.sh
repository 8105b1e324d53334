#!/usr/bin/env bash
# Set the machine up (scripts/setup.sh), then run examples/hello.py in a Python sandbox.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
exec .venv/bin/python examples/hello.py
