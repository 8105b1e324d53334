"""Ruby: ``ruby`` runs the code; ``gem install --user-install`` installs gems for the code user.

The user install directory (under HOME, which is the workdir in a container the library created) is on Ruby's
default gem path, so installed gems are found without setting GEM_HOME, and an attached container keeps the gem
setup its owner gave it. Versions use gem's own ``name:version`` form (``rake:13.0.6``). A locally built ``.gem``
under the workdir is installed from the file.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import Language, debian_toolchain_recipe

GEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[0-9][A-Za-z0-9.]*)?")

# The default image, built FROM the common base by ``python -m llm_sandbox.images build ruby``.
IMAGE_RECIPE = debian_toolchain_recipe("ruby", "Ruby with gem", "ruby", "ruby --version && gem --version")

LANGUAGE = Language(
    name="ruby",
    file_name="main.rb",
    run=("ruby", "{file}"),
    install=("gem", "install", "--no-document", "--user-install", "{libraries}"),
    library_pattern=GEM_NAME,
    library_hint="a gem name, optionally with :version, e.g. 'rake' or 'rake:13.0.6'",
    compile_error=re.compile(r"syntax errors?\b"),
    image_recipe=IMAGE_RECIPE,
    local_source=re.compile(r".+\.gem"),
    local_hint="the absolute path of a built .gem file",
)
