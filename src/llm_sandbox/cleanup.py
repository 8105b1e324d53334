"""Find and remove sandboxes that a crashed or killed process left behind, by their labels.

A container the library creates carries its owner's pid and host name. ``sweep()`` removes the ones whose owner
process no longer exists on this host (or every labelled one older than ``older_than`` seconds), so a reaper can
run it at start-up or from cron::

    python -m llm_sandbox.cleanup                       # orphans of dead processes on this host (Docker)
    python -m llm_sandbox.cleanup --engine podman       # the same on Podman
    python -m llm_sandbox.cleanup --engine kubernetes   # pods, by label, in the namespaces the credentials list
    python -m llm_sandbox.cleanup --engine bubblewrap   # bwrap sandboxes: scratch folders and cgroups (root)
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from llm_sandbox.backends.engine_errors import engine_errors, is_gone_or_going
from llm_sandbox.backends.oci import sweep_disk_volumes, sweep_install_networks
from llm_sandbox.labels import MANAGED_LABEL, is_orphan

logger = logging.getLogger(__name__)


def sweep(client: Any = None, *, older_than: float | None = None, engine: str = "docker") -> list[str]:
    """Remove orphaned library containers from a Docker or Podman engine, then the install-window networks and the
    disk-cap volumes they left; return the removed container ids (the networks and volumes are logged).

    ``client`` is a docker or podman SDK client; without one, the ``engine``'s default client is used.
    ``engine="bubblewrap"`` sweeps the Bubblewrap backend's sandboxes instead (no client): what still runs of them
    is killed, their scratch folders and cgroups removed; the scratch folders' names are returned.
    """
    if engine == "bubblewrap" and client is None:
        from llm_sandbox.backends.bwrap_scratch import sweep as sweep_bubblewrap

        return sweep_bubblewrap(older_than=older_than)
    if client is None:
        from llm_sandbox.backends.docker_engine import default_docker_client
        from llm_sandbox.backends.podman_engine import default_podman_client

        client = default_podman_client() if engine == "podman" else default_docker_client()
        owned_client = True
    else:
        owned_client = False
        engine = "podman" if type(client).__module__.startswith("podman") else "docker"
    removed: list[str] = []
    try:
        with engine_errors("listing the library's containers", sdk=engine):
            containers = client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
        for container in containers:
            if not is_orphan(dict(container.labels), older_than=older_than):
                continue
            logger.info("removing orphaned sandbox %s", container.short_id)
            with engine_errors(f"removing {container.short_id}", sdk=engine):
                try:
                    container.remove(force=True, v=True)
                except Exception as error:
                    if not is_gone_or_going(engine, error):
                        raise
            removed.append(str(container.id))
        for network in sweep_install_networks(client, sdk=engine, older_than=older_than):
            logger.info("removed orphaned install network %s", network)
        for volume in sweep_disk_volumes(client, sdk=engine, older_than=older_than):
            logger.info("removed orphaned disk-cap volume %s", volume)
    finally:
        if owned_client:
            client.close()
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_sandbox.cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("--older-than", type=float, help="remove every library container older than this (seconds)")
    parser.add_argument("--engine", choices=("docker", "podman", "kubernetes", "bubblewrap"), default="docker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.engine == "kubernetes":
        from llm_sandbox.backends.kube_client import sweep_pods

        removed = sweep_pods(older_than=args.older_than)
    else:
        removed = sweep(older_than=args.older_than, engine=args.engine)
    print(f"removed {len(removed)} orphaned sandbox container(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
