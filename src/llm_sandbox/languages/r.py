"""R: ``Rscript`` runs the code; ``install.packages`` installs packages for it.

In a sandbox the library created, packages go to the code's prefix (``/opt/llm-sandbox/user/r``), its user library
(``R_LIBS_USER``). The install runs ``Rscript --vanilla`` (no profile, environment or site file of the code's) with a
fresh HOME, installs into a fresh library there (so no package of the prefix is loaded while it runs) and then
moves each installed package into the prefix. In an attached container it installs into ``R_LIBS_USER`` as the
container's owner set it up.

The repository is ``LLM_SANDBOX_R_REPOS`` from the container's environment (``runtime_configs={"environment":
{...}}``), else the ``repos`` option R is configured with, else https://cloud.r-project.org. A source package
under the workdir (a ``.tar.gz`` from ``R CMD build``, or its folder) is installed from the file.

``install.packages`` only warns when a package cannot be installed; the install script turns every warning into
an error, so the failure (an unreachable repository, a missing package) is a non-zero exit with R's message.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import USER_PREFIX, Language, Spare, debian_toolchain_recipe

# Attached containers: into the first folder of R_LIBS_USER, as the container's owner set R up.
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

# Sandboxes the library created: the first argument is the prefix folder, the rest the validated names or paths.
# The packages are built in a fresh library under the fresh HOME, then moved into the prefix.
INSTALL_INTO_PREFIX = """
args <- commandArgs(trailingOnly = TRUE)
dest <- args[1]
args <- args[-1]
lib <- file.path(Sys.getenv("HOME"), "library")
dir.create(lib, recursive = TRUE, showWarnings = FALSE)
.libPaths(lib)
repos <- Sys.getenv("LLM_SANDBOX_R_REPOS")
if (!nzchar(repos)) {
  repos <- getOption("repos")
  if (is.null(repos) || any(repos == "@CRAN@")) repos <- "https://cloud.r-project.org"
}
options(warn = 2)
local <- startsWith(args, "/")
if (any(local)) install.packages(args[local], lib = lib, repos = NULL, type = "source")
if (any(!local)) install.packages(args[!local], lib = lib, repos = repos)
dir.create(dest, recursive = TRUE, showWarnings = FALSE)
for (package in list.files(lib)) {
  if (startsWith(package, "00LOCK")) next
  target <- file.path(dest, package)
  unlink(target, recursive = TRUE)
  # The prefix is another filesystem than the temporary folder (a tmpfs of the disk cap): rename fails there,
  # with a warning that warn = 2 would make an error, and the copy does the move.
  moved <- suppressWarnings(file.rename(file.path(lib, package), target))
  if (!moved && !file.copy(file.path(lib, package), dest, recursive = TRUE)) {
    stop("could not move ", package, " into ", dest)
  }
}
"""

# The spare (see ``Spare``). Most of R's start-up is attaching its default packages (methods, stats, ...), before it
# reads the script. ``Rscript /dev/fd/3`` does that and then waits on descriptor 3 for the script itself: it is
# handed this line and the program's source, so R's own script loop runs the program, one expression at a time as
# under ``Rscript FILE`` (the values it prints, warnings, "Calls:" and "Execution halted" are R's own). The line
# first makes ``commandArgs()`` name the code file where R saw /dev/fd/3 (``{file}`` is the path).
SPARE_SCRIPT = "/dev/fd/3"
SPARE_PREAMBLE = (
    "local({a <- commandArgs(); a[a == '--file=" + SPARE_SCRIPT + "'] <- '--file={file}'; "
    "f <- function(trailingOnly = FALSE) { if (trailingOnly) { m <- match('--args', a, 0L); "
    "if (m) a[-seq_len(m)] else character() } else a }; "
    "e <- baseenv(); unlockBinding('commandArgs', e); assign('commandArgs', f, envir = e); "
    "lockBinding('commandArgs', e)})\n"
)

# An R package name: letters, digits and dots, starting with a letter and not ending with a dot.
R_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]")

# The default image, built FROM the common base by ``python -m llm_sandbox.images build r``.
IMAGE_RECIPE = debian_toolchain_recipe(
    "r",
    "R with Rscript, ggplot2 and lattice",
    "r-base-core r-cran-ggplot2 r-cran-lattice fonts-dejavu-core",
    "Rscript -e 'library(ggplot2); library(lattice)'",
)

LANGUAGE = Language(
    name="r",
    file_name="main.R",
    run=("Rscript", "{file}"),
    spare=Spare(("Rscript", SPARE_SCRIPT), hand=SPARE_PREAMBLE + "{source}"),
    install=("Rscript", "--vanilla", "-e", INSTALL_INTO_PREFIX, "{prefix}/r", "{libraries}"),
    attached_install=("Rscript", "-e", INSTALL_PACKAGES, "{libraries}"),
    environment={"R_LIBS_USER": f"{USER_PREFIX}/r"},
    library_pattern=R_PACKAGE,
    library_hint="an R package name, e.g. 'jsonlite'",
    compile_error=re.compile(r"^Error: unexpected ", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    local_source=re.compile(r".+"),
    local_hint="the absolute path of a source package (.tar.gz or folder)",
)
