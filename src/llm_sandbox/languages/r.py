"""R: ``Rscript`` runs the code; ``install.packages`` installs into the user library (R_LIBS_USER).

The repository is ``LLM_SANDBOX_R_REPOS`` from the container's environment (``runtime_configs={"environment":
{...}}``), else the ``repos`` option R is configured with, else https://cloud.r-project.org. A source package
under the workdir (a ``.tar.gz`` from ``R CMD build``, or its folder) is installed from the file.

``install.packages`` only warns when a package cannot be installed; the install script turns every warning into
an error, so the failure (an unreachable repository, a missing package) is a non-zero exit with R's message.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import Language, debian_toolchain_recipe

INSTALL_PACKAGES = """
args <- commandArgs(trailingOnly = TRUE)
lib <- path.expand(strsplit(Sys.getenv("R_LIBS_USER"), ":", fixed = TRUE)[[1]][1])
dir.create(lib, recursive = TRUE, showWarnings = FALSE)
.libPaths(c(lib, .libPaths()))
repos <- Sys.getenv("LLM_SANDBOX_R_REPOS")
if (!nzchar(repos)) {
  repos <- getOption("repos")
  if (is.null(repos) || any(repos == "@CRAN@")) repos <- "https://cloud.r-project.org"
}
options(warn = 2)
local <- startsWith(args, "/")
if (any(local)) install.packages(args[local], lib = lib, repos = NULL, type = "source")
if (any(!local)) install.packages(args[!local], lib = lib, repos = repos)
"""

# An R package name: letters, digits and dots, starting with a letter and not ending with a dot.
R_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]")

# The default image, built FROM the common base by ``python -m llm_sandbox.images build r``.
IMAGE_RECIPE = debian_toolchain_recipe("r", "R with Rscript", "r-base-core", "Rscript --version")

LANGUAGE = Language(
    name="r",
    file_name="main.R",
    run=("Rscript", "{file}"),
    install=("Rscript", "-e", INSTALL_PACKAGES, "{libraries}"),
    library_pattern=R_PACKAGE,
    library_hint="an R package name, e.g. 'jsonlite'",
    compile_error=re.compile(r"^Error: unexpected ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    local_source=re.compile(r".+"),
    local_hint="the absolute path of a source package (.tar.gz or folder)",
)
