"""JavaScript: Node.js runs the code (CommonJS), npm installs packages.

The code file lives in a per-run temporary folder, where Node's own lookup (the file's folder and its parents)
would never reach the installed packages: ``NODE_PATH`` points ``require()`` at the code's prefix
(``/opt/llm-sandbox/user/node/node_modules``, where installs go in a sandbox the library created) and at
``{workdir}/node_modules`` (where they go in an attached container, as npm does there).

In a sandbox the library created, npm installs into a fresh project folder under the install's fresh HOME, with
no user or global configuration file and no project ``.npmrc`` or ``package.json`` of the code's, then the
packages (and their ``.bin`` links) are moved into the prefix, replacing the same names. In an attached container
npm installs into the workdir and keeps what it installed in ``{workdir}/package.json``.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import USER_PREFIX, Language, Spare, debian_toolchain_recipe

# An npm package name (optionally @scope/), optionally @version, @range or @tag. No ':' or further '/', so that
# aliases (npm:), git and file specs, tarball URLs and paths are refused; no spaces, quotes or shell syntax.
NPM_SPEC = re.compile(
    r"(?:@[A-Za-z0-9][A-Za-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*"
    r"(?:@[A-Za-z0-9.^~<>=*+_-]+)?"
)

# "$1" is the prefix folder, "$@" then the validated package specs. The install's HOME is fresh and empty: the
# project folder, npm's cache and the config files it is pointed at (which do not exist) are all under it.
NPM_INSTALL = (
    'dest=$1; shift; work=$HOME/project; mkdir -p "$work" && cd "$work" || exit; '
    'npm install --prefix "$work" --userconfig "$HOME/user-npmrc" --globalconfig "$HOME/global-npmrc" '
    '--no-audit --no-fund --no-progress --no-update-notifier "$@" || exit; '
    'mkdir -p "$dest/node_modules" && cd node_modules || exit; '
    "for name in *; do "
    '[ -e "$name" ] || continue; '
    'case $name in @*) mkdir -p "$dest/node_modules/$name" || exit; set -- "$name"/*;; *) set -- "$name";; esac; '
    'for entry do [ -e "$entry" ] || continue; rm -rf "$dest/node_modules/$entry" && '
    'mv "$entry" "$dest/node_modules/$entry" || exit; done; '
    "done; "
    'if [ -d .bin ]; then mkdir -p "$dest/node_modules/.bin" || exit; for link in .bin/*; do '
    '[ -e "$link" ] || [ -L "$link" ] || continue; rm -rf "$dest/node_modules/$link" && '
    'mv "$link" "$dest/node_modules/$link" || exit; done; fi'
)

# The spare (see ``Spare``): ``node -e`` with this stub waits on descriptor 3 for the code file's path, then makes the
# process look as ``node FILE`` would have started it (``-e`` leaves its own globals, ``process._eval`` and
# ``execArgv``: they go) and hands the file to the CommonJS loader's entry point, as Node's own main does. Stack
# traces are the plain run's down to the loader's entry point; below it come the stub's frames instead of Node's
# ``run_main_module``.
SPARE_STUB = r"""
(() => {
  const fs = require('fs');
  const Module = require('module');
  const { resolve } = require('path');
  for (const name of ['require', 'module', 'exports', '__filename', '__dirname']) delete globalThis[name];
  // The built-in modules -e makes lazy globals of (their setter is Node's setReal; real globals are not).
  for (const name of Module.builtinModules) {
    const own = Object.getOwnPropertyDescriptor(globalThis, name);
    if (own && own.set && own.set.name === 'setReal') delete globalThis[name];
  }
  delete process._eval;
  process.execArgv.length = 0;
  const chunks = [];
  const buffer = Buffer.alloc(4096);
  for (;;) {
    let count;
    try {
      count = fs.readSync(3, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error.code === 'EAGAIN') continue;
      throw error;
    }
    if (!count) break;
    chunks.push(Buffer.from(buffer.subarray(0, count)));
  }
  fs.closeSync(3);
  const path = Buffer.concat(chunks).toString().replace(/\n$/, '');
  if (!path) process.exit(0);
  process.argv[1] = resolve(path);
  /^/.exec('');  // Node's main resets RegExp's statics before the program runs
  Module.runMain(process.argv[1]);
})();
"""

# The default image, built FROM the common base by ``python -m llm_sandbox.images build javascript``.
IMAGE_RECIPE = debian_toolchain_recipe("javascript", "Node.js and npm", "nodejs npm", "node --version && npm --version")

LANGUAGE = Language(
    name="javascript",
    file_name="main.js",
    run=("node", "{file}"),
    spare=Spare(("node", "-e", SPARE_STUB)),
    install=("/bin/sh", "-c", NPM_INSTALL, "sh", "{prefix}/node", "{libraries}"),
    attached_install=(
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--no-progress",
        "--no-update-notifier",
        "{libraries}",
    ),
    user_bin=("{prefix}/node/node_modules/.bin",),
    library_pattern=NPM_SPEC,
    library_hint="an npm package name, optionally scoped and versioned, e.g. 'lodash', '@scope/pkg' or 'pkg@1.2.3'",
    compile_error=re.compile(r"^SyntaxError: ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    environment={"NODE_PATH": f"{USER_PREFIX}/node/node_modules:{{workdir}}/node_modules"},
)
