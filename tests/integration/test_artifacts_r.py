"""ArtifactSandboxSession with R on Docker, Podman and Kubernetes (the fake API server, real containers): base graphics,
ggplot2 (printed and ggsave'd) and lattice come back decoded; output and exit status stay R's own."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import ArtifactSandboxSession, FileType, PlotOutput

# Not Micromamba: its stand-in image is the Python one, without R.
pytestmark = pytest.mark.backends("docker", "podman", "kubernetes", "bubblewrap")

DEVICE_PAGE = (700, 500)  # the capture's default device: 7 x 5 inches at 100 dpi


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[ArtifactSandboxSession]:
    options: dict[str, Any] = {**backend.session_defaults, "lang": "r"}
    with ArtifactSandboxSession(**options) as opened:
        yield opened


def png_size(plot: PlotOutput) -> tuple[int, int]:
    data = plot.content
    assert plot.format is FileType.PNG
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_base_graphics_each_page_comes_back(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "x <- c(3, 1, 4, 1, 5, 9, 2, 6)\nplot(x, main = 'points')\nhist(x)\nbarplot(x)\nboxplot(x)\ncat('drawn\\n')\n",
        clear_plots=True,
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "drawn\n", "")
    assert [png_size(plot) for plot in result.plots] == [DEVICE_PAGE] * 4
    assert {(plot.width, plot.height, plot.dpi) for plot in result.plots} == {(700, 500, 100)}
    assert len({plot.content_base64 for plot in result.plots}) == 4  # four different pictures


def test_ggplot2_printed_and_saved_and_lattice(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "suppressPackageStartupMessages(library(ggplot2))\n"
        "library(lattice)\n"
        "data <- data.frame(month = 1:6, sales = c(3, 5, 2, 8, 6, 9))\n"
        "chart <- ggplot(data, aes(month, sales)) + geom_col()\n"
        "print(chart)\n"
        "ggsave('sales.png', chart, width = 4, height = 3, dpi = 50)\n"
        "ggsave('sales.pdf', chart, width = 4, height = 3)\n"
        "print(xyplot(sales ~ month, data))\n",
        clear_plots=True,
    )
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    # The default device's pages (the printed ggplot, the lattice chart), then the saved files.
    assert [plot.format for plot in result.plots] == [FileType.PNG, FileType.PNG, FileType.PNG, FileType.PDF]
    printed, lattice, saved_png, saved_pdf = result.plots
    assert png_size(printed) == png_size(lattice) == DEVICE_PAGE
    assert png_size(saved_png) == (200, 150) and saved_png.dpi == 50
    assert saved_pdf.content.startswith(b"%PDF-")


def test_a_run_that_draws_then_stops_returns_its_plots_and_its_own_error(session: ArtifactSandboxSession) -> None:
    result = session.run("plot(1:3)\nstop('boom')\n", clear_plots=True)
    assert result.exit_code == 1
    assert result.stderr == "Error: boom\nExecution halted\n"
    assert [png_size(plot) for plot in result.plots] == [DEVICE_PAGE]


def test_the_workspace_holds_only_what_the_program_made(session: ArtifactSandboxSession) -> None:
    result = session.run("x <- 1\nprint(ls(all.names = TRUE))\n", clear_plots=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, '[1] "x"\n', "")
    assert result.plots == []
