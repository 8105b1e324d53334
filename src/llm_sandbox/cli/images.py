"""``llm-sandbox images build|list``: the default images, built locally from the host's Debian mirror (no
registry). A build shows its steps on a terminal (``--verbose``: the engine's own output too) and stays quiet in
logs and pipes; both commands print a table, or JSON with ``--json``."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from llm_sandbox.cli.output import SANDBOX_FAILED, print_json, progress_logs
from llm_sandbox.errors import SandboxError
from llm_sandbox.images import BUILD_ENGINES

ENGINE = click.option("--engine", type=click.Choice(BUILD_ENGINES), default="docker", show_default=True)
JSON = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group()
def images() -> None:
    """Build and list the default sandbox images."""


@images.command()
@click.argument("languages", nargs=-1)
@ENGINE
@click.option("--force", is_flag=True, help="rebuild every image of the chain, without cache")
@click.option("--mirror", help="Debian mirror for debootstrap (default: the host's APT sources)")
@click.option("--verbose", "-v", is_flag=True, help="show debootstrap's and the engine's output")
@JSON
def build(
    languages: tuple[str, ...], engine: str, force: bool, mirror: str | None, verbose: bool, as_json: bool
) -> None:
    """Build the images of LANGUAGES (python, javascript, java, cpp, go, ruby, r, or all; default python) that are
    missing or stale, with the base images under them. The first build runs debootstrap and needs root."""
    from llm_sandbox.images.builder import ImageBuilder, resolve_languages

    try:
        wanted = resolve_languages(languages or ["python"])
        builder = ImageBuilder(engine, mirror=mirror)
        with progress_logs("llm_sandbox.images", verbose):
            outcomes = builder.build(wanted, force=force)
    except SandboxError as error:
        _fail(error)
    rows = [
        {"image": builder.engine.qualify(item.tag), "action": item.action, "seconds": round(item.seconds, 1)}
        for item in outcomes
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        timing = f" in {row['seconds']} s" if row["action"] == "built" else ""
        click.echo(f"{row['image']}  {row['action']}{timing}")


@images.command(name="list")
@ENGINE
@JSON
def list_images(engine: str, as_json: bool) -> None:
    """Show every image: present, absent or stale (built from an older recipe)."""
    from llm_sandbox.images.builder import ImageBuilder

    try:
        statuses = ImageBuilder(engine).status()
    except SandboxError as error:
        _fail(error)
    rows: list[dict[str, Any]] = [
        {"image": status.qualified_tag, "state": status.state.value, "size": status.size} for status in statuses
    ]
    if as_json:
        print_json(rows)
        return
    width = max(len(row["image"]) for row in rows)
    click.echo(f"{'IMAGE':<{width}}  {'STATE':<7}  SIZE")
    for row in rows:
        size = "-" if row["size"] is None else f"{row['size'] / 1_000_000:.0f} MB"
        click.echo(f"{row['image']:<{width}}  {row['state']:<7}  {size}")


def _fail(error: SandboxError) -> NoReturn:
    click.echo(f"llm-sandbox: {type(error).__name__}: {error}", err=True)
    sys.exit(SANDBOX_FAILED)
