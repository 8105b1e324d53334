"""Every language on the real engines (Docker and Podman), one parametrised suite: output, exit codes, compile
errors, timeouts, libraries (from a registry where one is reachable, else from local sources), and attached
containers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import (
    InvalidLibraryNameError,
    LibraryInstallationError,
    LibraryInstallationNotSupportedError,
    SandboxSession,
    SandboxTimeoutError,
)
from llm_sandbox.images import build_hint, default_image
from llm_sandbox.languages.registry import get_language

pytestmark = pytest.mark.backends("docker", "podman", "bubblewrap")

# Every process in the sandbox but the lister itself: "pid args".
PROCESSES = (
    "import os\nfor p in sorted(os.listdir('/proc')):\n"
    "    if p.isdigit() and int(p) != os.getpid():\n"
    "        try:\n            raw = open('/proc/%s/cmdline' % p, 'rb').read()\n"
    "        except OSError:\n            continue\n"
    "        print(p, raw.replace(b'\\0', b' ').decode().strip())\n"
)


@dataclass(frozen=True)
class Library:
    names: list[str]
    code: str
    stdout: str
    sources: dict[str, str] | None = None  # files copied into the workdir first (a local source)
    build: str | None = None  # shell command (in the workdir) that builds the local source


@dataclass(frozen=True)
class Case:
    lang: str
    hello: str  # prints "hello, world"
    out_err_3: str  # prints "out" and "err" (stderr), exits with 3
    broken: str  # a compile or syntax error on line 3, nothing printed
    report: str  # what the compiler's message must contain: the error's line
    endless: str  # starts a `sleep 1000` child, prints "started", loops forever
    library: Library
    unreachable: tuple[str, str] | None  # (name, what the manager's message names) for a failing install


GREET_GEMSPEC = (
    'Gem::Specification.new do |s|\n  s.name = "greet"\n  s.version = "0.1.0"\n  s.summary = "test gem"\n'
    '  s.authors = ["llm-sandbox"]\n  s.files = ["lib/greet.rb"]\nend\n'
)
R_DESCRIPTION = (
    "Package: greet\nVersion: 0.1.0\nTitle: Test Package\nDescription: A test package.\nLicense: MIT\n"
    "Author: llm-sandbox\nMaintainer: llm-sandbox <test@example.com>\n"
)
JAVA_MAIN = "public class Main {{\n    public static void main(String[] args) throws Exception {{\n{}\n    }}\n}}\n"

CASES = {
    case.lang: case
    for case in [
        Case(
            "python",
            'print("hello, world")',
            'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)',
            'a = 1\nb = 2\nprint("x" "y" +)\n',
            'main.py", line 3',
            'import subprocess\nsubprocess.Popen(["sleep", "1000"])\nprint("started", flush=True)\n'
            "while True:\n    pass",
            # Not six: the image has it (a dependency of Debian's plotly). Not in the image, pure Python, on PyPI.
            Library(
                ["termcolor==2.4.0"],
                "import importlib.metadata, termcolor\nprint(importlib.metadata.version('termcolor'))",
                "2.4.0\n",
            ),
            ("llm-sandbox-no-such-package-0a1b2c", "No matching distribution"),
        ),
        Case(
            "javascript",
            'console.log("hello, world");',
            'console.log("out");\nconsole.error("err");\nprocess.exit(3);',
            "const a = 1;\nconst b = 2;\nconst c = ;\n",
            "main.js:3\n",
            'require("child_process").spawn("sleep", ["1000"], {stdio: "ignore"});\n'
            'console.log("started");\nfor (;;) {}',
            Library(
                ["dayjs@1.11.10"],
                'const dayjs = require("dayjs");\n'
                'console.log(dayjs("2024-02-29").add(1, "year").format("YYYY-MM-DD"));',
                "2025-02-28\n",
            ),
            ("llm-sandbox-no-such-package-0a1b2c", "404"),
        ),
        Case(
            "java",
            # Not "Main": single-file source launch runs the class whatever it is called.
            "public class Hello {\n    public static void main(String[] args) {\n"
            '        System.out.println("hello, world");\n    }\n}\n',
            JAVA_MAIN.format('System.out.println("out");\nSystem.err.println("err");\nSystem.exit(3);'),
            'public class Main {\n    public static void main(String[] args) {\n        int x = "text";\n    }\n}\n',
            "Main.java:3: error: incompatible types",
            JAVA_MAIN.format(
                'new ProcessBuilder("sleep", "1000").start();\nSystem.out.println("started");\n'
                "System.out.flush();\nwhile (true) {}"
            ),
            # No package manager: jars in <workdir>/lib are on the class path (installs refuse, see below).
            Library(
                [],
                "import greet.Greet;\n" + JAVA_MAIN.format("System.out.println(Greet.hello());"),
                "hello from a jar\n",
                {
                    "src/greet/Greet.java": "package greet;\npublic class Greet {\n    public static String hello() "
                    '{ return "hello from a jar"; }\n}\n'
                },
                "javac -d build src/greet/Greet.java && mkdir -p lib && jar cf lib/greet.jar -C build .",
            ),
            None,
        ),
        Case(
            "cpp",
            '#include <iostream>\nint main() {\n    std::cout << "hello, world" << std::endl;\n}\n',
            '#include <iostream>\nint main() {\n    std::cout << "out\\n";\n    std::cerr << "err\\n";\n'
            "    return 3;\n}\n",
            "#include <iostream>\nint main() {\n    undeclared_name = 1;\n}\n",
            "main.cpp:3:5: error: ",
            "#include <cstdio>\n#include <unistd.h>\nint main() {\n    if (fork() == 0) {\n"
            '        execlp("sleep", "sleep", "1000", (char *)nullptr);\n        return 1;\n    }\n'
            '    std::puts("started");\n    std::fflush(stdout);\n    volatile unsigned long n = 0;\n'
            "    for (;;) { ++n; }\n}\n",
            Library(
                ["nlohmann-json3-dev"],
                "#include <iostream>\n#include <nlohmann/json.hpp>\nint main() {\n"
                '    std::cout << nlohmann::json::parse("{\\"answer\\": 42}")["answer"] << std::endl;\n}\n',
                "42\n",
            ),
            ("llm-sandbox-no-such-package", "Unable to locate package llm-sandbox-no-such-package"),
        ),
        Case(
            "go",
            'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello, world")\n}\n',
            'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tfmt.Println("out")\n'
            '\tfmt.Fprintln(os.Stderr, "err")\n\tos.Exit(3)\n}\n',
            "package main\nfunc main() {\n\tundefinedName()\n}\n",
            "main.go:3:2: undefined: undefinedName",
            'package main\n\nimport (\n\t"fmt"\n\t"os/exec"\n)\n\nfunc main() {\n'
            '\t_ = exec.Command("sleep", "1000").Start()\n\tfmt.Println("started")\n\tfor {\n\t}\n}\n',
            Library(
                ["/sandbox/src/greet"],
                'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\nfunc main() {\n'
                "\tfmt.Println(greet.Hello())\n}\n",
                "hello from a local module\n",
                {
                    "src/greet/go.mod": "module example.com/greet\n\ngo 1.19\n",
                    "src/greet/greet.go": (
                        'package greet\n\nfunc Hello() string { return "hello from a local module" }\n'
                    ),
                },
            ),
            ("rsc.io/quote@v1.5.2", "proxy.golang.org"),
        ),
        Case(
            "ruby",
            'puts "hello, world"',
            'puts "out"\n$stderr.puts "err"\nexit 3',
            "a = 1\nb = 2\nputs(1 2)\n",
            "main.rb:3: syntax error",
            'spawn("sleep", "1000")\n$stdout.sync = true\nputs "started"\nloop {}',
            Library(
                ["/sandbox/src/greet/greet-0.1.0.gem"],
                'require "greet"\nputs Greet.hello',
                "hello from a local gem\n",
                {
                    "src/greet/greet.gemspec": GREET_GEMSPEC,
                    "src/greet/lib/greet.rb": (
                        'module Greet\n  def self.hello\n    "hello from a local gem"\n  end\nend\n'
                    ),
                },
                "cd src/greet && gem build greet.gemspec",
            ),
            ("rake:13.0.6", "https://rubygems.org/"),
        ),
        Case(
            "r",
            'cat("hello, world\\n")',
            'cat("out\\n")\nmessage("err")\nquit(status = 3)',
            "a <- 1\nb <- 2\nc <- a b\n",
            'unexpected symbol in "c <- a b"',
            'system("sleep 1000", wait = FALSE)\ncat("started\\n")\nflush(stdout())\nrepeat {}',
            Library(
                ["/sandbox/src/greet_0.1.0.tar.gz"],
                'library(greet)\ncat(hello(), "\\n", sep = "")',
                "hello from a local R package\n",
                {
                    "src/greet/DESCRIPTION": R_DESCRIPTION,
                    "src/greet/NAMESPACE": "export(hello)\n",
                    "src/greet/R/hello.R": 'hello <- function() "hello from a local R package"\n',
                },
                "cd src && R CMD build --no-manual greet",
            ),
            ("jsonlite", "https://cloud.r-project.org/src/contrib"),
        ),
    ]
}
LANGS = list(CASES)


@pytest.fixture(scope="module", params=LANGS)
def case(request: pytest.FixtureRequest, backend: Harness) -> Case:
    lang = str(request.param)
    engine = backend.engine or "docker"
    # Bubblewrap has no engine of its own: it runs the filesystems of Docker's images.
    engine_client = backend.sdk_client or request.getfixturevalue("docker_client")
    try:
        engine_client.images.get(default_image(lang))
    except Exception:
        pytest.fail(
            f"{default_image(lang)} is missing in {engine}; build it with: {build_hint(lang)}"
            + (
                " and copy it with: python -m llm_sandbox.images copy --to podman " + lang if engine == "podman" else ""
            ),
            pytrace=False,
        )
    return CASES[lang]


@pytest.fixture(scope="module")
def session(case: Case, backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang=case.lang) as opened:
        yield opened


def processes(session: SandboxSession) -> list[str]:
    listed = session.execute_command(["python3", "-c", PROCESSES])
    assert listed.exit_code == 0, listed.stderr
    return listed.stdout.splitlines()


def leftovers(session: SandboxSession, case: Case) -> str:
    """Run folders in /tmp (but this command's own, "$1"), and code files or binaries at the top of the workdir."""
    script = 'ls -A /tmp | grep "^llm-sandbox-run-" | grep -vx "${1##*/}"; ls -A "$2" | grep -x -e "$3" -e main'
    argv = ["/bin/sh", "-c", script, "sh", "{tmp}", session.options.workdir, get_language(case.lang).file_name]
    return session.execute_command(argv).stdout


def test_hello_world(session: SandboxSession, case: Case) -> None:
    result = session.run(case.hello)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "hello, world\n", "")
    assert leftovers(session, case) == ""


def test_stderr_and_the_real_exit_code(session: SandboxSession, case: Case) -> None:
    result = session.run(case.out_err_3)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_compile_error_is_a_non_zero_exit_with_the_compilers_message(session: SandboxSession, case: Case) -> None:
    result = session.run(case.broken)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert case.report in result.stderr
    assert get_language(case.lang).is_compile_error(result.exit_code, result.stderr)
    assert leftovers(session, case) == ""


def test_timeout_kills_the_run_with_its_children_and_the_session_goes_on(session: SandboxSession, case: Case) -> None:
    before = processes(session)
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as raised:
        session.run(case.endless, timeout=3)
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 8
    assert raised.value.output is not None
    assert raised.value.output.stdout == "started\n"  # the loop (and its child) really ran
    assert processes(session) == before  # the same processes as before: none of the run's survived
    assert leftovers(session, case) == ""
    assert session.run(case.hello).stdout == "hello, world\n"


def test_library_install_then_use(case: Case, backend: Harness, tmp_path: Path) -> None:
    library = case.library
    with backend.session(lang=case.lang) as session:
        assert session.run(library.code).exit_code != 0  # not there before the install
        for name, content in (library.sources or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(content)
            session.copy_to_runtime(str(tmp_path / name), name)
        if library.build is not None:
            built = session.execute_command(library.build)
            assert built.exit_code == 0, built.stdout + built.stderr
        if library.names:
            session.install(library.names)
        result = session.run(library.code)
        assert (result.exit_code, result.stdout) == (0, library.stdout), result.stderr


def test_unreachable_or_unknown_package_is_a_clear_installation_error(session: SandboxSession, case: Case) -> None:
    if case.unreachable is None:
        with pytest.raises(LibraryInstallationNotSupportedError, match="Maven or Gradle"):
            session.install(["com.google.code.gson:gson:2.10.1"])
        return
    name, named = case.unreachable
    with pytest.raises(LibraryInstallationError) as raised:
        session.install([name])
    assert not isinstance(raised.value, LibraryInstallationNotSupportedError)
    assert named in str(raised.value)  # the manager's own output, in the message
    assert raised.value.output is not None
    assert named in raised.value.output.stdout + raised.value.output.stderr


@pytest.mark.parametrize("name", ["--help", "-oAPT::Sandbox::User=root", "x; touch /tmp/pwned", "$(id)", "a b"])
def test_injected_names_never_reach_the_package_manager(session: SandboxSession, name: str) -> None:
    with pytest.raises(InvalidLibraryNameError):
        session.install([name])
    with pytest.raises(InvalidLibraryNameError):
        session.run("ignored", libraries=[name])
    assert session.execute_command("ls /tmp/pwned").exit_code != 0


@pytest.mark.requires("attach")
def test_attached_plain_container_of_the_languages_image(case: Case, backend: Harness, make_container: Any) -> None:
    container = make_container(default_image(case.lang))
    with backend.session(container_id=container.id, lang=case.lang) as session:
        assert session.run(case.hello).stdout == "hello, world\n"
        result = session.run(case.out_err_3)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert session.run(case.broken).exit_code != 0
        assert leftovers(session, case) == ""
    container.reload()
    assert container.status == "running"


def test_cpp_takes_compiler_flags_and_libraries_from_the_containers_environment(backend: Harness) -> None:
    flags = {"CXXFLAGS": "-DLLM_SANDBOX_ANSWER=42 -Wall", "LDLIBS": "-lm"}
    code = (
        "#include <cmath>\n#include <cstdio>\nint main(int argc, char **) {\n"
        '    std::printf("%d %.0f\\n", LLM_SANDBOX_ANSWER, std::pow(2.0, 9 + argc));\n}\n'
    )
    with backend.session(lang="cpp", runtime_configs={"environment": flags}) as session:
        result = session.run(code)
        assert (result.exit_code, result.stdout) == (0, "42 1024\n"), result.stderr
    with backend.session(lang="cpp") as session:
        result = session.run(code)  # without the flags: the compiler names the undefined macro
        assert result.exit_code != 0
        assert "main.cpp:4:" in result.stderr and "LLM_SANDBOX_ANSWER" in result.stderr


def test_identical_cpp_code_is_compiled_once_and_anything_else_again(backend: Harness) -> None:
    # A cached binary is linked into the run's folder: the program sees a second link to itself; a fresh build has
    # one. (The flags and the installed packages are part of the key; the source alone is varied here.)
    code = (
        "#include <cstdio>\n#include <sys/stat.h>\nint main() {\n    struct stat s;\n"
        '    stat("/proc/self/exe", &s);\n    std::printf("%s %lu\\n", "VERSION", (unsigned long) s.st_nlink);\n}\n'
    )
    with backend.session(lang="cpp") as session:
        assert session.run(code.replace("VERSION", "one")).stdout == "one 1\n"
        assert session.run(code.replace("VERSION", "one")).stdout == "one 2\n"  # no compiler: the cached binary
        assert session.run(code.replace("VERSION", "two")).stdout == "two 1\n"
        broken = "int main() { return undefined_name; }\n"
        for _ in range(2):  # a compile error is never cached: the compiler answers each time
            result = session.run(broken)
            assert result.exit_code != 0 and "undefined_name" in result.stderr
        assert session.execute_command("ls /tmp/.llm-sandbox-cpp-cache | wc -l").stdout == "2\n"


def test_identical_standalone_go_code_is_built_once(backend: Harness) -> None:
    code = (
        'package main\n\nimport (\n\t"fmt"\n\t"os"\n\t"syscall"\n)\n\nfunc main() {\n'
        "\texe, _ := os.Executable()\n\tvar s syscall.Stat_t\n\tsyscall.Stat(exe, &s)\n"
        '\tfmt.Println("VERSION", s.Nlink)\n}\n'
    )
    with backend.session(lang="go") as session:
        assert session.run(code.replace("VERSION", "one")).stdout == "one 1\n"
        assert session.run(code.replace("VERSION", "one")).stdout == "one 2\n"  # the cached binary, linked
        assert session.run(code.replace("VERSION", "two")).stdout == "two 1\n"
        # In a module (a go.mod in the workdir) every run is built: its dependencies may change under it.
        session.execute_command("go mod init sandbox")
        assert session.run(code.replace("VERSION", "one")).stdout == "one 1\n"
        assert session.run(code.replace("VERSION", "one")).stdout == "one 1\n"


def test_r_repository_comes_from_llm_sandbox_r_repos(backend: Harness) -> None:
    repository = "https://cran.llm-sandbox.invalid"
    with (
        backend.session(lang="r", runtime_configs={"environment": {"LLM_SANDBOX_R_REPOS": repository}}) as session,
        pytest.raises(
            LibraryInstallationError, match=f"unable to access index for repository {repository}/src/contrib"
        ),
    ):
        session.install(["jsonlite"])
