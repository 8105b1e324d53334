"""``%pip install`` at the top of a Python cell, taken out of the cell and done by the library's own install.

IPython's ``%pip`` runs pip as the code, and the code has no network in a sandbox the library created (the default
``network="install-only"``): the magic would fail there. Installs belong to the library, which opens the network
for their duration only, installs into the code's library prefix and checks every name. So the ``%pip install``
(or ``!pip install``) lines a cell starts with are taken out of it and their packages installed that way before
the rest of the cell runs; the quiet and upgrade flags are accepted (the library's install is both already),
anything else is a name to check, and an option among them is refused as any invalid library name is.
"""

from __future__ import annotations

import re
import shlex

PIP_LINE = re.compile(r"[ \t]*[%!]pip3?[ \t]+install[ \t]+(?P<arguments>[^\n]*)")
ACCEPTED_FLAGS = frozenset({"-q", "--quiet", "-U", "--upgrade"})


def leading_pip_installs(code: str) -> tuple[list[str], str]:
    """The packages the cell's leading ``%pip install`` lines name, and the cell without those lines (blank and
    comment lines before and between them are kept out of the way too: the rest starts where the code does)."""
    lines = code.split("\n")
    packages: list[str] = []
    taken = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        match = PIP_LINE.fullmatch(line.rstrip())
        if match is not None:
            arguments = _words(match.group("arguments"))
            packages.extend(argument for argument in arguments if argument not in ACCEPTED_FLAGS)
            taken = index + 1
        elif stripped and not stripped.startswith("#"):
            break
    if not packages:
        return [], code
    return packages, "\n".join(lines[taken:])


def _words(arguments: str) -> list[str]:
    """The line's words as IPython's shell would pass them to pip (quotes removed, a comment left out)."""
    try:
        return shlex.split(arguments, comments=True)
    except ValueError:  # unbalanced quotes: the words as they are, for the name check to refuse
        return arguments.split()
