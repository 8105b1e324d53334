"""Value objects returned by sessions: console output, execution results, captured plots and output files."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

StreamCallback = Callable[[str], None]
"""What ``on_stdout`` / ``on_stderr`` are called with: each piece of output, decoded, as it arrives."""


class FileType(str, Enum):
    """File formats a captured artifact can have (every format matplotlib's ``savefig`` writes has one)."""

    PNG = "png"
    JPEG = "jpeg"
    SVG = "svg"
    SVGZ = "svgz"
    PDF = "pdf"
    EPS = "eps"
    PS = "ps"
    TIFF = "tiff"
    WEBP = "webp"
    PGF = "pgf"
    RAW = "raw"
    GIF = "gif"
    CSV = "csv"
    JSON = "json"
    TXT = "txt"
    HTML = "html"


class ContainerRef(str):
    """The container (or, on Kubernetes, the pod) an open session uses: its engine id (the pod's name), also as
    ``.id``. It is a string because the reference's ``session.container`` is one on Kubernetes (the pod's name,
    passed on as ``container_id=``) and an object with ``.id`` elsewhere: this is both."""

    __slots__ = ()

    @property
    def id(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class ConsoleOutput:
    """What one run or command printed, and how it ended.

    ``exit_code`` is always the real exit status of the process; ``timed_out`` and ``truncated`` say whether the
    library stopped it, and ``duration_s`` is the wall time the sandbox measured.
    """

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0

    def success(self) -> bool:
        """True when the process exited with status 0 and was not stopped by the library."""
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class PlotOutput:
    """One captured figure: its format and its bytes, base64-encoded."""

    format: FileType
    content_base64: str
    width: int | None = None
    height: int | None = None
    dpi: int | None = None

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.content_base64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format.value,
            "content_base64": self.content_base64,
            "width": self.width,
            "height": self.height,
            "dpi": self.dpi,
        }


@dataclass(frozen=True)
class OutputFile:
    """A file a run wrote into the outputs folder of the workdir: its path there and its bytes, base64-encoded."""

    name: str
    content_base64: str

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.content_base64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "content_base64": self.content_base64}


@dataclass(frozen=True)
class ExecutionResult(ConsoleOutput):
    """Console output plus the artifacts a run produced: ``plots`` (figures, in the order they were drawn) and
    ``files`` (what it wrote into the outputs folder). ``artifacts_truncated``: the run made more artifacts than
    the caps allow; the ones left out are named in ``skipped_artifacts``."""

    plots: list[PlotOutput] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)
    artifacts_truncated: bool = False
    skipped_artifacts: list[str] = field(default_factory=list)

    def to_dict(self, include_plots: bool = True) -> dict[str, Any]:
        artifacts = ("plots", "files")
        data = {key: value for key, value in asdict(self).items() if key not in artifacts}
        if include_plots:
            data["plots"] = [plot.to_dict() for plot in self.plots]
        data["files"] = [item.to_dict() for item in self.files]
        return data

    def to_json(self, include_plots: bool = True) -> str:
        return json.dumps(self.to_dict(include_plots=include_plots))
