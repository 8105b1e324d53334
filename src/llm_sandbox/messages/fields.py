"""The common part of the host's typed messages: the link's errors, the raw reply, and the field checks
that turn a wrong or missing field into a ``GuestProtocolError``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_sandbox.errors import SandboxDiedError
from llm_sandbox.guest.protocol import Field, Result

# What a run may send back by default when it collects files.
DEFAULT_COLLECT_BUDGET = 16 * 1024 * 1024
# How many files a run may send back by default when it collects files.
DEFAULT_COLLECT_COUNT = 1000


class GuestLinkError(SandboxDiedError):
    """The guest helper stopped answering or its stream ended."""


class GuestProtocolError(GuestLinkError):
    """The guest's answer broke the protocol (an unknown frame, a wrong reply id, a field of the wrong type)."""


@dataclass
class Reply:
    """The guest's final answer to a request, with the decoded output and the collected files on the way;
    ``truncated``: the host dropped output past the request's limit (the guest did not stop at it)."""

    fields: dict[str, Any]
    stdout: str = ""
    stderr: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    truncated: bool = False

    @property
    def error(self) -> str | None:
        """The guest's account of why the request failed, or None."""
        value = self.fields.get(Result.ERROR)
        return None if value is None else str(value)


# Field checks -----------------------------------------------------------------------------------------------------


def _get(fields: Mapping[str, Any], name: str) -> Any:
    if name not in fields:
        raise GuestProtocolError(f"the guest's message has no {name!r} field")
    return fields[name]


def _wrong(name: str, expected: str, value: Any) -> GuestProtocolError:
    return GuestProtocolError(f"the guest's message has {name!r} = {value!r}, not {expected}")


def _int(fields: Mapping[str, Any], name: str) -> int:
    value = _get(fields, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(name, "an integer", value)
    return value


def _optional_int(fields: Mapping[str, Any], name: str) -> int | None:
    return None if _get(fields, name) is None else _int(fields, name)


def _float(fields: Mapping[str, Any], name: str) -> float:
    value = _get(fields, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(name, "a number", value)
    return float(value)


def _optional_float(fields: Mapping[str, Any], name: str) -> float | None:
    return None if _get(fields, name) is None else _float(fields, name)


def _bool(fields: Mapping[str, Any], name: str) -> bool:
    value = _get(fields, name)
    if not isinstance(value, bool):
        raise _wrong(name, "true or false", value)
    return value


def _str(fields: Mapping[str, Any], name: str) -> str:
    value = _get(fields, name)
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def _optional_str(fields: Mapping[str, Any], name: str) -> str | None:
    return None if _get(fields, name) is None else _str(fields, name)


def _bytes(fields: Mapping[str, Any], name: str) -> bytes:
    value = _get(fields, name)
    if not isinstance(value, bytes):
        raise _wrong(name, "bytes", value)
    return value


def _strings(fields: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _get(fields, name)
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _wrong(name, "a list of strings", value)
    return tuple(value)


def _string_map(fields: Mapping[str, Any], name: str) -> dict[str, str]:
    value = _get(fields, name)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _wrong(name, "a mapping of strings to strings", value)
    return dict(value)


def _one_of(fields: Mapping[str, Any], name: str, allowed: Sequence[str]) -> str:
    value = _str(fields, name)
    if value not in allowed:
        raise _wrong(name, "one of " + ", ".join(allowed), value)
    return value


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong(name, "a mapping", value)
    return value


def _expect_op(fields: Mapping[str, Any], op: str) -> None:
    if _get(fields, Field.OP) != op:
        raise _wrong(Field.OP, repr(op), fields[Field.OP])
