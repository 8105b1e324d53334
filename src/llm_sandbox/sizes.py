"""Sizes as callers write them: a number of bytes, or the engines' short form ("512m", "2g")."""

from __future__ import annotations

import re
from typing import Any

from llm_sandbox.errors import ValidationError

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE = re.compile(r"^\s*(\d+)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(name: str, value: Any) -> int:
    """``value`` in bytes: a positive whole number, or a string such as "512m" or "2g" (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return value
    elif isinstance(value, str):
        match = SIZE.match(value)
        if match and int(match.group(1)) > 0:
            return int(match.group(1)) * UNITS[match.group(2).lower()]
    raise ValidationError(f"{name} must be a positive number of bytes or a size such as '512m' or '2g', not {value!r}")
