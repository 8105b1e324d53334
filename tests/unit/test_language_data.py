"""The language registry and each language's data: argv templates, name validation, local sources (no engine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import llm_sandbox
from llm_sandbox import (
    InvalidLibraryNameError,
    LanguageNotSupportedError,
    LibraryInstallationNotSupportedError,
    SupportedLanguage,
)
from llm_sandbox.languages.base import Language
from llm_sandbox.languages.registry import LANGUAGES, get_language

WORKDIR = "/sandbox"
VALUES = {"file": "{tmp}/code", "dir": "{tmp}", "python": "/opt/venv/bin/python", "workdir": WORKDIR}
RECIPES = Path(llm_sandbox.__file__).parent / "images" / "recipes"

# Names every language must refuse: options, shell syntax, URLs, paths outside the workdir, traversal.
HOSTILE = [
    "",
    " ",
    "-e .",
    "--index-url=http://127.0.0.1:1/simple",
    "-oAPT::Get::AllowUnauthenticated=1",
    "x; rm -rf /",
    "x && id",
    "$(id)",
    "`id`",
    "a b",
    "a\nb",
    "x|y",
    "x>/etc/passwd",
    "https://evil.example/x.tgz",
    "git+https://evil.example/x.git",
    "file:/sandbox/x",
    "/etc/passwd",
    "../etc/passwd",
    "/sandbox/../etc/x.gem",
    "/sandbox/./x.gem",
    "/sandbox/.hidden/x.gem",
    "/sandboxx/x.gem",
    "/sandbox/x.gem;id",
    "/sandbox/$(id).gem",
    "/sandbox//x.gem",
]

VALID = {
    "python": ["numpy", "requests>=2.31", "pandas[excel]==2.2.0", "zope.interface"],
    "javascript": ["lodash", "@scope/pkg", "pkg@1.2.3", "@types/node@^20.1", "left-pad@latest", "react-dom@>=18"],
    "java": ["com.google.code.gson:gson:2.10.1", "org.apache.commons:commons-lang3"],
    "cpp": ["libfmt-dev", "nlohmann-json3-dev", "libstdc++-12-dev", "g++", "libboost-dev=1.74.0.3", "zlib1g-dev:amd64"],
    "go": ["golang.org/x/text", "github.com/google/uuid@v1.6.0", "rsc.io/quote@latest", "example.com/mod@v1.2.3"],
    "ruby": ["rake", "rake:13.0.6", "nokogiri", "net-http"],
    "r": ["jsonlite", "data.table", "R6"],
}

INVALID = {
    "python": ["pkg @ https://evil.example/x.whl"],
    "javascript": ["alias@npm:lodash", "github:user/repo", "a/b/c", "pkg@1 || 2", ".hidden", "_private"],
    "java": ["gson", "a:b:c:d:e"],
    "cpp": ["foo-", "libfmt-dev-", "Foo", "pkg/bookworm-backports", "./x.deb", "a", "pkg=1.0-"],
    "go": ["std", "fmt", "example.com/../x", "example.com/x@v1 y"],
    "ruby": ["rake:>=13", "rake -v 13"],
    "r": ["2pkg", "pkg.", "pkg_name"],
}

LOCAL = {
    "go": (["/sandbox/src/greet", "/sandbox/mods/a.b/c"], ["/sandbox", "/sandbox/"]),
    "ruby": (["/sandbox/hello-0.1.0.gem", "/sandbox/pkg/x_y+z-1.gem"], ["/sandbox/hello.tar.gz", "/sandbox/.gem"]),
    "r": (["/sandbox/src/hello_0.1.0.tar.gz", "/sandbox/src/hello"], ["/sandbox/"]),
}


def test_every_registered_language_is_a_member_of_the_public_enum() -> None:
    # SupportedLanguage stays hand-written so that type checkers see its members; this keeps it in step with the
    # registry, the one place a new language is listed.
    registered = list(LANGUAGES)
    public = [member.value for member in SupportedLanguage]
    missing = [name for name in registered if name not in public]
    assert not missing, (
        f"languages {missing} are in the registry but not in SupportedLanguage: add a member for each to "
        "SupportedLanguage in src/llm_sandbox/const.py (e.g. RUBY = 'ruby')"
    )
    extra = [value for value in public if value not in registered]
    assert not extra, (
        f"SupportedLanguage members {extra} have no language module in the registry: add the module to "
        "src/llm_sandbox/languages/registry.py or remove the member"
    )
    assert public == registered, "list SupportedLanguage's members in the registry's order"


def test_the_registry_lists_the_seven_languages_under_their_public_names() -> None:
    assert set(LANGUAGES) == {member.value for member in SupportedLanguage}
    for name, language in LANGUAGES.items():
        assert language.name == name
        assert get_language(name.upper()) is language
        assert get_language(SupportedLanguage(name)) is language


def test_an_unknown_language_names_the_supported_ones() -> None:
    with pytest.raises(LanguageNotSupportedError, match="supported: cpp, go, java, javascript, python, r, ruby"):
        get_language("cobol")
    with pytest.raises(LanguageNotSupportedError, match="did you mean 'ruby'"):
        get_language("rubby")


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_every_language_has_an_image_recipe(name: str) -> None:
    # A language's Dockerfile lives in its module; only the base's recipe is a file beside the image builder.
    recipe = LANGUAGES[name].image_recipe
    assert "FROM ${BASE_IMAGE}" in recipe
    assert recipe.endswith("\n")
    assert not (RECIPES / f"{name}.Dockerfile").exists()
    assert (RECIPES / "common.Dockerfile").is_file()


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_placeholders_are_whole_argv_items_never_spliced_into_a_script(name: str) -> None:
    # A value (a path, the workdir) that reached a shell script's text could become shell syntax; as a whole argv
    # item it reaches the script only as a positional parameter.
    language = LANGUAGES[name]
    for part in (*language.run, *(language.install or ())):
        for placeholder in ("{file}", "{dir}", "{workdir}", "{python}", "{libraries}", "{tmp}"):
            assert placeholder not in part or part == placeholder, (part, placeholder)
    assert "{file}" in language.run or "{dir}" in language.run


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_run_argv_puts_the_code_file_in_the_runs_temporary_folder(name: str) -> None:
    language = LANGUAGES[name]
    path = language.code_path()
    assert path == f"{{tmp}}/{language.file_name}"
    argv = language.run_argv({**VALUES, "file": path})
    assert path in argv or "{tmp}" in argv
    assert not any("{file}" in part or "{dir}" in part or "{workdir}" in part for part in argv)


@pytest.mark.parametrize(("name", "library"), [(name, library) for name in sorted(LANGUAGES) for library in HOSTILE])
def test_hostile_names_are_refused_by_every_language(name: str, library: str) -> None:
    with pytest.raises(InvalidLibraryNameError, match=f"not a valid {name} library name"):
        LANGUAGES[name].install_argv([library], VALUES)


@pytest.mark.parametrize(("name", "library"), [(name, item) for name, items in INVALID.items() for item in items])
def test_language_specific_bad_forms_are_refused(name: str, library: str) -> None:
    with pytest.raises(InvalidLibraryNameError):
        LANGUAGES[name].install_argv([library], VALUES)


@pytest.mark.parametrize(
    ("name", "library"), [(name, item) for name, items in VALID.items() if name != "java" for item in items]
)
def test_normal_names_become_one_argv_item_each(name: str, library: str) -> None:
    language = LANGUAGES[name]
    argv = language.install_argv([library, library], VALUES)
    assert argv.count(library) == 2
    assert argv[-2:] == [library, library]  # the names come last, after every option of the manager
    assert not any(re.search(r"\{(?:file|dir|workdir|python|libraries)\}", part) for part in argv)


@pytest.mark.parametrize("library", VALID["java"])
def test_java_refuses_installs_and_says_what_to_do(library: str) -> None:
    with pytest.raises(LibraryInstallationNotSupportedError) as raised:
        LANGUAGES["java"].install_argv([library], VALUES)
    message = str(raised.value)
    assert "Maven or Gradle" in message
    assert "lib/" in message


@pytest.mark.parametrize(("name", "paths"), [(name, good) for name, (good, _bad) in LOCAL.items()])
def test_local_sources_under_the_workdir_are_accepted(name: str, paths: list[str]) -> None:
    language = LANGUAGES[name]
    assert language.install_argv(paths, VALUES)[-len(paths) :] == paths
    # The same paths are refused when the session's workdir is elsewhere.
    with pytest.raises(InvalidLibraryNameError, match="under the workdir"):
        language.install_argv(paths, {**VALUES, "workdir": "/elsewhere"})


@pytest.mark.parametrize(("name", "paths"), [(name, bad) for name, (_good, bad) in LOCAL.items()])
def test_local_sources_of_the_wrong_kind_are_refused(name: str, paths: list[str]) -> None:
    for path in paths:
        with pytest.raises(InvalidLibraryNameError):
            LANGUAGES[name].install_argv([path], VALUES)


@pytest.mark.parametrize("name", ["python", "javascript", "cpp", "java"])
def test_languages_without_local_sources_refuse_paths(name: str) -> None:
    with pytest.raises(InvalidLibraryNameError):
        LANGUAGES[name].install_argv(["/sandbox/src/thing"], VALUES)


def test_only_system_package_installs_run_as_root() -> None:
    assert {name for name, language in LANGUAGES.items() if language.install_user is not None} == {"cpp"}
    assert LANGUAGES["cpp"].install_user == "0"


def test_environment_values_are_filled_with_the_workdir() -> None:
    assert LANGUAGES["javascript"].environment_for({"workdir": "/w"}) == {
        "NODE_PATH": "/opt/llm-sandbox/user/node/node_modules:/w/node_modules"
    }
    assert LANGUAGES["java"].environment_for({"workdir": "/w"}) == {"CLASSPATH": "/w/lib/*"}


COMPILER_REPORTS = {
    "python": "  File \"/tmp/r/main.py\", line 3\n    x = (\n        ^\nSyntaxError: '(' was never closed\n",
    "javascript": "/tmp/r/main.js:3\nlet x = ;\n        ^\n\nSyntaxError: Unexpected token ';'\n",
    "java": "/tmp/r/Main.java:3: error: ';' expected\n1 error\nerror: compilation failed\n",
    "cpp": "/tmp/r/main.cpp:3:5: error: 'x' was not declared in this scope\n",
    "go": "# command-line-arguments\n/tmp/r/main.go:3:2: undefined: x\n",
    "ruby": "/tmp/r/main.rb:3: syntax error, unexpected end-of-input\n",
    "r": 'Error: unexpected symbol in:\n"x <- c(1,\ny y"\nExecution halted\n',
}
RUNTIME_FAILURES = {
    "python": "Traceback (most recent call last):\nZeroDivisionError: division by zero\n",
    "javascript": "/tmp/r/main.js:1\nthrow new Error('boom')\nError: boom\n",
    "java": 'Exception in thread "main" java.lang.ArithmeticException: / by zero\n',
    "cpp": "terminate called after throwing an instance of 'std::runtime_error'\n",
    "go": "panic: runtime error: integer divide by zero\n",
    "ruby": "/tmp/r/main.rb:1:in `/': divided by 0 (ZeroDivisionError)\n",
    "r": "Error in f() : boom\nExecution halted\n",
}


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_compile_errors_are_told_apart_from_runtime_failures(name: str) -> None:
    language: Language = LANGUAGES[name]
    report = COMPILER_REPORTS[name]
    assert language.is_compile_error(1, report)
    assert not language.is_compile_error(0, report)
    assert not language.is_compile_error(1, RUNTIME_FAILURES[name])
