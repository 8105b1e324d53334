"""Ruby: ``ruby`` runs the code; ``gem install`` installs gems for the code.

In a sandbox the library created, gems go to the code's prefix (``/opt/llm-sandbox/user/ruby``), which is first on
the code's ``GEM_PATH`` (its trailing ``:`` keeps Ruby's default gem folders after it, so Debian's gems and an
attached container's own gem setup still load). The install reads no ``.gemrc`` (``--norc``) and installs into a
fresh folder under its fresh HOME, never loading a gem specification from the prefix (specifications are Ruby
code the code could have written), then moves the result into the prefix. Versions use gem's own
``name:version`` form (``rake:13.0.6``). A locally built ``.gem`` under the workdir is installed from the file. In
an attached container ``gem install --user-install`` runs as the container's owner set it up.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import USER_PREFIX, Language, debian_toolchain_recipe

GEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[0-9][A-Za-z0-9.]*)?")

# "$1" is the prefix folder, "$@" then the validated gem names or local .gem paths.
GEM_INSTALL = (
    "dest=$1; shift; work=$HOME/gems; "
    'gem install --norc --no-document --install-dir "$work" --bindir "$work/bin" "$@" || exit; '
    'rm -rf "$work/cache" "$work/doc" && mkdir -p "$dest" && cp -R "$work/." "$dest/"'
)

# The default image, built FROM the common base by ``python -m llm_sandbox.images build ruby``.
IMAGE_RECIPE = debian_toolchain_recipe("ruby", "Ruby with gem", "ruby", "ruby --version && gem --version")

LANGUAGE = Language(
    name="ruby",
    file_name="main.rb",
    run=("ruby", "{file}"),
    install=("/bin/sh", "-c", GEM_INSTALL, "sh", "{prefix}/ruby", "{libraries}"),
    attached_install=("gem", "install", "--no-document", "--user-install", "{libraries}"),
    environment={"GEM_PATH": f"{USER_PREFIX}/ruby:"},
    user_bin=("{prefix}/ruby/bin",),
    library_pattern=GEM_NAME,
    library_hint="a gem name, optionally with :version, e.g. 'rake' or 'rake:13.0.6'",
    compile_error=re.compile(r"syntax errors?\b"),
    image_recipe=IMAGE_RECIPE,
    local_source=re.compile(r".+\.gem"),
    local_hint="the absolute path of a built .gem file",
)
