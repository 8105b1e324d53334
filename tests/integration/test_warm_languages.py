"""A run starts from a clean state whatever the run before it did, in each of the seven languages, on Docker.

Runs may be answered by a process started ahead of them (a spare interpreter or JVM) and compiled programs may come
from caches (built programs, precompiled headers, Go's build cache). None of that may show: right after a run that
crashed, exited non-zero, left a thread or a background process, or timed out, a probe run reports exactly what the
language's plain command reports on the same source in the same sandbox (stdout, stderr, exit code; the run's
temporary folder, which differs between the two, is masked). One session per language serves the whole module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import SandboxSession, SandboxTimeoutError
from llm_sandbox.languages import cpp, go
from llm_sandbox.languages.registry import get_language

pytestmark = pytest.mark.backends("docker")

SPOILERS = ("crash", "non_zero_exit", "thread", "background_process", "timeout")
SPOILER_TIMEOUT_S = 3
# The run's temporary folder (where the code file lives), and the plain command's own: the one difference allowed.
RUN_FOLDER = re.compile(r"/tmp/llm-sandbox-run-[0-9a-f]+")
GO_MAIN = "package main\n\nimport (\n{imports}\n)\n\nfunc main() {{\n{body}\n}}\n"


@dataclass(frozen=True)
class Case:
    lang: str
    plain: str  # a shell command run as "sh -c PLAIN sh FOLDER" with the code file in FOLDER
    spoilers: dict[str, str]  # what the run before the probe does (a language without threads has no "thread")
    probe: str  # prints what a leftover of an earlier run would change, writes "err" to stderr, exits with 3


JAVA_SPOILED = '        System.setProperty("spoiled", "1");\n'


def java(body: str) -> str:
    return f"public class Main {{\n    public static void main(String[] args) throws Exception {{\n{body}\n    }}\n}}\n"


CASES = {
    case.lang: case
    for case in [
        Case(
            "python",
            'exec python3 -u "$1/main.py"',
            {
                "crash": 'spoiled = 1\nraise RuntimeError("boom")',
                "non_zero_exit": "import sys\nspoiled = 1\nsys.exit(7)",
                "thread": "import threading, time\nspoiled = 1\n"
                "threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\nprint('left')",
                "background_process": "import subprocess\nspoiled = 1\n"
                "subprocess.Popen(['sleep', '1000'], start_new_session=True)\nprint('left')",
                "timeout": "spoiled = 1\nwhile True:\n    pass",
            },
            "import os, sys, threading\n"
            "print('spoiled' in globals(), threading.active_count(), os.getcwd(), sys.argv, __name__, sys.path[0])\n"
            "print('err', file=sys.stderr)\nsys.exit(3)\n",
        ),
        Case(
            "javascript",
            'exec node "$1/main.js"',
            {
                "crash": 'globalThis.spoiled = 1;\nthrow new Error("boom");',
                "non_zero_exit": "globalThis.spoiled = 1;\nprocess.exit(7);",
                "thread": "const { Worker } = require('worker_threads');\nglobalThis.spoiled = 1;\n"
                "new Worker('setInterval(() => {}, 1000)', { eval: true }).unref();\nconsole.log('left');",
                "background_process": "globalThis.spoiled = 1;\n"
                "require('child_process').spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' }).unref();\n"
                "console.log('left');",
                "timeout": "globalThis.spoiled = 1;\nfor (;;) {}",
            },
            "console.log(typeof spoiled, process.cwd(), process.argv, require.main === module, __filename);\n"
            "console.error('err');\nprocess.exitCode = 3;\n",
        ),
        Case(
            "java",
            'exec java "$1/Main.java"',
            {
                "crash": java(JAVA_SPOILED + '        throw new RuntimeException("boom");'),
                "non_zero_exit": java(JAVA_SPOILED + "        System.exit(7);"),
                "thread": java(
                    JAVA_SPOILED + "        Thread t = new Thread(() -> { try { Thread.sleep(1000000); } "
                    "catch (InterruptedException e) { } });\n"
                    '        t.setDaemon(true);\n        t.start();\n        System.out.println("left");'
                ),
                "background_process": java(
                    JAVA_SPOILED + '        new ProcessBuilder("sleep", "1000").start();\n'
                    '        System.out.println("left");'
                ),
                "timeout": java(JAVA_SPOILED + "        while (true) { }"),
            },
            java(
                '        System.out.println(System.getProperty("spoiled") + " " + System.getProperty("user.dir") + " "'
                ' + args.length);\n        System.err.println("err");\n        System.exit(3);'
            ),
        ),
        Case(
            "cpp",
            f'g++ {cpp.COMPILE_FLAGS} -o "$1/main" "$1/main.cpp" && exec "$1/main"',
            {
                "crash": "#include <cstdlib>\nint main() { std::abort(); }",
                "non_zero_exit": "int main() { return 7; }",
                "thread": "#include <chrono>\n#include <iostream>\n#include <thread>\n"
                "int main() { std::thread([] { std::this_thread::sleep_for(std::chrono::hours(1)); }).detach();\n"
                '    std::cout << "left" << std::endl; }',
                "background_process": "#include <cstdlib>\n#include <iostream>\n"
                'int main() { std::system("sleep 1000 &"); std::cout << "left" << std::endl; }',
                "timeout": "int main() { volatile unsigned n = 0; for (;;) { n = n + 1; } }",
            },
            "#include <iostream>\n#include <unistd.h>\n"
            'int main(int argc, char **) { char here[4096]; std::cout << getcwd(here, sizeof here) << " " << argc'
            ' << std::endl;\n    std::cerr << "err" << std::endl; return 3; }\n',
        ),
        Case(
            "go",
            'go build -o "$1/main" "$1/main.go" && exec "$1/main"',
            {
                "crash": GO_MAIN.format(imports="", body='\tpanic("boom")'),
                "non_zero_exit": GO_MAIN.format(imports='\t"os"', body="\tos.Exit(7)"),
                "thread": GO_MAIN.format(
                    imports='\t"fmt"\n\t"time"', body='\tgo func() { time.Sleep(time.Hour) }()\n\tfmt.Println("left")'
                ),
                "background_process": GO_MAIN.format(
                    imports='\t"fmt"\n\t"os/exec"',
                    body='\t_ = exec.Command("sleep", "1000").Start()\n\tfmt.Println("left")',
                ),
                "timeout": GO_MAIN.format(imports="", body="\tfor {\n\t}"),
            },
            GO_MAIN.format(
                imports='\t"fmt"\n\t"os"',
                body='\twd, _ := os.Getwd()\n\tfmt.Println(wd, len(os.Args))\n\tfmt.Fprintln(os.Stderr, "err")\n'
                "\tos.Exit(3)",
            ),
        ),
        Case(
            "ruby",
            'exec ruby "$1/main.rb"',
            {
                "crash": '$spoiled = 1\nraise "boom"',
                "non_zero_exit": "$spoiled = 1\nexit 7",
                "thread": '$spoiled = 1\nThread.new { sleep 1000 }\nputs "left"',
                "background_process": '$spoiled = 1\nProcess.detach(spawn("sleep 1000"))\nputs "left"',
                "timeout": "$spoiled = 1\nloop {}",
            },
            'puts "#{$spoiled.inspect} #{Thread.list.size} #{Dir.pwd} #{$PROGRAM_NAME} #{__FILE__} #{ARGV.inspect}"\n'
            'warn "err"\nexit 3\n',
        ),
        Case(
            "r",
            'exec Rscript "$1/main.R"',
            {  # R has no threads of its own
                "crash": 'spoiled <- 1\nstop("boom")',
                "non_zero_exit": "spoiled <- 1\nquit(status = 7)",
                "background_process": 'spoiled <- 1\nsystem("sleep 1000", wait = FALSE)\ncat("left\\n")',
                "timeout": "spoiled <- 1\nrepeat {}",
            },
            'cat(exists("spoiled"), getwd(), search(), commandArgs(trailingOnly = TRUE), "\\n")\n'
            'message("err")\nquit(status = 3)\n',
        ),
    ]
}
PAIRS = [(lang, spoiler) for lang, case in CASES.items() for spoiler in SPOILERS if spoiler in case.spoilers]


class Sessions(dict[str, SandboxSession]):
    """One session per language, opened when a test first asks for it."""

    def __init__(self, backend: Harness) -> None:
        super().__init__()
        self.backend = backend

    def __missing__(self, lang: str) -> SandboxSession:
        session = self.backend.session(lang=lang)
        session.open()
        self[lang] = session
        return session


@pytest.fixture(scope="module")
def sessions(backend: Harness) -> Iterator[Sessions]:
    opened = Sessions(backend)
    try:
        yield opened
    finally:
        for session in opened.values():
            session.close()


def masked(result: Any) -> tuple[str, str, int]:
    return (
        RUN_FOLDER.sub("<run folder>", result.stdout),
        RUN_FOLDER.sub("<run folder>", result.stderr),
        result.exit_code,
    )


def plain(session: SandboxSession, lang: str, code: str) -> Any:
    """The language's plain command on ``code``, written to a file in the command's own temporary folder."""
    file_name = get_language(lang).file_name
    script = f'printf "%s" "$2" > "$1/{file_name}" || exit; set -- "$1"; {CASES[lang].plain}'
    return session.execute_command(["/bin/sh", "-c", script, "sh", "{tmp}", code])


def spoil(session: SandboxSession, lang: str, spoiler: str) -> None:
    code = CASES[lang].spoilers[spoiler]
    if spoiler == "timeout":
        with pytest.raises(SandboxTimeoutError):
            session.run(code, timeout=SPOILER_TIMEOUT_S)
        return
    result = session.run(code)
    if spoiler in {"crash", "non_zero_exit"}:
        assert result.exit_code != 0, (result.stdout, result.stderr)
    else:
        assert (result.exit_code, result.stdout) == (0, "left\n"), result.stderr


@pytest.mark.parametrize(("lang", "spoiler"), PAIRS, ids=[f"{lang}-{spoiler}" for lang, spoiler in PAIRS])
def test_a_run_after_a_spoiled_one_reports_what_the_plain_command_does(
    sessions: dict[str, SandboxSession], lang: str, spoiler: str
) -> None:
    session = sessions[lang]
    spoil(session, lang, spoiler)
    probe = CASES[lang].probe
    ran = masked(session.run(probe))
    assert ran[2] == 3 and ran[1].strip() == "err", ran  # the probe itself ran
    assert ran == masked(plain(session, lang, probe))


# C++'s precompiled headers and Go's build cache ---------------------------------------------------------------------


def test_cpp_precompiled_headers_are_valid_for_exactly_the_runs_flags(sessions: dict[str, SandboxSession]) -> None:
    session = sessions["cpp"]
    for header in cpp.PCH_HEADERS:
        script = (
            f'printf "#include <%s>\\nint main() {{}}\\n" "$1" | g++ {cpp.COMPILE_FLAGS} -isystem {cpp.PCH_DIR} '
            "-Winvalid-pch -Werror -H -x c++ -o /dev/null -"
        )
        result = session.execute_command(["/bin/sh", "-c", script, "sh", header])
        assert result.exit_code == 0, result.stderr
        # -H lists the headers read; "!" marks a precompiled header used (an invalid one fails under -Werror).
        assert result.stderr.splitlines()[0] == f"! {cpp.PCH_DIR}/{header}.gch"
    assert f"-isystem {cpp.PCH_DIR}" in cpp.COMPILE_AND_RUN
    assert f"g++ {cpp.COMPILE_FLAGS} " in cpp.COMPILE_AND_RUN


CPP_CHANGED = (
    "#include <bits/stdc++.h>\nint main() {{ std::vector<int> v{{3, 1, 2}}; std::sort(v.begin(), v.end());\n"
    '    std::cout << "{tag} " << v[0] << v[1] << v[2] << std::endl; }}\n'
)
CPP_BROKEN = "#include <iostream>\n#include <vector>\nint main() { std::vector<int> v; std::cout << v; }\n"
# A warning whose note points into the headers (deprecated since C++11, still declared).
CPP_WARNING = (
    "#include <bits/stdc++.h>\n"
    "int main() { auto add = std::bind1st(std::plus<int>(), 1); std::cout << add(2) << std::endl; }\n"
)


def test_cpp_changed_programs_compile_and_diagnostics_read_as_a_plain_compile(
    sessions: dict[str, SandboxSession],
) -> None:
    session = sessions["cpp"]
    for tag in ("first", "second"):
        result = session.run(CPP_CHANGED.format(tag=tag))
        assert (result.stdout, result.stderr, result.exit_code) == (f"{tag} 123\n", "", 0)
    broken = session.run(CPP_BROKEN)
    assert broken.exit_code == 1
    assert re.search(r"main\.cpp:3:\d+: error: no match for", broken.stderr)
    # A compile with the precompiled header would lose this line of the note's include chain.
    assert re.search(r"^ +from /tmp/llm-sandbox-run-[0-9a-f]+/main\.cpp:1:$", broken.stderr, re.MULTILINE)
    assert masked(broken) == masked(plain(session, "cpp", CPP_BROKEN))
    warned = session.run(CPP_WARNING)
    assert (warned.stdout, warned.exit_code) == ("3\n", 0)
    assert "is deprecated" in warned.stderr
    assert re.search(r"^ +from /tmp/llm-sandbox-run-[0-9a-f]+/main\.cpp:1:$", warned.stderr, re.MULTILINE)
    assert masked(warned) == masked(plain(session, "cpp", CPP_WARNING))


GO_CHANGED = GO_MAIN.format(imports='\t"fmt"\n\t"strings"', body='\tfmt.Println(strings.ToUpper("{tag}"))')


def test_go_build_cache_starts_from_the_images_and_changed_programs_build(
    sessions: dict[str, SandboxSession],
) -> None:
    session = sessions["go"]
    for tag in ("first", "second"):
        result = session.run(GO_CHANGED.replace("{tag}", tag))
        assert (result.stdout, result.stderr, result.exit_code) == (f"{tag.upper()}\n", "", 0)
    # Every entry of the image's cache is in the code's own, which the code's user can write.
    script = (
        f'cd {go.GOCACHE_SEED} && find . -type f | sort > "$1/seed" && cd "$GOCACHE" && test -w . '
        '&& find . -type f | sort > "$1/own" && comm -23 "$1/seed" "$1/own" | wc -l && wc -l < "$1/seed"'
    )
    counted = session.execute_command(["/bin/sh", "-c", script, "sh", "{tmp}"])
    assert counted.exit_code == 0, counted.stderr
    missing, seeded = (int(line) for line in counted.stdout.split())
    assert missing == 0
    assert seeded > 100  # the standard library's entries, not an empty folder
    broken = session.run(GO_MAIN.format(imports="", body="\tx := 1"))
    assert broken.exit_code == 2  # go build's exit code for a compile error, as before
    assert re.search(r"main\.go:\d+:\d+: x declared but not used", broken.stderr)
