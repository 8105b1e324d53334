"""Command line: build and list the default sandbox images.

Usage::

    python -m llm_sandbox.images build [--engine docker|podman] [--force] [--mirror URL] [LANG ... | all]
    python -m llm_sandbox.images list [--engine docker|podman]

``build`` builds the named languages' images (default: python), plus the rootfs and base images under them,
skipping every image whose recipe label is current. The first build runs debootstrap and needs root.
``list`` shows every image with its state: present, absent or stale (built from an older recipe).
Exit status: 0 on success, 1 when a build or engine step fails, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from llm_sandbox.errors import SandboxError
from llm_sandbox.images import BUILD_ENGINES, IMAGE_LANGUAGES
from llm_sandbox.images.builder import ImageBuilder, ImageState, resolve_languages
from llm_sandbox.images.transfer import copy_images

log = logging.getLogger("llm_sandbox.images")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llm_sandbox.images",
        description="Build llm-sandbox's default images locally from the host's Debian mirror (no registry).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debootstrap's and the engine's output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build images that are missing or stale")
    build.add_argument("--engine", choices=BUILD_ENGINES, default="docker", help="container engine (default: docker)")
    build.add_argument("--force", action="store_true", help="rebuild every image of the chain, without cache")
    build.add_argument("--mirror", help="Debian mirror for debootstrap (default: the host's APT sources)")
    build.add_argument(
        "languages",
        nargs="*",
        metavar="LANG",
        help=f"languages to build: {', '.join(IMAGE_LANGUAGES)} or all (default: python)",
    )

    copy = commands.add_parser("copy", help="copy built images to another engine (docker save | podman load)")
    copy.add_argument("--from", dest="source", choices=BUILD_ENGINES, default="docker")
    copy.add_argument("--to", dest="target", choices=BUILD_ENGINES, default="podman")
    copy.add_argument("languages", nargs="*", metavar="LANG", help="languages (default: python; 'all' for every one)")
    listing = commands.add_parser("list", help="show each image: present, absent or stale")
    listing.add_argument("--engine", choices=BUILD_ENGINES, default="docker", help="container engine (default: docker)")
    return parser


def _format_size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1_000_000:.0f} MB"


def _list(builder: ImageBuilder) -> int:
    statuses = builder.status()
    width = max(len(status.qualified_tag) for status in statuses)
    print(f"{'IMAGE':<{width}}  {'STATE':<7}  SIZE")
    for status in statuses:
        print(f"{status.qualified_tag:<{width}}  {status.state.value:<7}  {_format_size(status.size)}")
    missing = [s.step.name for s in statuses if s.state is not ImageState.PRESENT and s.step.name in IMAGE_LANGUAGES]
    if missing:
        engine = "" if builder.engine.name == "docker" else f" --engine {builder.engine.name}"
        print(f"\nto build the rest: python -m llm_sandbox.images build{engine} {' '.join(missing)}")
    return 0


def _build(builder: ImageBuilder, languages: Sequence[str], force: bool) -> int:
    outcomes = builder.build(languages, force=force)
    if all(outcome.action != "built" for outcome in outcomes):
        return 0
    for outcome in outcomes:
        timing = f" in {outcome.seconds:.1f} s" if outcome.action == "built" else ""
        log.info("  %-42s %s%s", builder.engine.qualify(outcome.tag), outcome.action, timing)
    return 0


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so scratch directories are removed


def _copy(languages: Sequence[str], source: str, target: str) -> int:
    try:
        copy_images(resolve_languages(languages or ["python"]), source, target)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.command == "copy":
        return _copy(args.languages, args.source, args.target)
    try:
        if args.command == "build":
            languages = resolve_languages(args.languages or ["python"])
        builder = ImageBuilder(args.engine, mirror=args.mirror if args.command == "build" else None)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "build":
            return _build(builder, languages, args.force)
        return _list(builder)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
