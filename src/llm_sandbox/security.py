"""Security policies: regex patterns and restricted modules checked against code before it runs.

A :class:`SecurityPolicy` is a pre-flight filter that refuses obviously dangerous code early and explains why.
It is a heuristic, not the isolation boundary: the container is. Evaluation works on two views of the code
(see :mod:`llm_sandbox.security_imports`): patterns search the code with its comments removed, and restricted
modules are matched against the imports found outside comments and plain string literals.

A pattern or module counts as a violation when its severity is above ``SAFE`` and at least the policy's
``severity_threshold``; a threshold of ``SAFE`` (the default, as in the reference implementation) blocks nothing.
Patterns and modules are immutable; ``add_pattern`` and ``add_restricted_module`` add to the policy in place (as
the reference's do) and return it. Evaluation works on a snapshot of the lists, so a policy can be evaluated from
many threads at once, even while another adds to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from llm_sandbox.errors import ValidationError
from llm_sandbox.security_imports import find_imports, normalize_language, scan_source

__all__ = [
    "PRESET_NAMES",
    "RestrictedModule",
    "SecurityIssueSeverity",
    "SecurityPattern",
    "SecurityPolicy",
    "evaluate",
    "get_security_policy",
]


class SecurityIssueSeverity(IntEnum):
    """How serious a match is. ``SAFE`` entries are documentation only and never reported."""

    SAFE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


def _severity(value: object, what: str) -> SecurityIssueSeverity:
    # bool is an int, but severity=True is far more likely a mistake than a request for LOW.
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return SecurityIssueSeverity(value)
        except ValueError:
            pass
    names = ", ".join(f"{level.name}={level.value}" for level in SecurityIssueSeverity)
    raise ValidationError(f"{what} must be a SecurityIssueSeverity ({names}), not {value!r}")


@dataclass(frozen=True)
class SecurityPattern:
    """A regex that flags code. It is compiled once, with ``re.MULTILINE``, when the pattern is created.

    The regex is searched in the code with its comments removed but its string literals intact, so a pattern
    such as ``rm\\s+-rf`` still sees the command inside ``subprocess.run("rm -rf /")``.
    """

    pattern: str
    description: str
    severity: SecurityIssueSeverity
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValidationError(f"a security pattern must be a non-empty regex string, not {self.pattern!r}")
        if not isinstance(self.description, str):
            raise ValidationError(f"the description of pattern {self.pattern!r} must be a string")
        object.__setattr__(self, "severity", _severity(self.severity, f"severity of pattern {self.pattern!r}"))
        try:
            regex = re.compile(self.pattern, re.MULTILINE)
        except re.error as exc:
            raise ValidationError(f"security pattern {self.pattern!r} is not a valid regex: {exc}") from exc
        object.__setattr__(self, "_regex", regex)

    @property
    def regex(self) -> re.Pattern[str]:
        """The compiled regex."""
        return self._regex


# Names are compared literally, so only characters that occur in module, package and header names are allowed.
_MODULE_NAME = re.compile(r"[\w.@/+\-]+")


@dataclass(frozen=True)
class RestrictedModule:
    """A module, package or header the code must not import.

    ``name`` matches an import of exactly that name or of anything below it, where "below" means after a ``.``
    or ``/``: ``os`` matches ``import os``, ``import os.path`` and ``from os import path`` but not
    ``import osmosis``; ``net`` matches Go's ``net/http``; ``unistd`` matches ``<unistd.h>``. Names are shared
    by all languages, so ``socket`` covers Python's and Ruby's socket library alike.
    """

    name: str
    description: str
    severity: SecurityIssueSeverity
    _violation: SecurityPattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _MODULE_NAME.fullmatch(self.name):
            raise ValidationError(f"restricted module name {self.name!r} is not a module, package or header name")
        if not isinstance(self.description, str):
            raise ValidationError(f"the description of restricted module {self.name!r} must be a string")
        object.__setattr__(self, "severity", _severity(self.severity, f"severity of module {self.name!r}"))
        detail = f": {self.description}" if self.description else ""
        violation = SecurityPattern(re.escape(self.name), f"Restricted module '{self.name}'{detail}", self.severity)
        object.__setattr__(self, "_violation", violation)

    def matches(self, imported: str) -> bool:
        """True when ``imported`` (a name as written in the code) is this module or lies below it."""
        name = self.name
        return imported == name or (imported.startswith(name) and imported[len(name)] in "./")

    def as_pattern(self) -> SecurityPattern:
        """The :class:`SecurityPattern` reported when this module is found; its description names it."""
        return self._violation


@dataclass(frozen=True)
class SecurityPolicy:
    """What to look for in code and from which severity on to refuse it.

    ``severity_threshold``: entries of this severity or above are violations; ``LOW`` reports every non-``SAFE``
    entry, and ``SAFE`` (the default, as in the reference implementation) turns the policy off. The lists are
    copied on construction; :meth:`add_pattern` / :meth:`add_restricted_module` add to them in place.
    """

    severity_threshold: SecurityIssueSeverity = SecurityIssueSeverity.SAFE
    patterns: list[SecurityPattern] = field(default_factory=list)
    restricted_modules: list[RestrictedModule] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity_threshold", _severity(self.severity_threshold, "severity_threshold"))
        patterns = list(self.patterns)
        modules = list(self.restricted_modules)
        for item in patterns:
            if not isinstance(item, SecurityPattern):
                raise ValidationError(f"patterns must hold SecurityPattern objects, not {item!r}")
        for module in modules:
            if not isinstance(module, RestrictedModule):
                raise ValidationError(f"restricted_modules must hold RestrictedModule objects, not {module!r}")
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "restricted_modules", modules)

    def reports(self, severity: SecurityIssueSeverity) -> bool:
        """True when an entry of this severity counts as a violation under this policy (never under ``SAFE``)."""
        threshold = self.severity_threshold
        return threshold > SecurityIssueSeverity.SAFE and severity >= threshold

    def add_pattern(self, pattern: SecurityPattern) -> SecurityPolicy:
        """Check ``pattern`` too, from now on (sessions holding this policy see it); returns this policy."""
        if not isinstance(pattern, SecurityPattern):
            raise ValidationError(f"add_pattern takes a SecurityPattern, not {pattern!r}")
        self.patterns.append(pattern)
        return self

    def add_restricted_module(self, module: RestrictedModule) -> SecurityPolicy:
        """Restrict ``module`` too, from now on (sessions holding this policy see it); returns this policy."""
        if not isinstance(module, RestrictedModule):
            raise ValidationError(f"add_restricted_module takes a RestrictedModule, not {module!r}")
        self.restricted_modules.append(module)
        return self


def evaluate(policy: SecurityPolicy, code: str, lang: str) -> list[SecurityPattern]:
    """Return the violations of ``policy`` in ``code`` written in ``lang``; an empty list means it may run.

    Matched patterns come first, in policy order, then restricted modules (as :class:`SecurityPattern` objects
    whose description names the module). Each entry is reported once however often it matches. Nothing is
    mutated, so concurrent calls on one policy are safe. Raises ``LanguageNotSupportedError`` for an unknown
    language.
    """
    language = normalize_language(lang)
    # Snapshot the lists first: the evaluation works on these tuples only, whatever happens to the policy.
    patterns = tuple(item for item in policy.patterns if policy.reports(item.severity))
    modules = tuple(item for item in policy.restricted_modules if policy.reports(item.severity))
    if not patterns and not modules:
        return []
    view = scan_source(code, language)
    found = [item for item in patterns if item.regex.search(view.clean)]
    if modules:
        imports = find_imports(view, language)
        found += [module.as_pattern() for module in modules if any(module.matches(name) for name in imports)]
    return list(dict.fromkeys(found))


# --- presets --------------------------------------------------------------------------------------

_S = SecurityIssueSeverity


def _patterns(severity: SecurityIssueSeverity, *entries: tuple[str, str]) -> tuple[SecurityPattern, ...]:
    return tuple(SecurityPattern(regex, description, severity) for regex, description in entries)


def _modules(severity: SecurityIssueSeverity, description: str, *names: str) -> tuple[RestrictedModule, ...]:
    return tuple(RestrictedModule(name, description, severity) for name in names)


# minimal and up: commands whose only purpose is to wreck the machine.
_DESTRUCTIVE = _patterns(
    _S.HIGH,
    (
        r"\brm\s+(?=[^\n/]{0,60}?(?:-[a-zA-Z]*[rR]|--recursive))(?:-{1,2}[\w-]+\s+){1,4}/(?=[\s*\"'`;)]|$)",
        "Recursive delete of the filesystem root",
    ),
    (r"\bmkfs(?:\.\w+)?\b", "Formats a filesystem (mkfs)"),
    (r"(?:\bof=|>\s*)/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk)", "Writes raw data to a disk device"),
    (r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:", "Shell fork bomb"),
)

# development and up: starting shells and other programs.
_PROCESS = _patterns(
    _S.HIGH,
    (r"\bos\s*\.\s*(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?)\s*\(", "Runs a program via os"),
    # "(?!\s*\))": an empty call such as platform.system() runs nothing.
    (r"\b(?:system2?|popen|_popen|_wsystem)\s*\((?!\s*\))", "Runs a shell command (system/popen)"),
    (r"\bexec[lv]p?e?\s*\(", "Replaces the process with another program (exec family)"),
    (r"\bRuntime\s*\.\s*getRuntime\s*\(\s*\)\s*\.\s*exec\s*\(|\bProcessBuilder\b", "Runs a program (Java)"),
    (r"\bexec\s*\.\s*Command(?:Context)?\s*\(", "Runs a program (Go os/exec)"),
    (r"%x[({\[<]|\bIO\s*\.\s*popen\b", "Runs a shell command (Ruby)"),
    (r"\bprocess\s*\.\s*binding\s*\(", "Reaches Node internals (process.binding)"),
) + _modules(
    _S.HIGH,
    "starts programs or shells",
    *("subprocess", "pty", "child_process", "os/exec", "open3", "processx"),
)

# production and up: dynamic code, deleting files, native code, network access.
_PRODUCTION = (
    _patterns(
        _S.MEDIUM,
        (
            r"(?<![\w.])(?:eval|exec)\s*\((?!\s*[rRbBuU]?(?P<q>[\"'])(?:(?!(?P=q))[^\\\n])*(?P=q)\s*\))",
            "eval()/exec() of a computed value rather than a literal",
        ),
        (r"\bnew\s+Function\s*\(", "Builds a function from a string (new Function)"),
        (
            r"\b(?:__import__|import_module)\s*\((?!\s*[\"'][\w.]+[\"']\s*[,)])",
            "Imports a computed module name",
        ),
        (r"\bClass\s*\.\s*forName\s*\(", "Loads a Java class by name"),
        (r"\b(?:os\s*\.\s*)?fork\s*\(\s*\)", "Forks the process"),
        (r"\bos\s*\.\s*(?:remove|unlink|rmdir|removedirs)\s*\(|\bshutil\s*\.\s*rmtree\s*\(", "Deletes files (Python)"),
        (r"\.(?:unlink|rmdir|rm)(?:Sync)?\s*\(|\bos\s*\.\s*Remove(?:All)?\s*\(", "Deletes files (Node, Go, pathlib)"),
        (r"\bFiles\s*\.\s*delete(?:IfExists)?\s*\(|\.delete\s*\(\s*\)", "Deletes files (Java)"),
        (
            r"(?<![\w.:])(?<!def )(?<!function )(?:remove|unlink|rmdir|file\.remove)\s*\(",
            "Deletes files (C, R)",
        ),
        (
            r"\b(?:File|Dir)\s*\.\s*(?:delete|unlink|rmdir)\b|\bFileUtils\s*\.\s*(?:rm|remove)\w*",
            "Deletes files (Ruby)",
        ),
    )
    + _modules(_S.MEDIUM, "allows dynamic imports", "importlib")
    + _modules(_S.MEDIUM, "runs native code", "ctypes", "cffi", "syscall", "fiddle", "ffi", "sun.misc")
    + _modules(
        _S.MEDIUM,
        "opens network connections",
        *("socket", "requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "ftplib", "smtplib"),
        *("telnetlib", "net", "dgram", "https", "http2", "tls", "axios", "node-fetch", "undici", "ws"),
        *("java.net", "sys/socket.h", "netinet", "arpa", "curl", "httr", "httr2", "RCurl", "open-uri"),
    )
)

# strict only: things that are often fine but widen what a run can see or change.
_STRICT = _patterns(
    _S.LOW,
    (
        r"\b(?:getenv|Getenv|LookupEnv|Environ)\s*\(|\bos\s*\.\s*environ\b|\bprocess\s*\.\s*env\b|\bENV\s*\[",
        "Reads environment variables",
    ),
    (r"\bopen\s*\([^\n]{0,300}?,\s*(?:mode\s*=\s*)?[rRbBuU]?[\"'][rbt]*[wax]", "Opens a file for writing"),
    (
        r"\b(?:writeFile|appendFile|createWriteStream|FileWriter|FileOutputStream|WriteFile)\w*\s*\("
        r"|\bFiles\s*\.\s*write\w*\s*\(|\bos\s*\.\s*(?:Create|OpenFile)\s*\(|\bFile\s*\.\s*write\b",
        "Writes files",
    ),
) + _modules(_S.LOW, "gives broad system access", "os", "shutil", "pickle", "marshal", "multiprocessing", "fs")

_PRESETS: dict[str, tuple[SecurityIssueSeverity, tuple[SecurityPattern | RestrictedModule, ...]]] = {
    "minimal": (_S.HIGH, _DESTRUCTIVE),
    "development": (_S.HIGH, _DESTRUCTIVE + _PROCESS),
    "production": (_S.MEDIUM, _DESTRUCTIVE + _PROCESS + _PRODUCTION),
    "strict": (_S.LOW, _DESTRUCTIVE + _PROCESS + _PRODUCTION + _STRICT),
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def get_security_policy(name: str) -> SecurityPolicy:
    """Return a fresh copy of the preset policy ``name`` (case-insensitive).

    * ``minimal`` (threshold HIGH): only commands that wreck the machine (``rm -rf /``, ``mkfs``, fork bombs).
    * ``development`` (HIGH): also shell-outs and process spawning, incl. ``subprocess``/``child_process``.
    * ``production`` (MEDIUM): also dynamic ``eval``/``exec``, file deletion, native code, network modules.
    * ``strict`` (LOW): also environment access, file writes and broad modules such as ``os`` and ``fs``.
    """
    key = name.strip().lower() if isinstance(name, str) else ""
    if key not in _PRESETS:
        raise ValidationError(f"unknown security policy {name!r}; known policies: {', '.join(PRESET_NAMES)}")
    threshold, entries = _PRESETS[key]
    return SecurityPolicy(
        severity_threshold=threshold,
        patterns=[entry for entry in entries if isinstance(entry, SecurityPattern)],
        restricted_modules=[entry for entry in entries if isinstance(entry, RestrictedModule)],
    )


def __getattr__(name: str) -> object:
    # The reference keeps its library-name checks in its security package; ours are the languages' own, named in
    # llm_sandbox.compat, which imports the session (and, through it, this module): they are read on first use.
    if name in ("PACKAGE_NAME_PATTERNS", "validate_package_name"):
        from llm_sandbox import compat

        return getattr(compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
