"""Java's spare JVM on Docker: the launcher against the JDK's own ``java Main.java`` in the same container (stdout,
stderr and exit status byte for byte), and runs through the helper: they use the spare, and a run after one that
failed, exited, left a thread or timed out starts clean."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from harness import Harness
from llm_sandbox import SandboxSession, SandboxTimeoutError
from llm_sandbox.languages.java_launcher import JVM_OPTIONS

pytestmark = pytest.mark.backends("docker")

WORKDIR = "/sandbox"
CLASSPATH = f"{WORKDIR}/lib/*"
SPARE_MARK = "llmsandbox.launcher.SpareLauncher"

GREETER = 'package greet;\npublic class Greeter {\n    public static String hello() { return "%s"; }\n}\n'
# Builds lib/greet.jar from its source ("$1": GREETER with the greeting) in the workdir, with the image's JDK.
BUILD_JAR = (
    'set -e; mkdir -p /tmp/greet-src/greet /tmp/greet-classes lib; printf %s "$1" > /tmp/greet-src/greet/Greeter.java; '
    "javac -d /tmp/greet-classes /tmp/greet-src/greet/Greeter.java; jar cf lib/greet.jar -C /tmp/greet-classes .; "
    "rm -rf /tmp/greet-src /tmp/greet-classes"
)

CASES = {
    "hello": 'public class Main {\n    public static void main(String[] args) {\n        System.out.println("hello");\n'
    "    }\n}\n",
    "first class runs, whatever its name": "public class Solution {\n    public static void main(String[] args) {\n"
    '        System.out.println(Helper.name() + " " + args.length);\n    }\n}\n'
    'class Helper {\n    static String name() { return "helper"; }\n}\n',
    "first class has no main": "class Helper {}\npublic class Main {\n    public static void main(String[] a) {}\n}\n",
    "compile error": 'public class Main {\n    public static void main(String[] args) {\n        int x = "s";\n'
    "        undefined();\n    }\n}\n",
    "no class": "// nothing here\n",
    "main not static": "public class Main {\n    public void main(String[] args) {}\n}\n",
    "exit 3": 'public class Main {\n    public static void main(String[] args) {\n        System.out.println("out");\n'
    '        System.err.print("err");\n        System.out.print("partial");\n        System.exit(3);\n    }\n}\n',
    "uncaught with cause and suppressed": "public class Main {\n    public static void main(String[] args) {\n"
    '        System.out.println("before");\n'
    '        Exception inner = new RuntimeException("outer", new IllegalStateException("inner"));\n'
    '        inner.addSuppressed(new Exception("suppressed"));\n        fail(inner);\n    }\n'
    "    static void fail(Exception e) {\n        throw new RuntimeException(e);\n    }\n}\n",
    "static initialiser fails": 'public class Main {\n    static int x = 1 / Integer.parseInt("0");\n'
    "    public static void main(String[] args) {}\n}\n",
    "thread prints after main returns": "public class Main {\n    public static void main(String[] args) {\n"
    "        new Thread(() -> {\n            try { Thread.sleep(300); } catch (InterruptedException e) {}\n"
    '            System.out.println("thread, after main");\n        }).start();\n'
    '        System.out.println("main returns");\n    }\n}\n',
    "stdin is empty": "import java.io.*;\npublic class Main {\n"
    "    public static void main(String[] args) throws Exception {\n"
    "        System.out.println(System.in.read());\n"
    "        System.out.println(new BufferedReader(new InputStreamReader(System.in)).readLine());\n    }\n}\n",
    "deprecation note": "import java.util.*;\npublic class Main {\n    public static void main(String[] args) {\n"
    "        List raw = new ArrayList();\n        raw.add(new Integer(5));\n        System.out.println(raw);\n"
    "    }\n}\n",
    "jar on the class path": "public class Main {\n    public static void main(String[] args) throws Exception {\n"
    "        System.out.println(greet.Greeter.hello());\n"
    '        System.out.println(System.getProperty("java.class.path"));\n'
    '        System.out.println(System.getProperty("jdk.launcher.sourcefile"));\n'
    '        System.out.println(Thread.currentThread().getContextClassLoader().loadClass("greet.Greeter")'
    ".getSimpleName());\n"
    "        System.out.println(Main.class.getProtectionDomain().getCodeSource().getLocation());\n"
    "    }\n}\n",
}


@pytest.fixture(scope="module")
def java(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="java") as session:
        built = session.execute_command(["sh", "-c", BUILD_JAR, "sh", GREETER % "hi from the jar"], workdir=WORKDIR)
        assert built.exit_code == 0, built.stderr
        yield session


def both_ways(session: SandboxSession, folder: str, source: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """The program at ``folder/Main.java`` run by ``java Main.java`` and by the launcher (its JVM started directly,
    never the script's fallback), each with stdin from /dev/null, the launcher handed the path on stdin."""
    path = f"{folder}/Main.java"
    written = session.execute_command(
        ["sh", "-c", 'mkdir -p "$1" && printf %s "$2" > "$1/Main.java"', "sh", folder, source]
    )
    assert written.exit_code == 0, written.stderr
    environment = f"cd {WORKDIR} && CLASSPATH={shlex.quote(CLASSPATH)} "
    plain = session.execute_command(["sh", "-c", environment + f"exec java {path} </dev/null"], timeout=60)
    launcher = " ".join(shlex.quote(option) for option in JVM_OPTIONS)
    spare = session.execute_command(["sh", "-c", environment + f"echo {path} | exec java {launcher}"], timeout=60)
    return (
        (plain.exit_code, plain.stdout, plain.stderr),
        (spare.exit_code, spare.stdout, spare.stderr),
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_launcher_behaves_as_java_source_mode(java: SandboxSession, case: str) -> None:
    folder = "/tmp/compare-" + "".join(c if c.isalnum() else "-" for c in case)
    plain, spare = both_ways(java, folder, CASES[case])
    assert spare == plain
    assert "llmsandbox" not in spare[2]  # none of the launcher's own frames or names


def test_the_comparison_can_tell_the_two_apart(java: SandboxSession) -> None:
    """The launcher really ran in the comparisons: its command line differs from the plain run's."""
    source = (
        "import java.nio.file.*;\npublic class Main {\n    public static void main(String[] args) throws Exception {\n"
        '        System.out.println(new String(Files.readAllBytes(Paths.get("/proc/self/cmdline"))).contains("'
        + SPARE_MARK
        + '"));\n    }\n}\n'
    )
    plain, spare = both_ways(java, "/tmp/compare-command-line", source)
    assert plain[1] == "false\n" and spare[1] == "true\n"


COMMAND_LINE = (
    "import java.nio.file.*;\npublic class Main {\n    public static void main(String[] args) throws Exception {\n"
    '        String line = new String(Files.readAllBytes(Paths.get("/proc/self/cmdline")));\n'
    '        System.out.println(line.contains("' + SPARE_MARK + '") + " " + System.getProperty("left.by.last"));\n'
    "    }\n}\n"
)
LEAVE_AND = (
    "public class Main {\n    public static void main(String[] args) throws Exception {\n"
    '        System.setProperty("left.by.last", "yes");\n        %s\n    }\n}\n'
)


def test_runs_go_through_the_spare_jvm(java: SandboxSession) -> None:
    java.run(CASES["hello"])  # readies the spare
    result = java.run(COMMAND_LINE)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "true null\n", "")


@pytest.mark.parametrize(
    ("ending", "exit_code"),
    [
        ('throw new IllegalStateException("crash");', 1),
        ("System.exit(3);", 3),
        (
            "Thread t = new Thread(() -> { try { Thread.sleep(200); } catch (InterruptedException e) {} "
            'System.out.println("late"); }); t.start();',
            0,
        ),
    ],
    ids=["crashed", "exited non-zero", "left a thread"],
)
def test_a_run_after_another_starts_clean(java: SandboxSession, ending: str, exit_code: int) -> None:
    first = java.run(LEAVE_AND % ending)
    assert first.exit_code == exit_code
    after = java.run(COMMAND_LINE)
    assert (after.exit_code, after.stdout) == (0, "true null\n")


def test_a_run_after_a_timeout_starts_clean(java: SandboxSession) -> None:
    with pytest.raises(SandboxTimeoutError):
        java.run(LEAVE_AND % "while (true) {}", timeout=3)
    java.run(CASES["hello"])  # the timed-out run's spare went with it: this run readies the next
    after = java.run(COMMAND_LINE)
    assert (after.exit_code, after.stdout) == (0, "true null\n")


def test_identical_code_is_compiled_once_and_a_changed_jar_is_seen(java: SandboxSession) -> None:
    program = CASES["jar on the class path"]
    java.run(program)
    first = java.run(program)
    assert first.stdout.startswith("hi from the jar\n")
    cached = java.execute_command("ls /tmp/.llm-sandbox-java-cache")
    assert cached.exit_code == 0 and cached.stdout.strip()
    rebuilt = java.execute_command(["sh", "-c", BUILD_JAR, "sh", GREETER % "the jar, rebuilt"], workdir=WORKDIR)
    assert rebuilt.exit_code == 0, rebuilt.stderr
    java.run(CASES["hello"])
    again = java.run(program)
    assert again.stdout.startswith("the jar, rebuilt\n")
