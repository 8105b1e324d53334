"""What the commands share: progress for long steps (on a terminal only), JSON output, and exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from llm_sandbox.data import ConsoleOutput

#: ``docker run``'s convention: the sandbox could not run the program (an engine error, a missing image...).
SANDBOX_FAILED = 125
#: ``timeout``'s convention: the program ran out of time and was stopped.
TIMED_OUT = 124


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(message: str, quiet: bool = False) -> Iterator[None]:
    """A status line on stderr while a long step runs, wiped when it ends; nothing when stderr is not a terminal
    (logs and pipes get no control characters) or when ``quiet``."""
    shown = on_terminal() and not quiet
    if shown:
        click.echo(f"{message}...", nl=False, err=True)
    try:
        yield
    finally:
        if shown:
            click.echo("\r\033[K", nl=False, err=True)


@contextmanager
def progress_logs(logger_name: str, verbose: bool) -> Iterator[None]:
    """The library's progress messages under ``logger_name`` on stderr: INFO on a terminal, DEBUG (every step's
    own output) with ``verbose``, warnings only otherwise."""
    logger = logging.getLogger(logger_name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = logger.level
    level = logging.DEBUG if verbose else logging.INFO if on_terminal() else logging.WARNING
    handler.setLevel(level)
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def exit_code_of(output: ConsoleOutput) -> int:
    """The command's exit status for a run: the program's own, 124 when it was stopped for time, and 128 + N for
    a program killed by signal N (reported as -N)."""
    if output.timed_out:
        return TIMED_OUT
    if output.exit_code < 0:
        return 128 - output.exit_code
    return output.exit_code & 0xFF
