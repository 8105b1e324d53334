"""Typed replies of the guest: each read from its JSON (``from_fields``), every field checked for its type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llm_sandbox.guest import protocol
from llm_sandbox.guest.protocol import Ended, Result
from llm_sandbox.messages.fields import (
    Reply,
    _bool,
    _float,
    _int,
    _one_of,
    _optional_int,
    _optional_str,
    _str,
    _strings,
)

# Replies ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfoReply:
    """The guest's process and user, the interpreter for code, and what it made of the capabilities it was
    given (``kill_all`` is never on for root); ``separated``: it runs as root and every process of the code under
    the code's own uid; ``can_confine``: the library's seccomp filter can be installed there."""

    pid: int
    uid: int
    python: str
    workdir_writable: bool
    subreaper: bool
    kill_all: bool
    own_cgroup: bool
    separated: bool = False
    can_confine: bool = False

    def to_message(self) -> dict[str, Any]:
        return protocol.info_reply(
            self.pid,
            self.uid,
            self.python,
            self.workdir_writable,
            self.subreaper,
            self.kill_all,
            self.own_cgroup,
            self.separated,
            self.can_confine,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> InfoReply:
        return cls(
            pid=_int(fields, Result.PID),
            uid=_int(fields, Result.UID),
            python=_str(fields, Result.PYTHON),
            workdir_writable=_bool(fields, Result.WORKDIR_WRITABLE),
            subreaper=_bool(fields, Result.SUBREAPER),
            kill_all=_bool(fields, Result.KILL_ALL),
            own_cgroup=_bool(fields, Result.OWN_CGROUP),
            separated=_bool(fields, Result.SEPARATED),
            can_confine=_bool(fields, Result.CAN_CONFINE),
        )


@dataclass(frozen=True)
class ExecReply:
    """How a run ended, what it printed, and the files it collected (by name, in the order they came)."""

    exit_code: int
    duration_s: float
    timed_out: bool = False
    truncated: bool = False
    limits: tuple[str, ...] = ()  # the sandbox limits (``protocol.Limit``) the run hit
    skipped: tuple[str, ...] = ()  # matching files left out: over the collect budget
    cancelled: bool = False  # the host cancelled the run (``Frame.CANCEL``): its processes were killed
    stdout: str = ""
    stderr: str = ""
    files: Mapping[str, bytes] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        return protocol.exec_reply(
            self.exit_code, self.duration_s, self.timed_out, self.truncated, self.limits, self.skipped, self.cancelled
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ExecReply:
        return cls(
            exit_code=_int(fields, Result.EXIT_CODE),
            duration_s=_float(fields, Result.DURATION_S),
            timed_out=_bool(fields, Result.TIMED_OUT),
            truncated=_bool(fields, Result.TRUNCATED),
            limits=_strings(fields, Result.LIMITS),
            skipped=_strings(fields, Result.SKIPPED),
            cancelled=_bool(fields, Result.CANCELLED),
        )

    @classmethod
    def from_reply(cls, reply: Reply) -> ExecReply:
        typed = cls.from_fields(reply.fields)
        return replace(
            typed,
            truncated=typed.truncated or reply.truncated,
            stdout=reply.stdout,
            stderr=reply.stderr,
            files=reply.files,
        )


@dataclass(frozen=True)
class PutReply:
    """Whether the files were unpacked; when not, the error and the deepest folder that exists on the way."""

    failed: bool = False
    errno: int | None = None
    reason: str = ""
    ancestor: str = ""

    def to_message(self) -> dict[str, Any]:
        if not self.failed:
            return protocol.empty_reply()
        return protocol.put_failed_reply(self.errno, self.reason, self.ancestor)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> PutReply:
        if Result.ERRNO not in fields:
            return cls()
        return cls(
            failed=True,
            errno=_optional_int(fields, Result.ERRNO),
            reason=_str(fields, Result.REASON),
            ancestor=_str(fields, Result.ANCESTOR),
        )


@dataclass(frozen=True)
class ResetReply:
    """What could not be removed (paths in the workdir or the temporary folder), what changed in the folders that
    were to be kept, and the guest's clock once the reset was done."""

    left: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    now: float = 0.0

    def to_message(self) -> dict[str, Any]:
        return protocol.reset_reply(self.left, self.changed, self.now)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ResetReply:
        return cls(_strings(fields, Result.LEFT), _strings(fields, Result.CHANGED), _float(fields, Result.NOW))


@dataclass(frozen=True)
class SpawnReply:
    """The long-lived child's handle (for feed and close) and its pid in the sandbox."""

    handle: int
    pid: int

    def to_message(self) -> dict[str, Any]:
        return protocol.spawn_reply(self.handle, self.pid)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> SpawnReply:
        return cls(_int(fields, Result.HANDLE), _int(fields, Result.PID))


FEED_ENDINGS = (Ended.MARKER, Ended.EXITED, Ended.TIMEOUT)


@dataclass(frozen=True)
class FeedReply:
    """Why a feed ended (``protocol.Ended``: the marker, the child's exit, the timeout), the child's exit status
    once it has exited, the line after the marker (``trailer``, when asked for), whether the time limit passed and
    whether the child was interrupted, the output relayed meanwhile and the files collected at the marker."""

    ended: str
    exit_code: int | None = None
    trailer: str | None = None
    timed_out_flag: bool = False
    interrupted: bool = False
    skipped: tuple[str, ...] = ()
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False  # output past the feed's limit (or the host's cap, ``link.HOST_OUTPUT_CAP``) dropped
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def marker_seen(self) -> bool:
        return self.ended == Ended.MARKER

    @property
    def exited(self) -> bool:
        return self.ended == Ended.EXITED

    @property
    def timed_out(self) -> bool:
        """The time limit passed (the child may have come back to its marker after the interrupt)."""
        return self.ended == Ended.TIMEOUT or self.timed_out_flag

    def to_message(self) -> dict[str, Any]:
        return protocol.feed_reply(
            self.ended,
            self.exit_code,
            self.trailer,
            self.timed_out_flag,
            self.interrupted,
            self.truncated,
            self.skipped,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> FeedReply:
        return cls(
            ended=_one_of(fields, Result.ENDED, FEED_ENDINGS),
            exit_code=_optional_int(fields, Result.EXIT_CODE),
            trailer=_optional_str(fields, Result.TRAILER),
            timed_out_flag=_bool(fields, Result.TIMED_OUT),
            interrupted=_bool(fields, Result.INTERRUPTED),
            truncated=_bool(fields, Result.TRUNCATED),
            skipped=_strings(fields, Result.SKIPPED),
        )

    @classmethod
    def from_reply(cls, reply: Reply) -> FeedReply:
        typed = cls.from_fields(reply.fields)
        return replace(
            typed,
            stdout=reply.stdout,
            stderr=reply.stderr,
            truncated=typed.truncated or reply.truncated,
            files=reply.files,
        )


@dataclass(frozen=True)
class CloseReply:
    """The long-lived child's exit status (137 when it was killed; its own when it had exited already)."""

    exit_code: int

    def to_message(self) -> dict[str, Any]:
        return protocol.close_reply(self.exit_code)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CloseReply:
        return cls(_int(fields, Result.EXIT_CODE))
