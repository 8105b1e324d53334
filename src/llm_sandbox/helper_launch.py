"""How the guest helper is started, and who it runs as.

The helper's interpreter is /usr/bin/python3 by absolute path, else python3 or python in the root-owned system
folders (a lookup in a subshell, so that the PATH the code gets is untouched) — never the container's PATH, where
the code may write (a virtual environment's bin folder, an environment wrapper's): a planted ``python3`` there
would become the helper. -I keeps the workdir and PYTHON* variables from shadowing the helper's stdlib modules; -S
skips site-packages, which the helper does not use (the code it runs gets the normal interpreter).

What separates the helper from the code on each kind of sandbox (created on Docker or Podman, created on
Kubernetes, attached) is written down, with the test that proves each line, in ``docs/security.md``.
"""

from __future__ import annotations

from llm_sandbox.messages import InfoReply

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_LOOKUP = (
    "if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; "
    f"else (PATH={SYSTEM_PATH}; command -v python3 || command -v python); fi"
)
LAUNCHER = (
    'if [ -x /usr/bin/python3 ]; then exec /usr/bin/python3 -I -S -c "$1"; fi; '
    f'p=$(PATH={SYSTEM_PATH}; command -v python3 || command -v python) && exec "$p" -I -S -c "$1"; '
    f'echo "llm_sandbox: no /usr/bin/python3, and no python3 or python in {SYSTEM_PATH}" >&2; exit 127'
)
ROOT = "0"  # the exec user of a separated helper


def numeric_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) of a numeric code user ("uid" or "uid:gid"; the gid is the uid's when not given); None for a
    name (the image's passwd decides it, which the host cannot see) or for root (nothing to separate from)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()) or int(uid) == 0:
        return None
    return int(uid), int(gid or uid)


def refusal(info: InfoReply, *, separated: bool, confine: bool) -> str:
    """Why a sandbox whose helper answered this way must not be used (empty when it may)."""
    if separated and not info.separated:
        return "the library's helper could not separate itself from the code in the new sandbox (it is not root)"
    if confine and not info.can_confine:
        return (
            "the library's seccomp filter cannot be installed in this sandbox (an architecture it has no filter "
            'for, or a kernel that refuses it); to run without it, say so with relax_hardening=["seccomp"]'
        )
    return ""
