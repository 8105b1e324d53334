"""Sandbox.reset() on the real engines: what the code wrote and left running is gone, and the sandbox goes on."""

from __future__ import annotations

from typing import Any

import pytest

from harness import Harness
from llm_sandbox.errors import ContainerError

PROCESSES = (
    "import os\n"
    "for pid in os.listdir('/proc'):\n"
    "    if pid.isdigit() and pid != str(os.getpid()):\n"
    "        try:\n"
    "            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
    "        except OSError:\n"
    "            continue\n"
    "        print(cmd)\n"
)


@pytest.mark.requires("own_uid")
def test_reset_kills_what_the_code_left_and_removes_what_it_wrote(backend: Harness) -> None:
    with backend.session(lang="python") as session:
        sandbox = session.sandbox
        assert sandbox is not None
        written = session.execute_command(
            "echo x > /sandbox/left.txt && mkdir -p /tmp/left-dir && echo y > /tmp/left-dir/f && "
            "ln -s /etc/passwd /sandbox/link && echo ok"
        )
        assert written.stdout == "ok\n"
        session.run("import subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)")
        sandbox.reset()
        listing = session.execute_command("ls -A /sandbox; ls -A /tmp | grep -v '^llm-sandbox-run-' ; true")
        assert "left.txt" not in listing.stdout and "link" not in listing.stdout
        assert "left-dir" not in listing.stdout
        assert session.execute_command(["test", "-f", "/etc/passwd"]).exit_code == 0  # the link was not followed
        assert not [line for line in session.run(PROCESSES).stdout.splitlines() if line.startswith("sleep 1000")]
        assert session.run("print('after reset')").stdout == "after reset\n"


@pytest.mark.backends("docker")
def test_an_attached_container_is_never_reset(backend: Harness, make_container: Any) -> None:
    container = make_container()
    with backend.session(container_id=container.id, lang="python") as session:
        assert session.sandbox is not None
        with pytest.raises(ContainerError, match="owner"):
            session.sandbox.reset()
        assert session.run("print('still here')").stdout == "still here\n"
