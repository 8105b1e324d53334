"""Lexing and import discovery behind :mod:`llm_sandbox.security`.

The policy check is a cheap pre-flight filter, not the security boundary (the container is). Rather than parse
seven languages, one regex tokenizer per language knows just enough (comments, string literals, raw strings,
template literals, JavaScript regex literals) to build two views of the code:

* ``clean``: comments blanked out, everything else intact. Policy patterns run on this view.
* ``masked``: ``clean`` with the bodies of plain string literals blanked too. Imports are looked for here, so
  text that merely *mentions* ``import os`` or ``require('fs')`` cannot trigger a module rule.

Both views keep every character at its original offset (blanked text becomes spaces or NULs; newlines stay),
so a string literal located in ``masked`` is read back from ``clean`` at the same span.

When unsure, the lexer treats text as code: a false positive blocks a run, a false negative lets one through.
That is why strings that can carry code stay visible in ``masked``: interpolating f-strings, JavaScript
templates, Ruby ``"#{...}"`` and backtick commands, and any literal passed straight to ``eval``/``exec``.
Known gaps (not fixable with a lexer this small): Ruby ``%``-literals and heredocs, and a JavaScript regex
literal after ``)`` (as in ``if (x) /re/``), which is read as a division.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal, NamedTuple

from llm_sandbox.const import SupportedLanguage
from llm_sandbox.errors import LanguageNotSupportedError

__all__ = [
    "SourceView",
    "find_imports",
    "imported_modules",
    "normalize_language",
    "scan_source",
    "strip_comments",
]

_Lang = SupportedLanguage
_FILL = "\0"  # never a word character, quote or bracket, so no import regex can match blanked text
_NOT_NEWLINE = re.compile(r"[^\n]")


class SourceView(NamedTuple):
    """The two same-length views of a piece of code; see the module docstring."""

    clean: str
    masked: str


def normalize_language(lang: str) -> SupportedLanguage:
    """Return the :class:`SupportedLanguage` for ``lang`` (case-insensitive) or raise."""
    if isinstance(lang, str):
        try:
            return SupportedLanguage(str.lower(lang))
        except ValueError:
            pass
    known = ", ".join(member.value for member in SupportedLanguage)
    raise LanguageNotSupportedError(f"Language {lang!r} is not supported; use one of: {known}")


# --- the lexer ------------------------------------------------------------------------------------

_Kind = Literal["comment", "string", "code"]  # "code" tokens are kept verbatim in both views


def _quoted(quote: str, *, multiline: bool) -> str:
    """A backslash-escaped literal. A single-line one ends at a newline, so a stray quote hides one line."""
    stop = "" if multiline else r"\n"
    return rf"{quote}(?P<body>(?:[^{quote}\\{stop}]|\\.)*){quote}?"


_SLASH_COMMENTS: list[tuple[_Kind, str]] = [("comment", r"//[^\n]*"), ("comment", r"/\*.*?(?:\*/|\Z)")]
_PY_PREFIX = r"(?:(?<!\w)(?P<pfx>[rRbBuUfF]{1,2}))?"
_JS_REGEX_LITERAL = (
    r"(?:(?<=[(,=:\[!&|?{};+\-*%<>~^])|(?<![\w$.])"
    r"(?:return|typeof|case|do|else|in|of|new|delete|void|throw|yield|await)|^)"
    # Every part is optional and greedy, so the token never backtracks; an unclosed one runs to the line end,
    # which only keeps more text visible as code.
    r"[ \t]*/(?![/*])(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\]?)*/?"
)

_TOKENS: dict[SupportedLanguage, list[tuple[_Kind, str]]] = {
    _Lang.PYTHON: [
        ("comment", r"\#[^\n]*"),
        ("string", _PY_PREFIX + r"(?P<q>'''|\"\"\")(?P<body>(?:[^\\]|\\.)*?)(?:(?P=q)|\Z)"),
        ("string", _PY_PREFIX + _quoted("'", multiline=False)),
        ("string", _PY_PREFIX + _quoted('"', multiline=False)),
    ],
    _Lang.JAVASCRIPT: [
        *_SLASH_COMMENTS,
        ("code", _JS_REGEX_LITERAL),
        ("string", _quoted("`", multiline=True)),
        ("string", _quoted("'", multiline=False)),
        ("string", _quoted('"', multiline=False)),
    ],
    _Lang.JAVA: [
        *_SLASH_COMMENTS,
        ("string", r"\"\"\"(?P<body>(?:[^\\]|\\.)*?)(?:\"\"\"|\Z)"),  # text block
        ("string", _quoted("'", multiline=False)),
        ("string", _quoted('"', multiline=False)),
    ],
    _Lang.CPP: [
        *_SLASH_COMMENTS,
        (
            "string",
            r"(?<!\w)(?:u8|[uUL])?R\"(?P<delim>[^()\\\s\"]{0,16})\((?P<body>.*?)(?:\)(?P=delim)\"|\Z)",
        ),
        (
            "code",
            r"(?<![\w.])\d(?:[\w.]|'(?=\w))*",
        ),  # keeps the digit separator in 1'000'000 out of char literals
        ("string", _quoted("'", multiline=False)),
        ("string", _quoted('"', multiline=False)),
    ],
    _Lang.GO: [
        *_SLASH_COMMENTS,
        ("string", r"`(?P<body>[^`]*)`?"),
        ("string", _quoted("'", multiline=False)),
        ("string", _quoted('"', multiline=False)),
    ],
    _Lang.RUBY: [
        ("comment", r"^=begin\b.*?(?:^=end\b[^\n]*|\Z)"),
        ("comment", r"\#(?!\{)[^\n]*"),  # a bare "#{" is more likely heredoc interpolation than a comment
        ("code", r"\$['\"`]"),  # the globals $' $" $` are not string openers
        ("string", _quoted("'", multiline=True)),
        ("string", _quoted('"', multiline=True)),
        ("string", _quoted("`", multiline=True)),
    ],
    _Lang.R: [
        ("comment", r"\#[^\n]*"),
        ("string", r"(?<!\w)[rR](?P<q>['\"])(?P<dash>-*)[(\[{](?P<body>.*?)(?:[)\]}](?P=dash)(?P=q)|\Z)"),
        ("code", r"`(?:[^`\\]|\\.)*`?"),  # backticks quote names, not strings
        ("string", _quoted("'", multiline=True)),
        ("string", _quoted('"', multiline=True)),
    ],
}


class _Lexer(NamedTuple):
    regex: re.Pattern[str]
    kinds: tuple[_Kind, ...]


def _build_lexer(tokens: list[tuple[_Kind, str]]) -> _Lexer:
    # One alternation for the whole language: finditer's leftmost match means a '#' or '//' inside a string is
    # consumed by the string that opened first. Group names get a token suffix so they stay unique.
    parts = []
    for index, (_, regex) in enumerate(tokens):
        renamed = re.sub(r"\(\?P([<=])(\w+)", rf"(?P\g<1>\g<2>_{index}", regex)
        parts.append(f"(?P<tok_{index}>{renamed})")
    return _Lexer(re.compile("|".join(parts), re.MULTILINE | re.DOTALL), tuple(kind for kind, _ in tokens))


_LEXERS = {lang: _build_lexer(tokens) for lang, tokens in _TOKENS.items()}

# A literal right after one of these is code that will be run, so its body must stay visible to import search.
_EVAL_LEAD = re.compile(
    r"(?:\b(?:eval|exec|compile|Function|instance_eval|class_eval|module_eval|setTimeout|setInterval)"
    r"\s*\(?|\btext\s*=)\s*$"
)


def _holds_code(lang: SupportedLanguage, quote: str, prefix: str, body: str, before: str) -> bool:
    if _EVAL_LEAD.search(before):
        return True
    if lang is _Lang.PYTHON:
        return "f" in prefix.lower() and "{" in body
    if lang is _Lang.JAVASCRIPT:
        return quote == "`" and "${" in body
    if lang is _Lang.RUBY:
        return quote == "`" or (quote == '"' and "#{" in body)
    return False


def scan_source(code: str, lang: SupportedLanguage) -> SourceView:
    """Lex ``code`` once and return its ``clean`` and ``masked`` views."""
    lexer = _LEXERS[lang]
    names = lexer.regex.groupindex
    clean: list[str] = []
    masked: list[str] = []
    pos = 0
    for match in lexer.regex.finditer(code):
        start, end = match.span()
        clean.append(code[pos:start])
        masked.append(code[pos:start])
        pos = end
        text = match.group()
        # lastgroup is the outermost group that closed last, i.e. the tok_N wrapper of the matching token.
        index = int(str(match.lastgroup).rpartition("_")[2])
        kind = lexer.kinds[index]
        if kind == "comment":
            text = _NOT_NEWLINE.sub(" ", text)
            clean.append(text)
            masked.append(text)
            continue
        clean.append(text)
        if kind == "code":
            masked.append(text)
            continue
        body_start, body_end = match.span(f"body_{index}")
        body = code[body_start:body_end]
        prefix = match.group(f"pfx_{index}") if f"pfx_{index}" in names else None
        quote = code[body_start - 1] if body_start > start else ""
        if _holds_code(lang, quote, prefix or "", body, code[max(0, start - 40) : start]):
            masked.append(text)
        else:
            masked.append(code[start:body_start] + _NOT_NEWLINE.sub(_FILL, body) + code[body_end:end])
    clean.append(code[pos:])
    masked.append(code[pos:])
    return SourceView("".join(clean), "".join(masked))


def strip_comments(code: str, lang: str) -> str:
    """``code`` with its comments blanked out (offsets and line numbers unchanged)."""
    return scan_source(code, normalize_language(lang)).clean


# --- import discovery -----------------------------------------------------------------------------

# A string literal in the masked view: its body is NULs (or code), never a quote or a newline.
_STR = r"(?P<q>[\"'`])(?P<s>[^\"'`\n]*)(?P=q)"
_STR_RE = re.compile(_STR)
_Finder = Callable[[SourceView], Iterable[str]]


def _literals(view: SourceView, regex: re.Pattern[str], group: str = "s") -> list[str]:
    # Read the literal's text from the clean view: the masked one only knows where it is.
    return [
        view.clean[m.start(group) : m.end(group)] for m in regex.finditer(view.masked) if m.group(group) is not None
    ]


# Python: the quote anchors let a literal handed to exec() ("import os; ...") count as code.
_PY_IMPORT = re.compile(r"(?:^|[;:'\"])[ \t]*import[ \t]+(?P<names>[\w.][\w. \t,]*)", re.MULTILINE)
_PY_FROM = re.compile(
    r"(?:^|[;:'\"])[ \t]*from[ \t]+(?P<mod>[\w.]+)[ \t]+import\b[ \t]*(?P<names>\([^)]*\)?|[\w. \t,*]*)",
    re.MULTILINE,
)
_PY_DYNAMIC = re.compile(r"\b(?:__import__|import_module)\s*\(\s*(?:name\s*=\s*)?[rRbBuU]?" + _STR)


def _python(view: SourceView) -> Iterable[str]:
    text = view.masked.replace("\\\n", "  ")  # join backslash continuations without moving any offset
    for match in _PY_IMPORT.finditer(text):
        yield from (part.split()[0] for part in match["names"].split(",") if part.strip())
    for match in _PY_FROM.finditer(text):
        module = match["mod"]
        yield module
        # "from os import path" may import the submodule os.path, so report both.
        for part in match["names"].strip("()").split(","):
            name = part.split()[0] if part.strip() else "*"
            if name != "*":
                yield f"{module}.{name}"
    yield from _literals(view, _PY_DYNAMIC)


_JS_FINDERS = (
    re.compile(r"\brequire\s*\(\s*" + _STR),
    re.compile(r"(?<![\w$.])import\s*\(\s*" + _STR),
    re.compile(r"(?<![\w$.])import\s*" + _STR),
)
# "import ... from 'x'" / "export ... from 'x'": the clause is consumed whole and "from" checked afterwards, so
# the search never rescans a clause (a lazy ".*?from" would be quadratic on text full of "export" words).
_JS_FROM = re.compile(r"(?<![\w$.])(?:import|export)\b(?P<clause>[^;'\"`()]*)(?:" + _STR + ")?")
_JS_ENDS_WITH_FROM = re.compile(r"(?<![\w$.])from\s*\Z")


def _javascript(view: SourceView) -> Iterable[str]:
    names = [name for regex in _JS_FINDERS for name in _literals(view, regex)]
    for match in _JS_FROM.finditer(view.masked):
        if match["s"] is not None and _JS_ENDS_WITH_FROM.search(match["clause"][-64:]):
            names.append(view.clean[match.start("s") : match.end("s")])
    return [name.removeprefix("node:") for name in names]


# Java allows whitespace around the dots; each step must see a dot, so there is nothing to backtrack over.
_JAVA_IMPORT = re.compile(
    r"(?:^|[;}])[ \t]*import\s+(?:static\s+)?(?P<name>\w+(?:\s*\.\s*(?:\w+|\*))*)\s*;", re.MULTILINE
)


def _java(view: SourceView) -> Iterable[str]:
    for match in _JAVA_IMPORT.finditer(view.masked):
        yield re.sub(r"\s+", "", match["name"]).removesuffix(".*")


_CPP_INCLUDE = re.compile(
    r"^[ \t]*\#[ \t]*(?:include|include_next|import)[ \t]*(?:<(?P<angle>[^>\n]*)>|" + _STR + ")", re.MULTILINE
)


def _cpp(view: SourceView) -> Iterable[str]:
    yield from (name.strip() for name in _literals(view, _CPP_INCLUDE, "angle"))
    yield from (name.strip() for name in _literals(view, _CPP_INCLUDE))


_GO_BLOCK = re.compile(r"\bimport\s*\((?P<block>[^)]*)\)?")  # an unclosed block ends the search, not a rescan
_GO_SINGLE = re.compile(r"\bimport\s+(?:[\w.]+\s+)?" + _STR)


def _go(view: SourceView) -> Iterable[str]:
    for block in _GO_BLOCK.finditer(view.masked):
        for match in _STR_RE.finditer(view.masked, block.start("block"), block.end("block")):
            yield view.clean[match.start("s") : match.end("s")]
    yield from _literals(view, _GO_SINGLE)


_RUBY_REQUIRE = re.compile(r"(?:\brequire(?:_relative)?|(?<![\w.:])load)\b\s*\(?\s*" + _STR)


def _ruby(view: SourceView) -> Iterable[str]:
    return _literals(view, _RUBY_REQUIRE)


_R_NAME = r"[A-Za-z.][\w.]*"
_R_LOAD = re.compile(
    r"\b(?:library|require|requireNamespace|loadNamespace|attachNamespace)\s*\(\s*(?:package\s*=\s*)?"
    rf"(?:{_STR}|(?P<bare>{_R_NAME}))"
)
_R_NAMESPACE = re.compile(rf"(?<![\w.])(?P<ns>{_R_NAME})\s*:::?")


def _r(view: SourceView) -> Iterable[str]:
    yield from _literals(view, _R_LOAD)
    yield from _literals(view, _R_LOAD, "bare")
    yield from _literals(view, _R_NAMESPACE, "ns")


_FINDERS: dict[SupportedLanguage, _Finder] = {
    _Lang.PYTHON: _python,
    _Lang.JAVASCRIPT: _javascript,
    _Lang.JAVA: _java,
    _Lang.CPP: _cpp,
    _Lang.GO: _go,
    _Lang.RUBY: _ruby,
    _Lang.R: _r,
}


def find_imports(view: SourceView, lang: SupportedLanguage) -> frozenset[str]:
    """Names of the modules, packages or headers the code in ``view`` imports.

    Relative Python imports (``from . import x``) are local code and are left out.
    """
    return frozenset(name for name in _FINDERS[lang](view) if name and not name.startswith("."))


def imported_modules(code: str, lang: str) -> frozenset[str]:
    """Names of the modules ``code`` imports, ignoring comments and string literals."""
    language = normalize_language(lang)
    return find_imports(scan_source(code, language), language)
