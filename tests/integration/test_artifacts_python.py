"""ArtifactSandboxSession with Python on every harness (Docker, Podman, Kubernetes on the fake API server, Micromamba
in its stand-in image): every figure
that comes back is decoded (PNG and JPEG sizes from their headers, SVG, PDF, EPS, TIFF and HTML by their first
bytes); output stays exactly what the code printed; caps hold against a run that floods the plots folder."""

from __future__ import annotations

import base64
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import ABOVE_THE_COMMAND_PATH, Harness
from llm_sandbox import ArtifactSandboxSession, FileType, PlotOutput

pytestmark = ABOVE_THE_COMMAND_PATH


def artifact_session(backend: Harness, **options: Any) -> ArtifactSandboxSession:
    return ArtifactSandboxSession(**{**backend.session_defaults, "lang": "python", **options})


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[ArtifactSandboxSession]:
    with artifact_session(backend) as opened:
        yield opened


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The size in a JPEG's start-of-frame segment, walked segment by segment."""
    assert data.startswith(b"\xff\xd8"), data[:4]
    offset = 2
    while data[offset] == 0xFF:
        marker, length = data[offset + 1], struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        if 0xC0 <= marker <= 0xC3:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + length
    raise AssertionError("no start-of-frame segment")


def sizes(plots: list[PlotOutput]) -> list[tuple[int, int]]:
    return [png_size(plot.content) for plot in plots]


def test_several_figures_come_back_in_creation_order_with_their_sizes(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(4, 3)); plt.plot([1, 2, 3])\n"
        "plt.figure(figsize=(5, 2)); plt.bar(['a', 'b'], [3, 1])\n"
        "plt.figure(1); plt.title('back to the first')\n"  # activating an older figure does not reorder them
        "plt.show()\n"
        "fig, ax = plt.subplots(figsize=(2, 2)); ax.scatter([1, 2], [2, 1])\n"
        "plt.figure(figsize=(3, 1)); plt.hist([1, 2, 2, 3])\n"  # both left open: captured at the end
        "print('drawn')\n",
        clear_plots=True,
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, "drawn\n", "")
    assert [plot.format for plot in result.plots] == [FileType.PNG] * 4
    assert sizes(result.plots) == [(400, 300), (500, 200), (200, 200), (300, 100)]
    assert [(plot.width, plot.height, plot.dpi) for plot in result.plots] == [
        (400, 300, 100),
        (500, 200, 100),
        (200, 200, 100),
        (300, 100, 100),
    ]
    assert not result.artifacts_truncated and result.skipped_artifacts == []


def test_savefig_keeps_a_copy_of_every_format_and_show_does_not_repeat_a_saved_figure(
    session: ArtifactSandboxSession,
) -> None:
    result = session.run(
        "import matplotlib.pyplot as plt\n"
        "fig = plt.figure(figsize=(3, 2), dpi=50); plt.plot([3, 1, 2])\n"
        "for name in ['c.png', 'c.jpg', 'c.jpeg', 'c.svg', 'c.pdf', 'c.eps', 'c.tiff', 'c.svgz', 'c.webp']:\n"
        "    fig.savefig(name)\n"
        "fig.savefig('noext', format='png')\n"
        "plt.show()\n",
        clear_plots=True,
    )
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    kinds = [plot.format for plot in result.plots]
    assert kinds == [
        FileType.PNG,
        FileType.JPEG,
        FileType.JPEG,
        FileType.SVG,
        FileType.PDF,
        FileType.EPS,
        FileType.TIFF,
        FileType.SVGZ,
        FileType.WEBP,
        FileType.PNG,
    ]
    png, jpg, jpeg, svg, pdf, eps, tiff, svgz, webp, bare = (plot.content for plot in result.plots)
    assert png_size(png) == png_size(bare) == (150, 100)
    assert jpeg_size(jpg) == jpeg_size(jpeg) == (150, 100)
    assert (result.plots[1].width, result.plots[1].height, result.plots[1].dpi) == (150, 100, 50)
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert pdf.startswith(b"%PDF-")
    assert eps.startswith(b"%!PS-Adobe")
    assert tiff[:4] in (b"II*\x00", b"MM\x00*")
    assert svgz.startswith(b"\x1f\x8b")  # gzip
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"


def test_seaborn_and_plotly_come_back(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "import seaborn as sns, pandas as pd\n"
        "import matplotlib.pyplot as plt\n"
        "sns.barplot(data=pd.DataFrame({'x': ['a', 'b'], 'y': [1, 2]}), x='x', y='y')\n"
        "plt.show()\n"
        "import plotly.graph_objects as go\n"
        "fig = go.Figure(go.Bar(y=[1, 3, 2]))\n"
        "fig.show()\n"
        "fig.write_html('chart.html')\n",
        clear_plots=True,
    )
    assert (result.exit_code, result.stderr) == (0, ""), result.stderr
    assert [plot.format for plot in result.plots] == [FileType.PNG, FileType.HTML, FileType.HTML]
    assert png_size(result.plots[0].content) == (640, 480)
    shown, written = (plot.content.decode() for plot in result.plots[1:])
    for html in (shown, written):
        assert html.lstrip().lower().startswith("<html") and "Plotly.newPlot" in html
    assert "cdn.plot.ly" in shown and len(shown) < 100_000  # the shown figure links plotly.js, small
    assert len(written) > 1_000_000  # as the code asked: plotly.js inside


def test_plotly_write_image_without_its_engine_says_so_on_stderr(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1])).write_image('chart.png')\n", clear_plots=True
    )
    assert result.exit_code == 1
    assert 'ValueError: \nImage export using the "kaleido" engine requires the kaleido package' in result.stderr
    assert result.stderr.rstrip().endswith("$ pip install -U kaleido")
    assert result.plots == []


def test_output_exit_code_and_namespace_are_the_programs_own(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "import sys, os, matplotlib.pyplot as plt\n"
        "print(sorted(name for name in globals() if not name.startswith('__')))\n"
        "print(__name__, __doc__, os.path.basename(__file__), os.path.basename(sys.argv[0]))\n"
        "print(sys.path[0] == os.path.dirname(__file__))\n"
        "print('llm_sandbox_capture' in sys.modules)\n"
        "sys.stderr.write('warned\\n')\n"
        "plt.plot([1, 2]); plt.show()\n"
        "sys.exit(7)\n",
        clear_plots=True,
    )
    assert result.exit_code == 7
    assert result.stdout == "['os', 'plt', 'sys']\n__main__ None main.py main.py\nTrue\nFalse\n"
    assert result.stderr == "warned\n"
    assert sizes(result.plots) == [(640, 480)]


def test_pyplot_is_imported_ahead_by_the_waiting_interpreter_and_nothing_of_it_shows(
    session: ArtifactSandboxSession, backend: Harness
) -> None:
    check = (
        "import os, sys\n"
        "print([name for name in os.environ if name.startswith('LLM_SANDBOX')], 'matplotlib' in sys.modules)\n"
    )
    session.execute_command("true")  # no interpreter waits after a command: the next run starts afresh
    cold = session.run(check, clear_plots=True)
    time.sleep(2)  # the interpreter waiting for the next run imports pyplot meanwhile
    warm = session.run(check)
    assert (cold.stdout, cold.stderr) == ("[] False\n", "")
    assert (warm.stdout, warm.stderr) == ("[] True\n", "")
    time.sleep(2)
    drawn = session.run("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n")  # pyplot imported ahead
    assert (sizes(drawn.plots), drawn.stderr) == ([(640, 480)], "")


def test_a_run_that_draws_then_raises_returns_its_plots_and_its_own_traceback(
    session: ArtifactSandboxSession,
) -> None:
    result = session.run(
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]); plt.show()\n"
        "plt.figure(figsize=(2, 1)); plt.plot([2, 1])\n"
        "def fail():\n"
        "    raise ValueError('boom')\n"
        "fail()\n",
        clear_plots=True,
    )
    assert result.exit_code == 1
    assert sizes(result.plots) == [(640, 480), (200, 100)]
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert re.fullmatch(r'  File "/tmp/[^"]+/main\.py", line 6, in <module>', lines[1]), lines
    assert lines[-1] == "ValueError: boom"
    assert "llm_sandbox" not in result.stderr and "<string>" not in result.stderr


def test_a_syntax_error_reads_as_python_prints_it(session: ArtifactSandboxSession) -> None:
    result = session.run("print('fine')\nprint(\n", clear_plots=True)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith('  File "/tmp/') and 'main.py", line 2' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("SyntaxError:")


def test_show_never_blocks(session: ArtifactSandboxSession) -> None:
    started = time.monotonic()
    result = session.run(
        "import matplotlib.pyplot as plt\n"
        "for block in (True, None, False):\n"
        "    plt.plot([1, 2])\n"
        "    plt.show(block=block) if block is not None else plt.show()\n"
        "plt.show()\n",  # nothing open: nothing saved
        timeout=30,
        clear_plots=True,
    )
    assert result.exit_code == 0, result.stderr
    assert len(result.plots) == 3
    assert time.monotonic() - started < 25


def test_plots_add_up_across_runs_until_cleared(session: ArtifactSandboxSession) -> None:
    draw = "import matplotlib.pyplot as plt\nplt.figure(figsize=({}, 1)); plt.plot([1, 2]); plt.show()\n"
    assert sizes(session.run(draw.format(1), clear_plots=True).plots) == [(100, 100)]
    assert sizes(session.run(draw.format(2)).plots) == [(100, 100), (200, 100)]
    assert session.run("print('no figure')").plots[-1].width == 200  # still there: nothing cleared them
    session.clear_plots()
    assert sizes(session.run(draw.format(3)).plots) == [(300, 100)]
    assert session.run("print('no figure')", clear_plots=True).plots == []


def test_files_written_into_the_outputs_folder_come_back_once(session: ArtifactSandboxSession) -> None:
    result = session.run(
        "import os, json\n"
        "os.makedirs('outputs/tables', exist_ok=True)\n"
        "open('outputs/report.csv', 'w').write('month,sales\\njan,3\\n')\n"
        "json.dump({'total': 3}, open('outputs/tables/summary.json', 'w'))\n"
        "os.symlink('/etc/passwd', 'outputs/passwd.csv')\n"
        "open('elsewhere.csv', 'w').write('not an output')\n",
        clear_plots=True,
    )
    assert result.exit_code == 0, result.stderr
    assert {item.name: item.content for item in result.files} == {
        "report.csv": b"month,sales\njan,3\n",
        "tables/summary.json": b'{"total": 3}',
    }
    assert result.plots == []
    again = session.run("open('outputs/late.txt', 'w').write('new')\n")
    assert [(item.name, item.content) for item in again.files] == [("late.txt", b"new")]
    session.execute_command("rm -rf outputs elsewhere.csv")


def test_a_session_without_plotting_captures_nothing(backend: Harness) -> None:
    with artifact_session(backend, enable_plotting=False) as plain:
        result = plain.run(
            "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "plt.plot([1, 2]); plt.savefig('a.png'); plt.show()\nprint('ok')\n"
        )
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    assert result.plots == []


def test_the_caps_bound_what_a_run_sends_back(backend: Harness) -> None:
    with artifact_session(backend, artifact_count_limit=3, artifact_limit=200_000) as capped:
        many = capped.run(
            "import matplotlib.pyplot as plt\n"
            "for width in range(1, 6):\n"
            "    plt.figure(figsize=(width, 1)); plt.plot([1, 2])\n"
            "plt.show()\n"
        )
        assert many.exit_code == 0, many.stderr
        assert sizes(many.plots) == [(100, 100), (200, 100), (300, 100)]
        assert many.artifacts_truncated
        assert many.skipped_artifacts == ["plots/0004.png", "plots/0005.png"]
        # A run that writes into the plots folder itself, thousands of files and a link, gets no further.
        flood = capped.run(
            "import os\n"
            "folder = os.path.join(os.path.dirname(__file__), 'plots')\n"
            "os.makedirs(folder)\n"
            "os.symlink('/etc/passwd', os.path.join(folder, '0000.png'))\n"
            "for i in range(1, 3000):\n"
            "    open(os.path.join(folder, '%04d.png' % i), 'wb').close()\n"
            "open(os.path.join(folder, '9999.png'), 'wb').write(b'x' * 1_000_000)\n",
            clear_plots=True,
        )
        assert flood.exit_code == 0, flood.stderr
        assert [plot.content for plot in flood.plots] == [b"", b"", b""]  # the link is not read
        assert flood.artifacts_truncated
        assert flood.skipped_artifacts[:2] == ["plots/0004.png", "plots/0005.png"]
        assert len(flood.skipped_artifacts) == 101 and flood.skipped_artifacts[-1] == "(2897 more)"
        big = capped.run(
            "import os\nos.makedirs('outputs', exist_ok=True)\n"
            "open('outputs/big.bin', 'wb').write(os.urandom(300_000))\n"
            "open('outputs/small.txt', 'w').write('kept?')\n",
            clear_plots=True,
        )
        # The one that does not fit is left out, and every one after it.
        assert big.files == [] and big.skipped_artifacts == ["outputs/big.bin", "outputs/small.txt"]
        assert big.artifacts_truncated


@pytest.mark.requires("attach")
def test_an_attached_container_with_matplotlib_returns_plots(backend: Harness, make_container: Any) -> None:
    container = make_container()
    with artifact_session(backend, container_id=container.id) as attached:
        result = attached.run("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\nprint('ok')\n")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "ok\n", "")
    assert sizes(result.plots) == [(640, 480)]
    assert base64.b64decode(result.plots[0].content_base64) == result.plots[0].content
