"""A run's reply made into its result, or into the error that names the limit that ended it."""

from __future__ import annotations

import logging

from llm_sandbox.data import ConsoleOutput
from llm_sandbox.errors import DiskLimitError, MemoryLimitError, ProcessLimitError, SandboxTimeoutError
from llm_sandbox.guest.protocol import Limit
from llm_sandbox.link import OutputCallback
from llm_sandbox.messages import ExecReply

SIGXFSZ_EXIT = 128 + 25
SIGKILL_EXIT = 128 + 9


def outcome(reply: ExecReply, timeout: float | None) -> ConsoleOutput:
    """The run's ConsoleOutput, or the error that says which limit ended it."""
    output = ConsoleOutput(
        exit_code=reply.exit_code,
        stdout=reply.stdout,
        stderr=reply.stderr,
        timed_out=reply.timed_out,
        truncated=reply.truncated,
        duration_s=reply.duration_s,
    )
    limits = set(reply.limits)
    if Limit.DISK in limits:  # before the others: a run over the cap may also have been stopped or OOM-killed
        raise DiskLimitError(
            "the run wrote more than the sandbox's disk limit (disk_limit, in total across the workdir, the "
            "temporary folders and the library prefix); the files it wrote were removed, so the next run has room",
            output,
        )
    if output.timed_out:
        raise SandboxTimeoutError(
            f"the run exceeded its timeout of {timeout:g} s; its processes were killed", output, timeout
        )
    if Limit.OOM in limits and output.exit_code == SIGKILL_EXIT:
        raise MemoryLimitError("the run was killed by the sandbox's memory limit", output)
    if Limit.PIDS in limits and output.exit_code != 0:
        raise ProcessLimitError("the run hit the sandbox's process limit (too many processes)", output)
    if output.exit_code == SIGXFSZ_EXIT:
        raise DiskLimitError("the run wrote a file larger than the sandbox's file-size limit", output)
    return output


def log_chunk(stream_name: str) -> OutputCallback:
    """``stream=True``: a callback that logs a stream's output to ``llm_sandbox.output.<stream>``."""
    stream_logger = logging.getLogger(f"llm_sandbox.output.{stream_name}")

    def emit(text: str) -> None:
        stream_logger.info("%s", text.rstrip("\n"))

    return emit
