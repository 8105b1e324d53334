"""The artifact capture's host side without an engine: formats and image headers, what a reply's files become,
what a session keeps across runs, and the options it refuses."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from llm_sandbox import (
    ArtifactSandboxSession,
    FileType,
    LanguageNotSupportPlotError,
    PlotOutput,
    UnknownOptionError,
    ValidationError,
)
from llm_sandbox.artifacts import ArtifactCapture, ArtifactLimits
from llm_sandbox.artifacts.images import file_type, image_size
from llm_sandbox.artifacts.plotters import PYTHON_LAUNCHER, R_PROFILE, plotter_for
from llm_sandbox.artifacts.session import newest_within
from llm_sandbox.languages.registry import get_language


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, dots_per_metre: int | None = None) -> bytes:
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    physical = chunk(b"pHYs", struct.pack(">IIB", dots_per_metre, dots_per_metre, 1)) if dots_per_metre else b""
    return b"\x89PNG\r\n\x1a\n" + header + physical + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def jpeg(width: int, height: int, dpi: int) -> bytes:
    jfif = b"JFIF\x00\x01\x01\x01" + struct.pack(">HH", dpi, dpi) + b"\x00\x00"
    frame = b"\x08" + struct.pack(">HH", height, width) + b"\x03" + b"\x00" * 9
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", len(jfif) + 2)
        + jfif
        + b"\xff\xc0"
        + struct.pack(">H", len(frame) + 2)
        + frame
        + b"\xff\xd9"
    )


def test_formats_come_from_the_name() -> None:
    assert file_type("plots/0001.png") is FileType.PNG
    assert file_type("plots/0002.JPG") is FileType.JPEG
    assert file_type("plots/0003.tif") is FileType.TIFF
    assert file_type("plots/0004.html") is FileType.HTML
    assert file_type("plots/0005.exe") is None
    assert file_type("plots/noextension") is None


def test_png_and_jpeg_sizes_come_from_their_headers() -> None:
    size = image_size(FileType.PNG, png(640, 480, 3937))
    assert (size.width, size.height, size.dpi) == (640, 480, 100)
    assert image_size(FileType.PNG, png(7, 5)).dpi is None
    size = image_size(FileType.JPEG, jpeg(150, 100, 50))
    assert (size.width, size.height, size.dpi) == (150, 100, 50)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (FileType.PNG, b""),
        (FileType.PNG, b"\x89PNG\r\n\x1a\n\x00"),
        (FileType.PNG, png(1, 1)[:20]),
        (FileType.JPEG, b"\xff\xd8\xff\xe0\x00"),
        (FileType.JPEG, b"\xff\xd8\xff\xe0\x00\x00\xff\xc0"),
        (FileType.JPEG, b"GIF89a"),
        (FileType.SVG, b"<svg/>"),
    ],
    ids=["empty", "signature-only", "short-header", "short-segment", "zero-length-segment", "not-jpeg", "svg"],
)
def test_a_header_that_cannot_be_read_gives_no_size(kind: FileType, data: bytes) -> None:
    size = image_size(kind, data)
    assert (size.width, size.height, size.dpi) == (None, None, None)


def test_a_reply_files_become_plots_in_order_and_output_files_by_their_path() -> None:
    capture = ArtifactCapture(get_language("python"), "/sandbox")
    assert capture.patterns() == ("plots/*", "/sandbox/outputs/**")
    artifacts = capture.read(
        {
            "plots/0002.svg": b"<svg/>",
            "plots/0001.png": png(4, 3, 3937),
            "plots/0003.bin": b"?",
            "/sandbox/outputs/tables/a.csv": b"a,b\n",
            "stray.txt": b"not asked for",
        },
        skipped=["plots/0004.png", "/sandbox/outputs/big.csv"],
    )
    assert [(plot.format, plot.width, plot.height, plot.dpi) for plot in artifacts.plots] == [
        (FileType.PNG, 4, 3, 100),
        (FileType.SVG, None, None, None),
    ]
    assert [(item.name, item.content) for item in artifacts.files] == [("tables/a.csv", b"a,b\n")]
    assert artifacts.skipped == ("plots/0004.png", "outputs/big.csv")


def test_without_plotting_or_outputs_nothing_is_asked_for() -> None:
    capture = ArtifactCapture(get_language("javascript"), "/w", plotting=False, outputs=None)
    assert capture.plotter is None
    assert capture.patterns() == ()


def test_the_python_launcher_takes_the_code_files_place_and_r_reads_a_profile() -> None:
    python = plotter_for("python", "main.py")
    assert python.wrap(["/usr/bin/python3", "-u", "{tmp}/main.py"]) == ["/usr/bin/python3", "-u", PYTHON_LAUNCHER]
    assert python.files[0].content.rstrip().endswith("_llm_sandbox_launch('main.py')")
    r = plotter_for("r", "main.R")
    assert r.wrap(["Rscript", "{tmp}/main.R"]) == [
        "/usr/bin/env",
        f"R_PROFILE_USER={R_PROFILE}",
        "Rscript",
        "{tmp}/main.R",
    ]


def test_a_language_without_a_capture_names_the_ones_with_one() -> None:
    with pytest.raises(LanguageNotSupportPlotError, match=r"javascript: they can for python, r"):
        ArtifactSandboxSession(lang="javascript")
    files_only = ArtifactSandboxSession(lang="javascript", enable_plotting=False)  # fine, and no container yet
    assert files_only.options.language.name == "javascript" and not files_only.is_open
    assert files_only.capture.patterns() == ("/sandbox/outputs/**",)


def test_options_are_checked_with_a_hint() -> None:
    with pytest.raises(UnknownOptionError, match="did you mean 'enable_plotting'"):
        ArtifactSandboxSession(enable_ploting=True)
    with pytest.raises(UnknownOptionError, match="did you mean 'lang'"):
        ArtifactSandboxSession(lnag="python")
    for folder in ("../up", "/abs", "a/*", "", "a//b"):
        with pytest.raises(ValidationError, match="outputs_folder"):
            ArtifactSandboxSession(outputs_folder=folder)
    for count, size in ((0, 1), (1, -1), (True, 1)):
        with pytest.raises(ValidationError):
            ArtifactSandboxSession(artifact_count_limit=count, artifact_limit=size)


def test_what_a_session_keeps_across_runs_is_bounded_like_a_run() -> None:
    plots = [PlotOutput(FileType.PNG, base64.b64encode(bytes(size)).decode()) for size in (5, 4, 3, 2)]
    assert newest_within(plots, ArtifactLimits(count=3, total_bytes=100)) == plots[1:]
    assert newest_within(plots, ArtifactLimits(count=10, total_bytes=5)) == plots[2:]
    assert newest_within(plots, ArtifactLimits(count=10, total_bytes=100)) == plots
