"""Interactive sessions: cells of one long-lived interpreter per sandbox (Python, JavaScript, Ruby, R).

``session.py`` is the public session; ``kernel.py`` drives one interpreter through the sandbox's helper;
``kernel_types.py`` lists the kernel program of each language (the programs themselves, which run inside the
sandbox, are in ``programs/``). A cell's figures are decoded by the artifact capture's ``plot_output``.
"""

from llm_sandbox.interactive.kernel_types import KernelType
from llm_sandbox.interactive.session import CellResult, InteractiveSandboxSession
from llm_sandbox.interactive.settings import InteractiveSettings

__all__ = ["CellResult", "InteractiveSandboxSession", "InteractiveSettings", "KernelType"]
