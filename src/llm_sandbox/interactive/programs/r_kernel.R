# The R kernel of an interactive session: runs inside the sandbox, as the code's user, one cell per request.
#
# Started as `Rscript --no-echo -e <this source> PLOT_FOLDER READY_TAG`, it talks with the helper over its standard streams: each
# cell comes on stdin as a line `TAG SIZE` and SIZE bytes of UTF-8 source; its output goes to stdout and stderr as
# it is written; the line `\x1eTAG\x1eSTATUS` on stdout ends it (STATUS 0: completed, 1: an error stopped it).
#
# Cells are evaluated as R's own read-eval-print loop does it: parse, then each top-level expression evaluated in
# the global environment, its value printed when visible (`withVisible`), the first error stopping the cell with
# R's "Error in call : message". Everything a cell assigns stays in the global environment for the next ones.
# Warnings are printed as they happen. A timed-out cell is interrupted with SIGINT, which R signals in
# the cell as an interrupt condition: the cell stops and the global environment keeps what earlier cells made.
# What a cell draws (plot(), a printed ggplot or lattice chart: R's default device) goes to a PNG device writing
# into PLOT_FOLDER/TAG, one file per page; the devices are closed when the cell ends, so its figures come back
# with it.

local({
  mark <- "\x1e"
  args <- commandArgs(trailingOnly = TRUE)
  ready_tag <- args[length(args)]
  plot_folder <- args[length(args) - 1L]
  devices <- 0L

  draw_into <- function(folder) {
    options(device = function(...) {
      devices <<- devices + 1L
      dir.create(folder, showWarnings = FALSE, recursive = TRUE, mode = "0700")
      grDevices::png(
        filename = file.path(folder, sprintf("plot-%03d-%%03d.png", devices)),
        width = 7, height = 5, units = "in", res = 100
      )
    })
  }
  requests <- file("stdin", open = "rb")

  end_cell <- function(tag, status) {
    flush(stdout())
    flush(stderr())
    cat(mark, tag, mark, status, "\n", sep = "")
    flush(stdout())
  }

  # "Error in f() : message", as R's loop says it; a condition raised at the cell's top level names the kernel's
  # own eval call, which R's loop would not show: "Error: message".
  describe <- function(kind, condition) {
    call <- conditionCall(condition)
    where <- if (is.null(call)) "" else paste(deparse(call, nlines = 1L), collapse = "")
    if (!nzchar(where) || startsWith(where, "eval(expression")) {
      paste0(kind, ": ", conditionMessage(condition))
    } else {
      paste0(kind, " in ", where, " : ", conditionMessage(condition))
    }
  }

  run_cell <- function(source) {
    expressions <- tryCatch(parse(text = source, keep.source = FALSE), error = function(condition) {
      cat("Error: ", conditionMessage(condition), "\n", sep = "", file = stderr())
      NULL
    })
    if (is.null(expressions)) {
      return(1L)
    }
    for (expression in expressions) {
      stopped <- tryCatch({
        shown <- withCallingHandlers(withVisible(eval(expression, envir = globalenv())), warning = function(condition) {
          cat(describe("Warning", condition), "\n", sep = "", file = stderr())
          invokeRestart("muffleWarning")
        })
        if (shown$visible) print(shown$value)
        FALSE
      }, error = function(condition) {
        cat(describe("Error", condition), "\n", sep = "", file = stderr())
        TRUE
      }, interrupt = function(condition) {
        cat("Interrupted\n", file = stderr())
        TRUE
      })
      if (stopped) {
        return(1L)
      }
    }
    0L
  }

  end_cell(ready_tag, "r")
  repeat {
    # An interrupt that comes late (the cell had just ended) finds the kernel waiting here: it is ignored.
    header <- tryCatch(readLines(requests, n = 1L, warn = FALSE), interrupt = function(condition) NA_character_)
    if (length(header) == 0L) break
    if (is.na(header[1L])) next
    parts <- strsplit(header, " ", fixed = TRUE)[[1L]]
    size <- as.integer(parts[2L])
    source <- if (size > 0L) rawToChar(readBin(requests, "raw", size)) else ""
    Encoding(source) <- "UTF-8"
    draw_into(file.path(plot_folder, parts[1L]))
    status <- tryCatch(run_cell(source), interrupt = function(condition) 1L)
    tryCatch(grDevices::graphics.off(), error = function(condition) NULL)
    end_cell(parts[1L], status)
  }
})
