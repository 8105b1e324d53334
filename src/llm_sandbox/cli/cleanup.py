"""``llm-sandbox cleanup``: remove the sandboxes (and their install networks and disk volumes) that processes which
died left behind, found by the library's labels; ``--older-than`` removes every labelled one past that age."""

from __future__ import annotations

import sys

import click

from llm_sandbox.cli.output import SANDBOX_FAILED, print_json
from llm_sandbox.errors import SandboxError


@click.command()
@click.option("--engine", type=click.Choice(["docker", "podman", "kubernetes"]), default="docker", show_default=True)
@click.option(
    "--older-than", type=click.FloatRange(min=0), help="seconds: remove every library sandbox older than this"
)
@click.option("--json", "as_json", is_flag=True, help="print the removed ids as JSON")
def cleanup(engine: str, older_than: float | None, as_json: bool) -> None:
    """Remove what crashed or killed processes left behind."""
    from llm_sandbox.cleanup import sweep

    try:
        if engine == "kubernetes":
            from llm_sandbox.backends.kube_client import sweep_pods

            removed = sweep_pods(older_than=older_than)
        else:
            removed = sweep(older_than=older_than, engine=engine)
    except SandboxError as error:
        click.echo(f"llm-sandbox: {type(error).__name__}: {error}", err=True)
        sys.exit(SANDBOX_FAILED)
    if as_json:
        print_json({"engine": engine, "removed": removed})
    else:
        click.echo(f"removed {len(removed)} orphaned sandbox(es)")
