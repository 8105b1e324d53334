"""Unit tests for llm_sandbox.security and llm_sandbox.security_imports (pure Python, no containers)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_sandbox.const import SupportedLanguage
from llm_sandbox.errors import LanguageNotSupportedError, ValidationError
from llm_sandbox.security import (
    PRESET_NAMES,
    RestrictedModule,
    SecurityIssueSeverity,
    SecurityPattern,
    SecurityPolicy,
    evaluate,
    get_security_policy,
)
from llm_sandbox.security_imports import imported_modules, normalize_language, strip_comments

S = SecurityIssueSeverity
LANGUAGES = [lang.value for lang in SupportedLanguage]


def module_policy(name: str, severity: SecurityIssueSeverity = S.HIGH) -> SecurityPolicy:
    return SecurityPolicy(severity_threshold=S.LOW, restricted_modules=[RestrictedModule(name, "test", severity)])


def violation_descriptions(policy: SecurityPolicy, code: str, lang: str) -> list[str]:
    return [item.description for item in evaluate(policy, code, lang)]


# --- value objects ----------------------------------------------------------------------------------------


def test_severity_values_and_order() -> None:
    assert [(level.name, int(level)) for level in S] == [("SAFE", 0), ("LOW", 1), ("MEDIUM", 2), ("HIGH", 3)]
    assert S.SAFE < S.LOW < S.MEDIUM < S.HIGH


def test_pattern_compiles_once_with_multiline() -> None:
    pattern = SecurityPattern(r"^danger$", "a line that says danger", S.HIGH)
    assert pattern.regex is pattern.regex
    assert pattern.regex.flags & re.MULTILINE
    assert pattern.regex.search("ok\ndanger\nok")


def test_invalid_regex_names_pattern_and_error() -> None:
    with pytest.raises(ValidationError) as info:
        SecurityPattern(r"os\.system(", "broken", S.HIGH)
    message = str(info.value)
    assert repr(r"os\.system(") in message
    assert "missing ), unterminated subpattern" in message
    assert isinstance(info.value.__cause__, re.error)


@pytest.mark.parametrize("bad", ["", 3, None])
def test_pattern_must_be_non_empty_string(bad: object) -> None:
    with pytest.raises(ValidationError):
        SecurityPattern(bad, "x", S.LOW)  # type: ignore[arg-type]


def test_severity_accepts_ints_and_rejects_the_rest() -> None:
    assert SecurityPattern("x", "x", 2).severity is S.MEDIUM  # type: ignore[arg-type]
    for bad in (4, -1, True, "HIGH", None):
        with pytest.raises(ValidationError, match="SecurityIssueSeverity"):
            SecurityPattern("x", "x", bad)  # type: ignore[arg-type]


def test_pattern_is_frozen_and_hashable_by_value() -> None:
    first = SecurityPattern("x", "desc", S.LOW)
    second = SecurityPattern("x", "desc", S.LOW)
    assert first == second
    assert hash(first) == hash(second)
    assert "regex" not in repr(first)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.pattern = "y"  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", "os sys", "a;b", "x\n", "$(rm)"])
def test_restricted_module_name_is_validated(bad: str) -> None:
    with pytest.raises(ValidationError):
        RestrictedModule(bad, "x", S.HIGH)


@pytest.mark.parametrize(
    ("name", "imported", "expected"),
    [
        ("os", "os", True),
        ("os", "os.path", True),
        ("os", "osmosis", False),
        ("os.path", "os", False),
        ("net", "net/http", True),
        ("net", "network", False),
        ("unistd", "unistd.h", True),
        ("java.net", "java.net.Socket", True),
        ("java.net", "java.nio", False),
    ],
)
def test_restricted_module_matching(name: str, imported: str, expected: bool) -> None:
    assert RestrictedModule(name, "x", S.HIGH).matches(imported) is expected


def test_restricted_module_violation_names_the_module() -> None:
    module = RestrictedModule("subprocess", "starts programs", S.HIGH)
    violation = module.as_pattern()
    assert violation is module.as_pattern()
    assert "subprocess" in violation.description
    assert "starts programs" in violation.description
    assert violation.severity is S.HIGH


# --- policy -----------------------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = SecurityPolicy()
    assert policy.severity_threshold is S.SAFE
    assert policy.patterns == []
    assert policy.restricted_modules == []
    assert evaluate(policy, "import os; os.system('x')", "python") == []


def test_the_default_threshold_safe_turns_the_policy_off_as_in_the_reference() -> None:
    entries = {
        "patterns": [SecurityPattern(r"os\.system", "shell", S.HIGH)],
        "restricted_modules": [RestrictedModule("os", "os", S.HIGH)],
    }
    code = "import os; os.system('x')"
    assert evaluate(SecurityPolicy(**entries), code, "python") == []  # type: ignore[arg-type]
    assert evaluate(SecurityPolicy(severity_threshold=S.SAFE, **entries), code, "python") == []  # type: ignore[arg-type]
    assert len(evaluate(SecurityPolicy(severity_threshold=S.LOW, **entries), code, "python")) == 2  # type: ignore[arg-type]


def test_policy_copies_the_lists_it_is_given() -> None:
    patterns = [SecurityPattern("x", "x", S.HIGH)]
    policy = SecurityPolicy(severity_threshold=S.LOW, patterns=patterns)
    patterns.append(SecurityPattern("y", "y", S.HIGH))
    assert len(policy.patterns) == 1


def test_policy_rejects_wrong_element_types() -> None:
    with pytest.raises(ValidationError):
        SecurityPolicy(patterns=["os.system"])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        SecurityPolicy(restricted_modules=["os"])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        SecurityPolicy(severity_threshold=7)  # type: ignore[arg-type]


def test_add_methods_change_the_policy_in_place_as_in_the_reference() -> None:
    base = SecurityPolicy(severity_threshold=S.MEDIUM)
    pattern = SecurityPattern(r"\bdanger\b", "danger", S.HIGH)
    module = RestrictedModule("socket", "network", S.MEDIUM)
    assert evaluate(base, "import socket\ndanger()", "python") == []
    assert base.add_pattern(pattern) is base  # code written for ours (policy = policy.add_...) keeps working
    base.add_restricted_module(module)  # code written for the reference ignores the result
    assert base.patterns == [pattern] and base.restricted_modules == [module]
    assert base.severity_threshold is S.MEDIUM
    assert [item.severity for item in evaluate(base, "import socket\ndanger()", "python")] == [S.HIGH, S.MEDIUM]
    with pytest.raises(ValidationError):
        base.add_pattern("danger")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        base.add_restricted_module("socket")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", list(S))
@pytest.mark.parametrize("severity", list(S))
def test_threshold_semantics(threshold: SecurityIssueSeverity, severity: SecurityIssueSeverity) -> None:
    policy = SecurityPolicy(
        severity_threshold=threshold,
        patterns=[SecurityPattern("danger", "p", severity)],
        restricted_modules=[RestrictedModule("socket", "m", severity)],
    )
    expected = threshold > S.SAFE and severity >= threshold
    assert policy.reports(severity) is expected
    assert len(evaluate(policy, "import socket\ndanger", "python")) == (2 if expected else 0)


def test_evaluate_orders_and_deduplicates() -> None:
    twice = SecurityPattern("danger", "p", S.HIGH)
    policy = SecurityPolicy(
        severity_threshold=S.LOW,
        patterns=[twice, SecurityPattern("other", "o", S.LOW), twice],
        restricted_modules=[RestrictedModule("os", "m", S.LOW)],
    )
    found = evaluate(policy, "import os.path\ndanger danger other", "python")
    assert [item.description for item in found] == ["p", "o", "Restricted module 'os': m"]


def test_evaluate_never_mutates_the_policy() -> None:
    policy = get_security_policy("strict")
    snapshot = copy.deepcopy(policy)
    pattern_ids = [id(item) for item in policy.patterns]
    code = "import os, subprocess\nos.system('rm -rf /')\neval(input())\n"
    for lang in LANGUAGES:
        evaluate(policy, code, lang)
    assert policy == snapshot
    assert [id(item) for item in policy.patterns] == pattern_ids


def test_evaluate_is_thread_safe() -> None:
    policy = get_security_policy("strict")
    samples = [
        ("python", "import subprocess\nsubprocess.run(['ls'])\n"),
        ("javascript", "const cp = require('child_process');\n"),
        ("go", 'import (\n\t"fmt"\n\t"os/exec"\n)\n'),
        ("r", "library(httr)\nx <- Sys.getenv('HOME')\n"),
        ("python", "print('hello')\n"),
    ]
    expected = [evaluate(policy, code, lang) for lang, code in samples]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda index: evaluate(policy, *reversed(samples[index % 5])), range(400)))
    assert all(result == expected[index % 5] for index, result in enumerate(results))
    assert expected[-1] == []


def test_language_names() -> None:
    policy = module_policy("socket")
    assert evaluate(policy, "import socket", "PYTHON")
    assert evaluate(policy, "import socket", SupportedLanguage.PYTHON)
    assert normalize_language("Cpp") is SupportedLanguage.CPP
    with pytest.raises(LanguageNotSupportedError, match="python, javascript"):
        evaluate(policy, "import socket", "cobol")
    with pytest.raises(ValidationError):
        evaluate(policy, "import socket", None)  # type: ignore[arg-type]


# --- import detection -------------------------------------------------------------------------------------

IMPORT_CASES = [
    ("python", "import os", {"os"}),
    ("python", "import os.path as p", {"os.path"}),
    ("python", "from os import path", {"os", "os.path"}),
    ("python", "from os.path import join as j, exists", {"os.path", "os.path.join", "os.path.exists"}),
    ("python", "from a import (\n    b,\n    c as d,\n)", {"a", "a.b", "a.c"}),
    ("python", "import a, b as c, d.e", {"a", "b", "d.e"}),
    ("python", "import a, \\\n    b", {"a", "b"}),
    ("python", "x = 1; import a", {"a"}),
    ("python", "def f():\n    if x: import a\n    from b import *", {"a", "b"}),
    ("python", "m = __import__('a.b')", {"a.b"}),
    ("python", 'importlib.import_module("a")', {"a"}),
    ("python", "from . import sibling\nfrom .pkg import x", set()),
    ("javascript", "const a = require('a');", {"a"}),
    ("javascript", 'const { b } = require("b/sub");', {"b/sub"}),
    ("javascript", "import x, { y as z } from 'c';", {"c"}),
    ("javascript", 'import {\n  one,\n  two,\n} from "d"\n', {"d"}),
    ("javascript", "import * as ns from 'e'", {"e"}),
    ("javascript", "import 'f';", {"f"}),
    ("javascript", "const m = await import('g');", {"g"}),
    ("javascript", "export * from 'h';", {"h"}),
    ("javascript", "const fs = require('node:fs');", {"fs"}),
    ("java", "import java.util.List;", {"java.util.List"}),
    ("java", "import java.net.*;", {"java.net"}),
    ("java", "import static java.lang.Math.max;", {"java.lang.Math.max"}),
    ("java", "package p;\nimport java . io . File ;", {"java.io.File"}),
    ("cpp", "#include <iostream>", {"iostream"}),
    ("cpp", '#include "local.h"', {"local.h"}),
    ("cpp", "  #  include <sys/socket.h>", {"sys/socket.h"}),
    ("go", 'import "fmt"', {"fmt"}),
    ("go", 'import f "fmt"', {"fmt"}),
    ("go", 'import (\n\t"os"\n\th "net/http"\n\t_ "embed"\n\t. `strings`\n)', {"os", "net/http", "embed", "strings"}),
    ("ruby", "require 'socket'", {"socket"}),
    ("ruby", 'require("net/http")', {"net/http"}),
    ("ruby", "require_relative 'lib/helper'", {"lib/helper"}),
    ("r", "library(httr)", {"httr"}),
    ("r", 'require("curl")', {"curl"}),
    ("r", "library(package = 'jsonlite')", {"jsonlite"}),
    ("r", "requireNamespace('processx')", {"processx"}),
    ("r", "x <- data.table::fread(f)\ny <- pkg:::hidden()", {"data.table", "pkg"}),
]


@pytest.mark.parametrize(("lang", "code", "expected"), IMPORT_CASES)
def test_import_forms(lang: str, code: str, expected: set[str]) -> None:
    assert imported_modules(code, lang) == expected


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", "import os"),
        ("python", "import os.path"),
        ("python", "from os import path"),
        ("python", "from os.path import join"),
        ("python", "import sys, os"),
        ("python", "__import__('os')"),
        ("python", "importlib.import_module('os.path')"),
        ("javascript", "require('os')"),
        ("javascript", "import os from 'os'"),
        ("javascript", "import('os')"),
        ("java", "import os.Thing;"),
        ("cpp", "#include <os/thing.h>"),
        ("go", 'import "os"'),
        ("ruby", "require 'os'"),
        ("r", "library(os)"),
        ("r", "os::f()"),
    ],
)
def test_restricted_module_is_found(lang: str, code: str) -> None:
    assert violation_descriptions(module_policy("os"), code, lang) == ["Restricted module 'os': test"]


@pytest.mark.parametrize(
    "code", ["import osmosis", "from osmosis import os", "import myos", "x = os_name", "os = 1", "import os_utils"]
)
def test_module_name_must_match_exactly(code: str) -> None:
    assert evaluate(module_policy("os"), code, "python") == []


QUIET_CASES = [
    ("python", "# import socket\nx = 1  # from socket import x"),
    ("python", "x = 'import socket'\ny = \"from socket import y\""),
    ("python", '"""\nimport socket\n"""\n'),
    ("python", "s = '__import__(\"socket\")'"),
    ("javascript", "// require('socket')\n/* import x from 'socket' */"),
    ("javascript", "const s = \"require('socket')\"; const t = `import 'socket'`;"),
    ("java", '// import socket.X;\n/* import socket.Y; */\nString s = "import socket.Z;";'),
    ("cpp", '// #include <socket>\n/*\n#include <socket>\n*/\nconst char* s = "#include <socket>";'),
    ("cpp", 'const char* raw = R"x(\n#include <socket>\n)x";'),
    ("go", '// import "socket"\nvar s = "import \\"socket\\""\nvar r = `\nimport "socket"\n`'),
    ("ruby", "# require 'socket'\nputs 'require \"socket\"'\n=begin\nrequire 'socket'\n=end\n"),
    ("r", "# library(socket)\nx <- \"library(socket)\"\ny <- 'socket::f()'"),
    ("r", 'z <- r"(library(socket))"'),
]


@pytest.mark.parametrize(("lang", "code"), QUIET_CASES)
def test_comments_and_strings_do_not_trigger_modules(lang: str, code: str) -> None:
    assert imported_modules(code, lang) == frozenset()
    assert evaluate(module_policy("socket"), code, lang) == []


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", "x = f\"{__import__('socket')}\""),
        ("python", 'exec("import socket; socket.socket()")'),
        ("javascript", "const t = `${require('socket')}`;"),
        ("javascript", "eval(\"require('socket')\");"),
        ("javascript", 'const re = /"/; const s = require("socket");'),
        ("ruby", "puts \"#{require 'socket'}\""),
        ("cpp", "int n = 1'000'000;\n#include <socket>"),
    ],
)
def test_code_inside_strings_and_tricky_literals_still_counts(lang: str, code: str) -> None:
    assert "socket" in imported_modules(code, lang)


# --- comment stripping and patterns -----------------------------------------------------------------------

DANGER = SecurityPolicy(severity_threshold=S.LOW, patterns=[SecurityPattern(r"\bdanger\(", "calls danger", S.HIGH)])


@pytest.mark.parametrize(
    ("lang", "commented"),
    [
        ("python", "x = 1  # danger("),
        ("ruby", "x = 1 # danger("),
        ("r", "x <- 1 # danger("),
        ("javascript", "x = 1; // danger(\n/* danger(\n danger( */"),
        ("java", "int x = 1; // danger(\n/** danger( */"),
        ("cpp", "int x = 1; // danger(\n/* danger( */"),
        ("go", "x := 1 // danger(\n/* danger( */"),
    ],
)
def test_patterns_ignore_comments(lang: str, commented: str) -> None:
    assert evaluate(DANGER, commented, lang) == []
    assert violation_descriptions(DANGER, commented + "\ndanger()", lang) == ["calls danger"]


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("python", 'url = "a#b"; danger()'),
        ("python", "s = '''\n# not a comment\n'''; danger()"),
        ("ruby", 'url = "a#b"; danger()'),
        ("r", "url <- 'a#b'; danger()"),
        ("javascript", 'const url = "http://x"; danger()'),
        ("javascript", "const url = `http://x`; danger()"),
        ("javascript", "const re = /\\/\\//; danger()"),
        ("java", 'String u = "http://x /* y"; danger();'),
        ("cpp", 'auto u = "http://x"; danger();'),
        ("go", "u := `http://x`; danger()"),
    ],
)
def test_comment_markers_inside_strings_keep_the_code(lang: str, code: str) -> None:
    assert violation_descriptions(DANGER, code, lang) == ["calls danger"]


def test_patterns_see_string_literals() -> None:
    policy = SecurityPolicy(severity_threshold=S.LOW, patterns=[SecurityPattern(r"rm\s+-rf", "rm -rf", S.HIGH)])
    assert evaluate(policy, "subprocess.run('rm -rf /tmp/x', shell=True)", "python")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_strip_comments_keeps_offsets(lang: str) -> None:
    code = "a = 1 // x\n/* y\nz */ b # c\n'#' \"//\"\n"
    stripped = strip_comments(code, lang)
    assert len(stripped) == len(code)
    assert stripped.count("\n") == code.count("\n")


# --- presets ----------------------------------------------------------------------------------------------


def test_preset_names_and_thresholds() -> None:
    assert PRESET_NAMES == ("minimal", "development", "production", "strict")
    thresholds = {name: get_security_policy(name).severity_threshold for name in PRESET_NAMES}
    assert thresholds == {"minimal": S.HIGH, "development": S.HIGH, "production": S.MEDIUM, "strict": S.LOW}
    assert get_security_policy(" Production ") == get_security_policy("production")


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(ValidationError, match="minimal, development, production, strict"):
        get_security_policy("paranoid")
    with pytest.raises(ValidationError):
        get_security_policy(["strict"])  # type: ignore[arg-type]


def test_presets_are_fresh_copies() -> None:
    first = get_security_policy("production")
    first.patterns.clear()
    assert get_security_policy("production").patterns


def test_presets_grow_monotonically() -> None:
    sizes = [len(get_security_policy(name).patterns) for name in PRESET_NAMES]
    assert sizes == sorted(sizes)
    assert all(
        set(get_security_policy(smaller).patterns) <= set(get_security_policy(larger).patterns)
        for smaller, larger in itertools.pairwise(PRESET_NAMES)
    )


BENIGN = {
    "python": "import math, json\nfrom collections import Counter\n"
    "def remove(x):\n    return x\nitems = [3, 1]\nitems.remove(1)\nprint(json.dumps(sorted(items)))\n"
    "with open('data.csv') as f:\n    rows = f.read()\nprint(eval('1 + 1'))\n"
    "import platform\nprint(platform.system())\n",
    "javascript": "const m = new Map();\nm.delete('k');\nconst r = /a+/.exec('aa');\n"
    "console.log([1, 2].map(x => x * 2));\n",
    "java": "import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
    "    List<Integer> l = new ArrayList<>();\n    System.out.println(l);\n  }\n}\n",
    "cpp": "#include <iostream>\n#include <vector>\nint main() {\n  std::vector<int> v{1'000, 2};\n"
    "  std::cout << v.size() << std::endl;\n}\n",
    "go": 'package main\n\nimport (\n\t"fmt"\n\t"strings"\n)\n\nfunc main() { fmt.Println(strings.ToUpper("hi")) }\n',
    "ruby": "require 'json'\nputs JSON.generate({ a: 1 })\n[1, 2].each { |x| puts x }\n",
    "r": "library(stats)\nx <- c(1, 2, 3)\nprint(mean(x))\nprint(base::sum(x))\n",
}


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_presets_accept_benign_code(name: str, lang: str) -> None:
    assert evaluate(get_security_policy(name), BENIGN[lang], lang) == []


FLAGGED = [
    # (lang, code, weakest preset that flags it)
    ("python", "import shutil\nshutil.os.system('rm -rf /')", "minimal"),
    ("python", ":(){ :|:& };:", "minimal"),
    ("python", "mkfs.ext4 /dev/sda1", "minimal"),
    ("python", "import os\nos.system('ls')", "development"),
    ("python", "import subprocess", "development"),
    ("python", "from subprocess import run", "development"),
    ("javascript", "const { exec } = require('child_process');", "development"),
    ("java", 'Runtime.getRuntime().exec("ls");', "development"),
    ("java", 'new ProcessBuilder("ls").start();', "development"),
    ("cpp", 'int main() { system("ls"); }', "development"),
    ("cpp", 'execvp("ls", args);', "development"),
    ("go", 'import "os/exec"', "development"),
    ("ruby", 'system("ls")', "development"),
    ("ruby", "out = %x(ls)", "development"),
    ("r", 'system2("ls")', "development"),
    ("python", "exec(input())", "production"),
    ("python", "eval(user_code)", "production"),
    ("python", "m = __import__(name)", "production"),
    ("javascript", "eval(userInput);", "production"),
    ("javascript", "const f = new Function('a', body);", "production"),
    ("python", "import os\nos.remove('x')", "production"),
    ("python", "import shutil\nshutil.rmtree('/data')", "production"),
    ("python", "from pathlib import Path\nPath('x').unlink()", "production"),
    ("javascript", "fs.unlinkSync('x');", "production"),
    ("java", 'new File("x").delete();', "production"),
    ("go", 'os.RemoveAll("/tmp/x")', "production"),
    ("ruby", "FileUtils.rm_rf('x')", "production"),
    ("r", 'file.remove("x")', "production"),
    ("cpp", 'unlink("x");', "production"),
    ("python", "import socket", "production"),
    ("python", "import requests", "production"),
    ("python", "from urllib.request import urlopen", "production"),
    ("javascript", "const net = require('net');", "production"),
    ("javascript", "import https from 'node:https';", "production"),
    ("go", 'import "net/http"', "production"),
    ("java", "import java.net.URL;", "production"),
    ("cpp", "#include <sys/socket.h>", "production"),
    ("ruby", "require 'net/http'", "production"),
    ("r", "library(httr)", "production"),
    ("python", "import ctypes", "production"),
    ("python", "import os\nprint(os.environ['HOME'])", "strict"),
    ("python", "open('out.txt', 'w').write('x')", "strict"),
    ("javascript", "const fs = require('fs');", "strict"),
    ("go", 'v := os.Getenv("HOME")', "strict"),
]


@pytest.mark.parametrize(("lang", "code", "weakest"), FLAGGED)
def test_presets_flag_from_their_level_on(lang: str, code: str, weakest: str) -> None:
    first = PRESET_NAMES.index(weakest)
    for index, name in enumerate(PRESET_NAMES):
        found = evaluate(get_security_policy(name), code, lang)
        assert bool(found) is (index >= first), (name, found)


def test_production_allows_literal_eval_and_literal_import() -> None:
    policy = get_security_policy("production")
    assert evaluate(policy, "print(eval('2 * 3'))\nm = __import__('math')", "python") == []


def test_production_severities() -> None:
    policy = get_security_policy("production")
    found = evaluate(policy, "import os, socket\nos.system('ls')\neval(x)\n", "python")
    severities = {item.description: item.severity for item in found}
    assert severities["Restricted module 'socket': opens network connections"] is S.MEDIUM
    assert severities["Runs a program via os"] is S.HIGH
    assert severities["eval()/exec() of a computed value rather than a literal"] is S.MEDIUM
