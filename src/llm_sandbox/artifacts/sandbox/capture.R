# Captures the figures an R program draws, read by Rscript as the user profile (R_PROFILE_USER) before the program
# runs, as the program's own user. Nothing is left in the program's workspace: everything lives in local().
#
# - The default graphics device (what plot(), hist(), a printed ggplot or lattice chart opens when no device is
#   open) is a PNG device writing one file per page into the "plots" folder beside this file. R closes its devices
#   when it ends, an error included, so the last page is written too.
# - ggplot2::ggsave keeps a copy of each file it writes there as well.
# - The user profile R would have read (.Rprofile in the working folder, else in HOME) is still read.
#
# File names sort in the order the figures were made: NNNN-PPP.png for page PPP of the NNNN-th device opened,
# NNNN.ext for a saved file.
local({
  folder <- file.path(dirname(Sys.getenv("R_PROFILE_USER")), "plots")
  count <- 0L
  next_name <- function() {
    count <<- count + 1L
    dir.create(folder, showWarnings = FALSE, mode = "0700")
    file.path(folder, sprintf("%04d", count))
  }
  options(device = function(...) {
    grDevices::png(
      filename = paste0(next_name(), "-%03d.png"),
      width = 7, height = 5, units = "in", res = 100
    )
  })
  keep_copy <- function(path) {
    # a regular file only, never through a link
    if (!is.character(path) || length(path) != 1L || !file.exists(path) || nzchar(Sys.readlink(path))) return()
    if (isTRUE(file.info(path)$isdir)) return()
    extension <- tolower(tools::file_ext(path))
    if (identical(extension, "jpg")) extension <- "jpeg"
    if (identical(extension, "tif")) extension <- "tiff"
    file.copy(path, paste0(next_name(), ".", extension))
  }
  setHook(packageEvent("ggplot2", "onLoad"), function(...) {
    namespace <- asNamespace("ggplot2")
    original <- get("ggsave", envir = namespace)
    wrapped <- function(filename, plot = ggplot2::last_plot(), device = NULL, path = NULL, ...) {
      written <- original(filename, plot = plot, device = device, path = path, ...)
      saved <- if (is.null(path)) filename else file.path(path, filename)
      tryCatch(keep_copy(saved), error = function(error) {
        message("llm-sandbox: could not capture ", saved, ": ", conditionMessage(error))
      })
      invisible(written)
    }
    unlockBinding("ggsave", namespace)
    assign("ggsave", wrapped, envir = namespace)
    lockBinding("ggsave", namespace)
  })
  profile <- if (file.exists(".Rprofile")) ".Rprofile" else path.expand("~/.Rprofile")
  if (file.exists(profile)) sys.source(profile, envir = globalenv())
})
