"""Java: JDK 17 single-file source launch (``java Main.java``): compiled in memory and run in one JVM.

The launcher runs the first top-level class of the file, whatever its name (``public class Solution`` in
``Main.java`` is fine); that class must declare ``main``, as with any ``java File.java``. Jars in ``{workdir}/lib``
are on the class path of every run (``CLASSPATH``).

Runs do not wait for a JVM to start: the helper keeps a spare JVM waiting for the next run, started with the launcher
of ``llm_sandbox.languages.java_launcher`` (built into the default image), which compiles in memory as the JDK's
launcher does, with the same messages, exit statuses and stack traces, and keeps identical code compiled in a cache.
Where the image has no launcher, the run is the plain ``java Main.java``.

Libraries: there is nothing to install with. A Java user expects Maven coordinates resolved with their transitive
dependencies by Maven or Gradle; the image has neither (and here Maven Central is unreachable). Rather than a
resolver that silently skips transitive dependencies, ``install`` refuses and says how to add jars.
"""

from __future__ import annotations

import re

from llm_sandbox.languages import java_launcher
from llm_sandbox.languages.base import Language, Spare, debian_toolchain_recipe

# Maven coordinates (group:artifact[:version]): recognised so that the refusal explains itself.
MAVEN_COORDINATES = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_.+-]+)?")

# The default image, built FROM the common base by ``python -m llm_sandbox.images build java``, with the spare's
# launcher.
IMAGE_RECIPE = (
    debian_toolchain_recipe(
        "java",
        "OpenJDK (javac, java, single-file source launch)",
        "default-jdk-headless",
        "javac -version && java -version",
    )
    + java_launcher.image_steps()
)

LANGUAGE = Language(
    name="java",
    file_name="Main.java",
    run=("java", "{file}"),
    spare=Spare(("/bin/sh", "-c", java_launcher.SPARE_SCRIPT, "sh"), fd=java_launcher.HAND_FD),
    install=None,
    library_pattern=MAVEN_COORDINATES,
    library_hint="Maven coordinates 'group:artifact:version'",
    compile_error=re.compile(r"^error: compilation failed$", re.MULTILINE),
    image_recipe=IMAGE_RECIPE,
    environment={"CLASSPATH": "{workdir}/lib/*"},
    no_install_reason=(
        "Java dependencies need Maven or Gradle to resolve them (with their transitive dependencies), and the "
        "Java image has neither; copy the jars into the workdir's lib/ folder instead (for example with "
        "copy_to_runtime('dep.jar', '<workdir>/lib/dep.jar')): every jar there is on the class path of each run"
    ),
)
