"""``verbose=True``: the library's progress on the console, the only logging handler the library ever adds."""

from __future__ import annotations

import logging


def enable_console_logging() -> None:
    root = logging.getLogger("llm_sandbox")
    if not any(getattr(handler, "_llm_sandbox_console", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._llm_sandbox_console = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
