"""Python: the interpreter the sandbox has (a venv in the workdir, else python3, else python), pip for libraries.

In a sandbox the library created, ``pip install --target`` puts libraries in the code's prefix
(``/opt/llm-sandbox/user/python``, on the code's PYTHONPATH; their scripts in its ``bin``). pip runs isolated
(``-I``: no PYTHONPATH, no user site, so nothing in the prefix is imported by it) with no configuration file
(PIP_CONFIG_FILE=/dev/null) and a fresh HOME, by an interpreter the code cannot write (the runner never hands it a
venv in the workdir). ``--target`` reads nothing already in the prefix: it installs every dependency afresh and
replaces what it installs again (``--upgrade``). In an attached container pip installs into the interpreter the
container has, as its owner set it up.
"""

from __future__ import annotations

import re

from llm_sandbox.guest.warm import WARM_STUB
from llm_sandbox.languages.base import USER_PREFIX, Language, Spare

# A PEP 508 name with optional extras and version specifiers, nothing else: no URLs, paths or options.
_VERSION = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
PIP_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    rf"(?:\s*{_VERSION}(?:\s*,\s*{_VERSION})*)?"
)

# The default image, built FROM the common base by ``python -m llm_sandbox.images build python``.
IMAGE_RECIPE = r"""# llm-sandbox python image: Python 3, venv and pip, and the plotting and interactive libraries.
# Docker 20.10 classic builder: no BuildKit features (no heredocs, no RUN --mount, no "# syntax=").
# The builder passes BASE_IMAGE (the base tag under the chosen engine). Everything Python needs is already in
# the base (every language image carries it, because the library runs a small Python helper in each sandbox):
# python3, python3-venv, python3-pip, the root-owned venv /opt/venv first on PATH, /sandbox and the code's library
# prefix /opt/llm-sandbox/user. Plots (matplotlib, seaborn, plotly), interactive sessions (IPython) and the data
# libraries code written for other sandboxes assumes (numpy, pandas) come from Debian's packages, so no package
# index is needed; the venv sees them through its system site-packages.
ARG BASE_IMAGE=llm-sandbox/base:bookworm
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-matplotlib python3-seaborn python3-plotly \
        python3-ipython fonts-dejavu-core python3-numpy python3-pandas \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && sed -i 's/^include-system-site-packages = false$/include-system-site-packages = true/' /opt/venv/pyvenv.cfg \
    && python3 --version && /opt/venv/bin/python -m pip --version \
    && /opt/venv/bin/python -c "import matplotlib, seaborn, plotly, IPython, numpy, pandas"
"""
LANGUAGE = Language(
    name="python",
    spare=Spare(("{python}", "-u", "-c", WARM_STUB), fd=0),
    file_name="main.py",
    run=("{python}", "-u", "{file}"),
    install=(
        "{python}",
        "-I",
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--no-cache-dir",
        "--no-warn-script-location",
        "--upgrade",
        "--target",
        "{prefix}/python",
        "{libraries}",
    ),
    attached_install=(
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
    install_environment={"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    user_bin=("{prefix}/python/bin",),
    library_pattern=PIP_REQUIREMENT,
    library_hint="a package name with optional extras and version specifiers, e.g. 'numpy' or 'requests>=2.31'",
    compile_error=re.compile(r"^(?:SyntaxError|IndentationError|TabError): ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    # Debian's system Python refuses pip installs (PEP 668); in an attached container the caller asked for it.
    environment={
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{USER_PREFIX}/python",
    },
)
