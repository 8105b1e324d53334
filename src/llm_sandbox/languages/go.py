"""Go: ``go build`` into the run's temporary folder, then the binary replaces the shell (its exit code is the run's).

Runs start in the workdir, so a ``go.mod`` there is the main module of every run: modules installed into it are
importable by the code. ``go run`` is not used because it reports every non-zero exit of the program as 1.

Installs: ``go get`` with the module proxy from the environment (GOPROXY), into ``{workdir}/go.mod`` (created as
module ``sandbox`` on first use). A local module (a folder under the workdir holding a ``go.mod``) is added with a
``replace`` directive, which needs no network. Downloaded modules go to the code's prefix
(``/opt/llm-sandbox/user/go``: GOPATH, so GOMODCACHE is its ``pkg/mod``), where the code's builds find them; the
build cache is there too, so the workdir holds only what the code made. In a sandbox the library created the
install reads no go.env or ``go env -w`` file (GOENV=off), no workspace (GOWORK=off) and no GOFLAGS of the code's,
and builds with a fresh cache under its fresh HOME; ``go get`` downloads and edits go.mod but runs no code.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import USER_PREFIX, Language, debian_toolchain_recipe

# Identical code, which evaluation harnesses send again and again, is built once per sandbox when it stands alone
# (no go.mod in the workdir: a module's dependencies, local ones included, may change under the same source). The
# binary is kept under a key made of the source, GOFLAGS and the toolchain (its file's time and size), and linked
# into the run's folder. The cache is in the code's temporary folder, as C++'s is (see cpp.py for why that is safe).
CACHE_KEEP = 32
# Go's own build cache, for code that changes: the image holds one filled by building the standard library
# (GOCACHE_SEED, root's, read-only to the code), and a sandbox's first build copies it to the code's GOCACHE (in
# its library prefix, counted by the disk cap: about 3 MB), so a changed program compiles and links only itself.
# A GOCACHE that is not an absolute path (such as "off"), or one that exists already, is left as it is.
GOCACHE_SEED = "/opt/llm-sandbox/go-cache"
SEED_BUILD_CACHE = (
    f'case ${{GOCACHE-}} in /*) if [ ! -d "$GOCACHE" ] && [ -d {GOCACHE_SEED} ] && mkdir -p "${{GOCACHE%/*}}"; then '
    f'cp -R {GOCACHE_SEED} "$GOCACHE.$$" 2>/dev/null && mv -T "$GOCACHE.$$" "$GOCACHE" 2>/dev/null '
    '|| rm -rf "$GOCACHE.$$"; fi;; esac; '
)
COMPILE_AND_RUN = (
    "cache=/tmp/.llm-sandbox-go-cache; key=; "
    'if [ ! -f go.mod ]; then key=$({ printf "%s\\n" "${GOFLAGS-}"; stat -L -c "%Y %s" "$(command -v go)"; '
    'cat "$1/main.go"; } | sha256sum); key=${key%% *}; fi; '
    'if [ -n "$key" ] && [ -f "$cache/$key" ] && '
    '{ ln "$cache/$key" "$1/main" 2>/dev/null || cp "$cache/$key" "$1/main"; }; then exec "$1/main"; fi; '
    + SEED_BUILD_CACHE
    + 'go build -o "$1/main" "$1/main.go" || exit; '
    'if [ -n "$key" ] && mkdir -p "$cache" 2>/dev/null && cp "$1/main" "$cache/.$key.$$" 2>/dev/null; then '
    'mv -f "$cache/.$key.$$" "$cache/$key"; '
    f'ls -t "$cache" | tail -n +{CACHE_KEEP + 1} | while read -r old; do rm -f "$cache/$old"; done; '
    'else rm -f "$cache/.$key.$$"; fi; '
    'exec "$1/main"'
)

# "$@" are the validated module paths or local folders (absolute, under the workdir).
GO_GET = (
    "[ -f go.mod ] || go mod init sandbox || exit; "
    "for lib do case $lib in "
    '/*) [ -f "$lib/go.mod" ] || { echo "$lib holds no go.mod: not a Go module" >&2; exit 1; }; '
    'mod=$(cd "$lib" && go list -m) || exit; '
    'go mod edit "-replace=$mod=$lib" "-require=$mod@v0.0.0-00010101000000-000000000000" || exit; '
    'echo "added $mod from $lib";; '
    '*) go get "$lib" || exit;; '
    "esac; done"
)

# A module path whose first element is a domain (example.com/x/y), optionally @version, @latest or @none.
GO_MODULE = re.compile(
    r"[a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)+(?:/[A-Za-z0-9_~+-][A-Za-z0-9._~+-]*)*(?:@[A-Za-z0-9_+-][A-Za-z0-9._+-]*)?"
)

# The default image, built FROM the common base by ``python -m llm_sandbox.images build go``.
IMAGE_RECIPE = debian_toolchain_recipe("go", "the Go toolchain", "golang-go", "go version") + (
    "# The build cache sandboxes start from: the standard library built (see llm_sandbox/languages/go.py).\n"
    f"RUN HOME=/tmp GOCACHE={GOCACHE_SEED} GOFLAGS=-modcacherw go build std \\\n"
    f"    && rm -rf /tmp/go-build* && chmod -R a+rX {GOCACHE_SEED}\n"
)

LANGUAGE = Language(
    name="go",
    file_name="main.go",
    run=("/bin/sh", "-c", COMPILE_AND_RUN, "sh", "{dir}"),
    install=("/bin/sh", "-c", GO_GET, "sh", "{libraries}"),
    library_pattern=GO_MODULE,
    library_hint="a module path, optionally with @version, e.g. 'golang.org/x/text@v0.14.0'",
    compile_error=re.compile(r"main\.go:\d+:\d+: "),
    image_recipe=IMAGE_RECIPE,
    # Never download a toolchain because a go.mod names a newer Go (Go >= 1.21 would). -modcacherw: the code's
    # user may remove what it downloaded (the module cache is read-only otherwise).
    environment={
        "GOTOOLCHAIN": "local",
        "GOPATH": f"{USER_PREFIX}/go",
        "GOCACHE": f"{USER_PREFIX}/go/cache",
        "GOFLAGS": "-modcacherw",
    },
    install_environment={
        "GOTOOLCHAIN": "local",
        "GOPATH": "{prefix}/go",
        "GOCACHE": "{tmp}/go-build",
        "GOFLAGS": "-modcacherw",
        "GOENV": "off",
        "GOWORK": "off",
    },
    user_bin=("{prefix}/go/bin",),
    local_source=re.compile(r".+"),
    local_hint="the absolute path of a local module folder (holding a go.mod)",
)
