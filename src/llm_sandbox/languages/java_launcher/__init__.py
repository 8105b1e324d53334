"""Java's spare JVM: a launcher (the Java sources beside this module) that starts ahead of the next run and then
runs ``java File.java`` in it, in memory, with the JDK's own behaviour (see ``SpareLauncher.java``).

The Java image build compiles the launcher, records the JDK launcher's stack frames for it (``FrameProbe.java``)
and a class data sharing archive of a warmed-up launcher, which cuts the spare's own start. The sources reach the
build through the recipe text itself (the builder's context is empty), base64-encoded, so any edit of them makes the
image stale.

The spare's argv is a small shell script: where the launcher is missing (an attached container, a user's image) or
``java`` is no longer the JDK it was built for, it waits for the file's path and then runs the plain ``java FILE``,
so such a run is exactly the cold one.
"""

from __future__ import annotations

import base64
from importlib import resources

#: Where the Java image keeps the launcher: root's, read-only to the code.
LAUNCHER_HOME = "/opt/llm-sandbox/java"
LAUNCHER_JAR = f"{LAUNCHER_HOME}/launcher.jar"
LAUNCHER_ARCHIVE = f"{LAUNCHER_HOME}/launcher.jsa"
LAUNCHER_FRAMES = f"{LAUNCHER_HOME}/launcher-frames"
#: A link to the java binary the archive was made with: the spare runs only under that JDK.
LAUNCHER_JAVA = f"{LAUNCHER_HOME}/java"
MAIN_CLASS = "llmsandbox.launcher.SpareLauncher"
PROBE = "FrameProbe.java"
#: The descriptor the spare reads the code file's path on: stdin, which is then empty (at its end) for the program.
#: (Another descriptor would leave stdin /dev/null, but Java can read an inherited descriptor only as stdin: reopening
#: it through /proc is refused, the pipe being the helper's.)
HAND_FD = 0

#: The spare JVM's options and main class (after the java binary), beyond the plain run's: the archive, with class
#: data sharing's own complaints off (a stale archive only costs time, and its warning would land in the program's
#: output), the frames record and the launcher.
JVM_OPTIONS = (
    "-Xshare:auto",
    f"-XX:SharedArchiveFile={LAUNCHER_ARCHIVE}",
    "-Xlog:cds*=off",
    "-Xlog:class+path=off",
    f"-Dllmsandbox.launcher.frames={LAUNCHER_FRAMES}",
    "-cp",
    LAUNCHER_JAR,
    MAIN_CLASS,
)

# The PATH search is the shell's own loop, so that the spare's start forks nothing: a spare thrown away while it
# starts leaves no child of its own behind.
SPARE_SCRIPT = (
    "set -f; IFS=:\n"
    "for dir in $PATH; do\n"
    '  java="${dir:-.}/java"\n'
    '  if [ -f "$java" ] && [ -x "$java" ]; then\n'
    f'    [ "$java" -ef {LAUNCHER_JAVA} ] && [ -r {LAUNCHER_ARCHIVE} ] && [ -r {LAUNCHER_FRAMES} ] && '
    'exec "$java" ' + " ".join(JVM_OPTIONS) + "\n"
    "    break\n"
    "  fi\n"
    "done\n"
    # No launcher for this java: the plain run, once the path has come.
    "IFS= read -r file || exit 0\n"
    'exec java "$file" </dev/null\n'
)


def launcher_sources() -> dict[str, str]:
    """The launcher's Java sources by file name, the probe included."""
    folder = resources.files(__name__)
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.name.endswith(".java")
    }


def image_steps() -> str:
    """The Dockerfile lines that build the launcher into a Java image (after the JDK's install)."""
    sources = launcher_sources()
    lines = [
        f"RUN set -e; mkdir -p {LAUNCHER_HOME}/src; cd {LAUNCHER_HOME}/src; \\",
        *(
            f"    echo {base64.b64encode(text.encode('utf-8')).decode('ascii')} | base64 -d > {name}; \\"
            for name, text in sources.items()
        ),
        f"    javac -d ../classes $(ls *.java | grep -vx {PROBE}); \\",
        "    cd ..; jar --create --file launcher.jar -C classes .; rm -rf classes; \\",
        f'    ln -s "$(readlink -f "$(command -v java)")" {LAUNCHER_JAVA}; \\',
        f"    java src/{PROBE} > {LAUNCHER_FRAMES}; test -s {LAUNCHER_FRAMES}; \\",
        f"    java -Xlog:cds*=off -XX:ArchiveClassesAtExit={LAUNCHER_ARCHIVE} \\",
        f"        -cp {LAUNCHER_JAR} {MAIN_CLASS} --prepare; \\",
        f"    test -s {LAUNCHER_ARCHIVE}; \\",
        "    rm -rf /tmp/hsperfdata_root",  # the build's JVMs' performance data: nothing a sandbox should find
    ]
    return "\n".join(lines) + "\n"


__all__ = ["HAND_FD", "JVM_OPTIONS", "LAUNCHER_HOME", "SPARE_SCRIPT", "image_steps", "launcher_sources"]
