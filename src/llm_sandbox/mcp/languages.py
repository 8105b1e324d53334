"""What the server tells a client about each language (``get_language_details``, ``sandbox://languages``): the
fields the reference's server gives (version, package manager, preinstalled libraries, use cases, whether plots
come back, examples) describing this library's default images, plus whether a session keeps the interpreter's
state between calls. The list of languages itself comes from the language registry."""

from __future__ import annotations

from typing import Any

from llm_sandbox.images import default_image
from llm_sandbox.interactive.kernel_types import KERNELS
from llm_sandbox.languages.registry import LANGUAGES

#: Languages whose runs bring their figures back (the artifact capture's).
PLOTTING_LANGUAGES = frozenset({"python", "r"})

# Facts of the default images (Debian 12 packages), per language: version, package manager, what is preinstalled,
# what it is for, and a first program.
_FACTS: dict[str, dict[str, Any]] = {
    "python": {
        "version": "3.11",
        "package_manager": "pip",
        "preinstalled_libraries": ["matplotlib", "numpy", "seaborn", "plotly", "pandas", "ipython"],
        "use_cases": ["Data analysis", "Plots", "Automation", "Scripting"],
        "hello": "print('Hello, World!')",
    },
    "javascript": {
        "version": "Node.js 18",
        "package_manager": "npm",
        "preinstalled_libraries": [],
        "use_cases": ["Scripting", "JSON processing", "Algorithms"],
        "hello": "console.log('Hello, World!');",
    },
    "java": {
        "version": "OpenJDK 17",
        "package_manager": "none (jars in the workdir's lib/ folder are on the class path)",
        "preinstalled_libraries": [],
        "use_cases": ["Algorithms", "Object-oriented programs"],
        "hello": (
            "public class Main {\n"
            "    public static void main(String[] args) {\n"
            '        System.out.println("Hello, World!");\n'
            "    }\n"
            "}"
        ),
    },
    "cpp": {
        "version": "GCC 12, C++17",
        "package_manager": "apt (Debian packages)",
        "preinstalled_libraries": ["STL"],
        "use_cases": ["Algorithms", "Performance-critical code"],
        "hello": '#include <iostream>\nint main() {\n    std::cout << "Hello, World!" << std::endl;\n}',
    },
    "go": {
        "version": "1.19",
        "package_manager": "go modules",
        "preinstalled_libraries": [],
        "use_cases": ["Concurrency", "Command-line tools", "Network programming"],
        "hello": 'package main\n\nimport "fmt"\n\nfunc main() {\n    fmt.Println("Hello, World!")\n}',
    },
    "ruby": {
        "version": "3.1",
        "package_manager": "gem",
        "preinstalled_libraries": [],
        "use_cases": ["Scripting", "Text processing"],
        "hello": 'puts "Hello, World!"',
    },
    "r": {
        "version": "4.2",
        "package_manager": "CRAN (install.packages)",
        "preinstalled_libraries": ["ggplot2", "lattice"],
        "use_cases": ["Statistics", "Plots", "Data analysis"],
        "hello": 'print("Hello, World!")\nsummary(c(1, 2, 3, 4, 5))',
    },
}


def language_details(name: str) -> dict[str, Any]:
    """The details of the registered language ``name`` (already normalised)."""
    facts = _FACTS.get(name, {})
    details: dict[str, Any] = {
        "name": name,
        "version": facts.get("version", "the image's"),
        "package_manager": facts.get("package_manager", "unknown"),
        "preinstalled_libraries": list(facts.get("preinstalled_libraries", [])),
        "use_cases": list(facts.get("use_cases", [])),
        "visualization_support": name in PLOTTING_LANGUAGES,
        "stateful_sessions": name in KERNELS,
        "image": default_image(name),
        "examples": [],
    }
    if "hello" in facts:
        details["examples"].append(
            {"title": "Hello World", "description": f"A first {name} program", "code": facts["hello"]}
        )
    return details


def all_language_details() -> dict[str, dict[str, Any]]:
    return {name: language_details(name) for name in LANGUAGES}
