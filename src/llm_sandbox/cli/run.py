"""``llm-sandbox run`` (a program, from a file or ``-c``) and ``llm-sandbox exec`` (a shell command), each in a
new sandbox removed afterwards. Output streams as the program writes it; the command exits with the program's exit
code (124 when it ran out of time, 125 when the sandbox could not run it)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from llm_sandbox.cli.output import SANDBOX_FAILED, exit_code_of, print_json, progress
from llm_sandbox.config import Network
from llm_sandbox.data import ConsoleOutput
from llm_sandbox.errors import SandboxError, SandboxTimeoutError
from llm_sandbox.languages.registry import LANGUAGES
from llm_sandbox.session import SandboxSession

F = TypeVar("F", bound=Callable[..., Any])

CONSOLE_FIELDS = tuple(field.name for field in fields(ConsoleOutput))

# File extensions beyond each language's own code file's (main.py, main.js, Main.java, ...).
EXTRA_EXTENSIONS = {".mjs": "javascript", ".cjs": "javascript", ".cc": "cpp", ".cxx": "cpp", ".c++": "cpp", ".r": "r"}
EXTENSIONS = {Path(language.file_name).suffix.lower(): name for name, language in LANGUAGES.items()} | EXTRA_EXTENSIONS


def language_of(file: str) -> str | None:
    """The language a file's extension says, if any."""
    return EXTENSIONS.get(Path(file).suffix.lower())


def sandbox_options(command: F) -> F:
    """The options every command that makes a sandbox takes."""
    decorators = [
        click.option("--backend", envvar="LLM_SANDBOX_BACKEND", default="docker", show_default=True),
        click.option("--image", help="the image to make the sandbox from (default: the language's own)"),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True),
        click.option(
            "--network",
            type=click.Choice([mode.value for mode in Network]),
            default=Network.INSTALL_ONLY.value,
            show_default=True,
            help="the code's network: only during library installs, never, or always",
        ),
        click.option("--json", "as_json", is_flag=True, help="print the result as JSON instead of streaming output"),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-c", "--code", help="the program's text, instead of a FILE")
@click.option("--lang", "-l", type=click.Choice(sorted(LANGUAGES), case_sensitive=False), help="guessed from FILE")
@click.option("--lib", "libraries", multiple=True, help="a library to install first (repeatable)")
@sandbox_options
def run(file: str | None, code: str | None, lang: str | None, libraries: tuple[str, ...], **options: Any) -> None:
    """Run a program (FILE, '-' for stdin, or -c CODE) in a new sandbox."""
    if (file is None) == (code is None):
        raise click.UsageError("give a FILE or -c CODE (one of them)")
    if file is not None:
        lang = lang or language_of(file)
        if lang is None:
            raise click.UsageError(f"cannot tell the language of {file!r} from its extension: pass --lang")
        with click.open_file(file, encoding="utf-8") as source:
            code = source.read()
    assert code is not None
    language = (lang or "python").lower()
    with _sandbox(language, libraries, options) as session:

        def call() -> ConsoleOutput:
            return session.run(code, timeout=options["timeout"], **_streaming(not options["as_json"]))

        output = _outcome(call)
    _finish(output, options["as_json"])


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--lang", "-l", type=click.Choice(sorted(LANGUAGES), case_sensitive=False), default="python")
@sandbox_options
def exec_command(command: tuple[str, ...], lang: str, **options: Any) -> None:
    """Run a shell command in a new sandbox of a language's image: one argument runs through /bin/sh -c, several
    run as argv (put them after --)."""
    argv: str | list[str] = command[0] if len(command) == 1 else list(command)
    with _sandbox(lang.lower(), (), options) as session:

        def call() -> ConsoleOutput:
            return session.execute_command(argv, timeout=options["timeout"], **_streaming(not options["as_json"]))

        output = _outcome(call)
    _finish(output, options["as_json"])


@contextmanager
def _sandbox(language: str, libraries: tuple[str, ...], options: dict[str, Any]) -> Iterator[SandboxSession]:
    """A new sandbox for one command, opened behind a progress line and removed at the end; an error of the
    library (a missing image, an unreachable engine, a failed install) exits with 125."""
    what = f"a {language} sandbox" + (f" (installing {', '.join(libraries)})" if libraries else "")
    try:
        session = SandboxSession(
            backend=options["backend"],
            lang=language,
            image=options["image"],
            network=options["network"],
            libraries=list(libraries),
        )
        with progress(f"starting {what}", quiet=options["as_json"]):
            session.open()
    except SandboxError as error:
        _fail(error)
    try:
        yield session
    finally:
        session.close()


def _streaming(stream: bool) -> dict[str, Any]:
    if not stream:
        return {}
    return {"on_stdout": _writer(sys.stdout), "on_stderr": _writer(sys.stderr)}


def _writer(target: Any) -> Callable[[str], None]:
    def write(chunk: str) -> None:
        target.write(chunk)
        target.flush()

    return write


def _outcome(call: Callable[[], ConsoleOutput]) -> ConsoleOutput:
    try:
        return call()
    except SandboxTimeoutError as error:
        output = error.output or ConsoleOutput(exit_code=-1, timed_out=True)
        return ConsoleOutput(**{**output.to_dict(), "timed_out": True})
    except SandboxError as error:
        _fail(error)


def _finish(output: ConsoleOutput, as_json: bool) -> None:
    if as_json:
        print_json({name: value for name, value in output.to_dict().items() if name in CONSOLE_FIELDS})
    elif output.timed_out:
        click.echo(f"llm-sandbox: stopped after the time limit (exit {exit_code_of(output)})", err=True)
    sys.exit(exit_code_of(output))


def _fail(error: SandboxError) -> NoReturn:
    click.echo(f"llm-sandbox: {type(error).__name__}: {error}", err=True)
    sys.exit(SANDBOX_FAILED)
