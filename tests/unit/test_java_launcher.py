"""The Java launcher's build steps and the spare's script, without an engine (the launcher itself is tested against
``java Main.java`` in tests/integration/test_java_spare.py)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

from llm_sandbox.languages.java import LANGUAGE
from llm_sandbox.languages.java_launcher import HAND_FD, SPARE_SCRIPT, image_steps, launcher_sources

# Linux's limit on one argument (MAX_ARG_STRLEN): the whole RUN step reaches /bin/sh -c as one.
ONE_ARGUMENT_LIMIT = 128 * 1024


def test_the_image_steps_carry_every_launcher_source_unchanged() -> None:
    steps = image_steps()
    carried = {
        name: base64.b64decode(encoded).decode("utf-8")
        for encoded, name in re.findall(r"echo ([A-Za-z0-9+/=]+) \| base64 -d > (\S+);", steps)
    }
    assert carried == launcher_sources()
    assert {"SpareLauncher.java", "FrameProbe.java"} <= set(carried)
    assert len(steps.encode()) < ONE_ARGUMENT_LIMIT


def test_the_java_language_keeps_the_plain_run_and_names_the_spare() -> None:
    assert LANGUAGE.run == ("java", "{file}")
    recipe = LANGUAGE.spare_recipe({"dir": "{tmp}", "workdir": "/sandbox"})
    assert recipe is not None
    assert recipe["argv"] == ["/bin/sh", "-c", SPARE_SCRIPT, "sh"]
    assert recipe["fd"] == HAND_FD == 0


def test_without_the_launcher_the_spare_is_the_plain_run_once_the_path_comes(tmp_path: Path) -> None:
    # A java that is not the launcher's JDK (here: a stand-in that reports how it was called and what its stdin
    # holds): the script waits for the path, then runs "java PATH" with stdin from /dev/null.
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho "java $*"\necho "stdin: $(cat)"\n')
    fake.chmod(0o755)
    done = subprocess.run(
        ["/bin/sh", "-c", SPARE_SCRIPT, "sh"],
        input="/tmp/run/Main.java\nleft over\n",
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "java /tmp/run/Main.java\nstdin: \n", "")


def test_a_spare_let_go_without_a_run_exits_quietly(tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho started\n")
    fake.chmod(0o755)
    done = subprocess.run(
        ["/bin/sh", "-c", SPARE_SCRIPT, "sh"],
        input="",
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
