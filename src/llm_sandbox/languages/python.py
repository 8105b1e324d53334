"""Python: the interpreter the sandbox has (a venv in the workdir, else python3, else python), pip for libraries."""

from __future__ import annotations

import re

from llm_sandbox.languages.base import Language

# A PEP 508 name with optional extras and version specifiers, nothing else: no URLs, paths or options.
_VERSION = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
PIP_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    rf"(?:\s*{_VERSION}(?:\s*,\s*{_VERSION})*)?"
)

# The default image, built FROM the common base by ``python -m llm_sandbox.images build python``.
IMAGE_RECIPE = r"""# llm-sandbox python image: Python 3, venv and pip.
# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").
# The builder passes BASE_IMAGE (the base tag under the chosen engine). Everything Python needs is already in
# the base (every language image carries it, because the library runs a small Python helper in each sandbox):
# python3, python3-venv, python3-pip, the venv /opt/venv owned by 65534 first on PATH, and /sandbox.
ARG BASE_IMAGE=llm-sandbox/base:bookworm
FROM ${BASE_IMAGE}
RUN python3 --version && /opt/venv/bin/python -m pip --version
"""

LANGUAGE = Language(
    name="python",
    warm_interpreter=True,
    file_name="main.py",
    run=("{python}", "-u", "{file}"),
    install=(
        "{python}",
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "{libraries}",
    ),
    library_pattern=PIP_REQUIREMENT,
    library_hint="a package name with optional extras and version specifiers, e.g. 'numpy' or 'requests>=2.31'",
    compile_error=re.compile(r"^(?:SyntaxError|IndentationError|TabError): ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    # Debian's system Python refuses pip installs (PEP 668); in an attached container the caller asked for it.
    environment={"PIP_BREAK_SYSTEM_PACKAGES": "1", "PYTHONDONTWRITEBYTECODE": "1"},
)
