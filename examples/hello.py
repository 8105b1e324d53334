"""Run a line of Python in a fresh sandbox and print what it printed.

Needs a running Docker engine and the python image: ``bash scripts/setup.sh`` (or ``bash scripts/demo.sh``,
which runs this file after the set-up).
"""

from __future__ import annotations

import sys

from llm_sandbox import SandboxSession

CODE = "import platform, sys; print('Hello from the sandbox!'); print(sys.version.split()[0], platform.machine())"


def main() -> int:
    with SandboxSession(lang="python") as session:
        result = session.run(CODE)
    print(result.stdout, end="")
    if result.stderr:
        print(result.stderr, end="", file=sys.stderr)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
