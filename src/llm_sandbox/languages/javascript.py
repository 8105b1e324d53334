"""JavaScript: Node.js runs the code (CommonJS), npm installs packages into the workdir's node_modules.

The code file lives in a per-run temporary folder, where Node's own lookup (the file's folder and its parents)
would never reach the workdir: ``NODE_PATH`` points ``require()`` at ``{workdir}/node_modules``. npm keeps what it
installed in ``{workdir}/package.json``, so a later install does not prune an earlier one.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import Language, debian_toolchain_recipe

# An npm package name (optionally @scope/), optionally @version, @range or @tag. No ':' or further '/', so that
# aliases (npm:), git and file specs, tarball URLs and paths are refused; no spaces, quotes or shell syntax.
NPM_SPEC = re.compile(
    r"(?:@[A-Za-z0-9][A-Za-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*"
    r"(?:@[A-Za-z0-9.^~<>=*+_-]+)?"
)

# The default image, built FROM the common base by ``python -m llm_sandbox.images build javascript``.
IMAGE_RECIPE = debian_toolchain_recipe("javascript", "Node.js and npm", "nodejs npm", "node --version && npm --version")

LANGUAGE = Language(
    name="javascript",
    file_name="main.js",
    run=("node", "{file}"),
    install=("npm", "install", "--no-audit", "--no-fund", "--no-progress", "--no-update-notifier", "{libraries}"),
    library_pattern=NPM_SPEC,
    library_hint="an npm package name, optionally scoped and versioned, e.g. 'lodash', '@scope/pkg' or 'pkg@1.2.3'",
    compile_error=re.compile(r"^SyntaxError: ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    environment={"NODE_PATH": "{workdir}/node_modules"},
)
