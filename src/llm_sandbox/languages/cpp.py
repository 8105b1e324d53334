"""C++: g++ (C++17) compiles into the run's temporary folder, then the binary replaces the shell.

``CXXFLAGS`` and ``LDLIBS`` from the container's environment (``runtime_configs={"environment": {...}}``) are
added to the g++ command line, word-split, so that code can link installed libraries (``LDLIBS=-lfmt``).

Libraries are Debian packages (``apt-get install``), run as root through the engine while the install's network
window is open. Root runs nothing the code could have written: the argv starts with ``/usr/bin/env -i`` and a fixed
environment (PATH of root-owned system folders only, no inherited variable), then ``/usr/bin/timeout`` and
``/bin/sh`` by absolute path; the download folder is a fresh ``mktemp -d`` of root's. In a container the library
created, root has no capabilities; apt copes when it is told not to drop privileges to its ``_apt`` user
(``APT::Sandbox::User=root``) and to download into a folder root owns (its own cache folder belongs to ``_apt``,
and root cannot write there without CAP_DAC_OVERRIDE). Packages whose maintainer scripts need capabilities (chown
to other users, setcap) fail with dpkg's message.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import Language, debian_toolchain_recipe

# The flags of every compile, and of the precompiled headers, which g++ uses only when built with the same ones.
COMPILE_FLAGS = "-std=c++17 -O2 -pipe"
# Precompiled standard headers, made at image build time: <bits/stdc++.h> (what most generated code includes) and
# <iostream> (the usual first include of the rest). A header's .gch in this folder, put on the include path with
# -isystem, replaces the parse of the header when it is the code's first include; g++ skips a .gch that does not fit
# (other -std, -O or -D flags in CXXFLAGS) without a word (-Winvalid-pch is off) and reads the real header further
# along the path. The folder holds nothing but .gch files, so no other #include resolves differently.
PCH_DIR = "/opt/llm-sandbox/cpp-pch"
PCH_HEADERS = ("bits/stdc++.h", "iostream")

# "$1" is the run's folder. set -f: the flags are split into words but never globbed.
# Identical code, which evaluation harnesses send again and again, is compiled once per sandbox: the binary is kept
# under a key made of the source, the flags and the installed packages (dpkg's status file changes with every
# install, g++ included), and linked into the run's folder, so it runs from the same place as a fresh build. The
# cache lives in the temporary folder: the code's own (what a run put there can only mislead the same user's later
# runs, as its other files can), emptied by a reset, counted by the disk cap, and pruned to the newest CACHE_KEEP.
CACHE_KEEP = 32
COMPILE_AND_RUN = (
    "set -f; cache=/tmp/.llm-sandbox-cpp-cache; "
    'key=$({ printf "%s\\n" "${CXXFLAGS-}" "${LDLIBS-}"; stat -c "%Y %s" /var/lib/dpkg/status 2>/dev/null; '
    'cat "$1/main.cpp"; } | sha256sum); key=${key%% *}; '
    'if [ -n "$key" ] && [ -f "$cache/$key" ] && '
    '{ ln "$cache/$key" "$1/main" 2>/dev/null || cp "$cache/$key" "$1/main"; }; then '
    'set +f; exec "$1/main"; fi; '
    # With the precompiled headers first. Anything the compiler or linker says (a warning, an error) is said again
    # by a plain compile, whose words the caller gets: a precompiled header changes the notes' "In file included
    # from" lines. So the code's result never depends on the .gch files, only the time of a clean compile does.
    f"if ! {{ [ -d {PCH_DIR} ] && g++ {COMPILE_FLAGS} ${{CXXFLAGS-}} -isystem {PCH_DIR} "
    '-o "$1/main" "$1/main.cpp" ${LDLIBS-} 2>"$1/.pch-compile.log" && [ ! -s "$1/.pch-compile.log" ]; }; then '
    'rm -f "$1/main" "$1/.pch-compile.log"; '
    f'g++ {COMPILE_FLAGS} ${{CXXFLAGS-}} -o "$1/main" "$1/main.cpp" ${{LDLIBS-}} || exit; '
    'fi; rm -f "$1/.pch-compile.log"; '
    'if [ -n "$key" ] && mkdir -p "$cache" 2>/dev/null && cp "$1/main" "$cache/.$key.$$" 2>/dev/null; then '
    'mv -f "$cache/.$key.$$" "$cache/$key"; '
    f'ls -t "$cache" | tail -n +{CACHE_KEEP + 1} | while read -r old; do rm -f "$cache/$old"; done; '
    'else rm -f "$cache/.$key.$$"; fi; '
    'set +f; exec "$1/main"'
)

# "$@" are the validated package names. --no-remove: an install never takes packages (the compiler) away.
APT_INSTALL = (
    'cache=$(mktemp -d) || exit; trap \'rm -rf "$cache"\' EXIT; mkdir "$cache/partial" || exit; '
    "run_apt() { DEBIAN_FRONTEND=noninteractive /usr/bin/apt-get -q -o APT::Sandbox::User=root "
    '-o "Dir::Cache::Archives=$cache" "$@"; }; '
    'run_apt update && run_apt install -y --no-install-recommends --no-remove "$@"'
)

# A Debian package name, optionally :arch and =version. It must end in a letter, digit or '+': apt reads a
# trailing '-' as "remove this package". No '/' (release pins, paths), no leading '-' (options).
DEBIAN_PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9.+-]*[a-z0-9+](?::[a-z0-9-]*[a-z0-9])?(?:=[A-Za-z0-9.+~:-]*[A-Za-z0-9+~])?"
)

INSTALL_TIMEOUT_S = 900

# The default image, built FROM the common base by ``python -m llm_sandbox.images build cpp``.
# Each header is compiled from a one-line wrapper that includes it, so that its own text counts as a system header
# as it does when code includes it; the last step checks that g++ takes the .gch as valid for the runs' flags.
IMAGE_RECIPE = debian_toolchain_recipe("cpp", "g++ (C++17) and the C library headers", "g++", "g++ --version") + (
    "# Precompiled standard headers for the runs' flags (see llm_sandbox/languages/cpp.py).\n"
    f"RUN mkdir -p {PCH_DIR}/bits /tmp/pch-source/bits \\\n"
    + "".join(
        f"    && printf '#include <%s>\\n' '{header}' > /tmp/pch-source/{header} \\\n"
        f"    && g++ {COMPILE_FLAGS} -x c++-header -o {PCH_DIR}/{header}.gch /tmp/pch-source/{header} \\\n"
        f"    && printf '#include <%s>\\nint main() {{}}\\n' '{header}' | g++ {COMPILE_FLAGS} -isystem {PCH_DIR} "
        f"-Winvalid-pch -Werror -H -x c++ -o /dev/null - 2>&1 | grep -qx '! {PCH_DIR}/{header}.gch' \\\n"
        for header in PCH_HEADERS
    )
    + f"    && rm -rf /tmp/pch-source && chmod -R a+rX {PCH_DIR}\n"
)

LANGUAGE = Language(
    name="cpp",
    file_name="main.cpp",
    run=("/bin/sh", "-c", COMPILE_AND_RUN, "sh", "{dir}"),
    install=("/usr/bin/timeout", "-k", "10", str(INSTALL_TIMEOUT_S), "/bin/sh", "-c", APT_INSTALL, "sh", "{libraries}"),
    library_pattern=DEBIAN_PACKAGE,
    library_hint="a Debian package name, optionally with =version, e.g. 'libfmt-dev' or 'libboost-dev'",
    compile_error=re.compile(r"main\.cpp:\d+:\d+: error: "),
    image_recipe=IMAGE_RECIPE,
    install_user="0",
)
