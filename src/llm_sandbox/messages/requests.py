"""Typed requests to the guest: each turns into the message the guest reads (``to_message``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from llm_sandbox.guest import protocol
from llm_sandbox.guest.protocol import Field, Op
from llm_sandbox.messages.fields import (
    DEFAULT_COLLECT_BUDGET,
    DEFAULT_COLLECT_COUNT,
    _bool,
    _bytes,
    _expect_op,
    _float,
    _get,
    _int,
    _mapping,
    _optional_float,
    _optional_str,
    _str,
    _string_map,
    _strings,
    _wrong,
)


def _optional_mapping(fields: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = fields.get(name)
    return None if value is None else _mapping(value, name)


# Requests ---------------------------------------------------------------------------------------------------------


class Request:
    """A request to the guest: ``to_message`` gives the dict that goes on the wire (the link adds the id)."""

    op: ClassVar[str]

    def to_message(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class InfoRequest(Request):
    """Describe the sandbox; tells the guest what the sandbox guarantees (the first request of every link).

    ``kill_all``: kill(-1) as the code's uid reaches the code's processes only (a pid namespace and a uid of its
    own); ``own_cgroup``: the cgroup counters under /sys/fs/cgroup count this sandbox alone; ``code_user``: the
    code's (uid, gid) when the helper runs as root and runs the code under that uid (None: the code runs as the
    helper's own user); ``seccomp``: confine the code with the library's seccomp filter; ``lease``: the end of the
    helper's input ends the sandbox; ``prefix``: the argv every command runs under, for the interpreter lookup;
    ``code_path``: folders at the end of the code's PATH (its library prefix's programs); ``disk_paths`` and
    ``disk_limit``: the size-capped places the code writes and the total they may hold together (0: no cap).
    """

    workdir: str
    kill_all: bool
    own_cgroup: bool
    code_user: tuple[int, int] | None = None
    seccomp: bool = False
    lease: bool = False
    prefix: tuple[str, ...] = ()
    code_path: tuple[str, ...] = ()
    disk_paths: tuple[str, ...] = ()
    disk_limit: int = 0
    op: ClassVar[str] = Op.INFO

    def to_message(self) -> dict[str, Any]:
        return protocol.info_request(
            self.workdir,
            self.kill_all,
            self.own_cgroup,
            self.code_user,
            self.seccomp,
            self.lease,
            self.prefix,
            self.code_path,
            self.disk_paths,
            self.disk_limit,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> InfoRequest:
        _expect_op(fields, cls.op)
        return cls(
            workdir=_str(fields, Field.WORKDIR),
            kill_all=_bool(fields, Field.KILL_ALL),
            own_cgroup=_bool(fields, Field.OWN_CGROUP),
            code_user=_optional_id_pair(fields, Field.CODE_USER),
            seccomp=_bool(fields, Field.CONFINE),
            lease=_bool(fields, Field.LEASE),
            prefix=_strings(fields, Field.PREFIX),
            code_path=_strings(fields, Field.CODE_PATH),
            disk_paths=_strings(fields, Field.DISK_PATHS),
            disk_limit=_int(fields, Field.DISK_LIMIT),
        )


def _optional_id_pair(fields: Mapping[str, Any], name: str) -> tuple[int, int] | None:
    value = _get(fields, name)
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value)
    ):
        raise _wrong(name, "a (uid, gid) pair of whole numbers", value)
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class CodeFile:
    """A file an exec writes before it runs; ``{tmp}`` in its path is the run's temporary folder."""

    path: str
    content: str
    mode: int = 0o644

    def to_message(self) -> dict[str, Any]:
        return protocol.code_file(self.path, self.content, self.mode)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CodeFile:
        return cls(_str(fields, Field.PATH), _str(fields, Field.CONTENT), _int(fields, Field.MODE))


@dataclass(frozen=True)
class ExecRequest(Request):
    """Run ``argv`` to its end: write ``files``, relay output up to ``output_limit`` bytes a stream, stop it at
    ``timeout``, then send back the regular files that match ``collect`` (glob patterns relative to the temporary
    folder, or absolute for files the run changed elsewhere; ``**`` for any folders), ``collect_budget`` bytes and
    ``collect_count`` files in all. ``spare``: the recipe of the language's spare process (``guest.warm``), which
    may run ``argv`` when it is the recipe's plain run."""

    argv: tuple[str, ...]
    cwd: str | None
    env: Mapping[str, str]
    timeout: float | None
    output_limit: int
    files: tuple[CodeFile, ...] = ()
    spare: Mapping[str, Any] | None = None
    tempdir: bool = True
    collect: tuple[str, ...] = ()
    collect_budget: int = DEFAULT_COLLECT_BUDGET
    collect_count: int = DEFAULT_COLLECT_COUNT
    op: ClassVar[str] = Op.EXEC

    def to_message(self) -> dict[str, Any]:
        return protocol.exec_request(
            self.argv,
            self.cwd,
            dict(self.env),
            self.timeout,
            self.output_limit,
            [item.to_message() for item in self.files],
            dict(self.spare) if self.spare is not None else None,
            self.tempdir,
            self.collect,
            self.collect_budget,
            self.collect_count,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ExecRequest:
        _expect_op(fields, cls.op)
        files = _get(fields, Field.FILES)
        if not isinstance(files, list | tuple):
            raise _wrong(Field.FILES, "a list", files)
        return cls(
            argv=_strings(fields, Field.ARGV),
            cwd=_optional_str(fields, Field.CWD),
            env=_string_map(fields, Field.ENV),
            timeout=_optional_float(fields, Field.TIMEOUT),
            output_limit=_int(fields, Field.OUTPUT_LIMIT),
            files=tuple(CodeFile.from_fields(_mapping(item, Field.FILES)) for item in files),
            spare=_optional_mapping(fields, Field.SPARE),
            tempdir=_bool(fields, Field.TEMPDIR),
            collect=_strings(fields, Field.COLLECT),
            collect_budget=_int(fields, Field.COLLECT_BUDGET),
            collect_count=_int(fields, Field.COLLECT_COUNT),
        )


@dataclass(frozen=True)
class PutRequest(Request):
    """Unpack a tar (the request's payload) into ``parent``, as the code's user."""

    parent: str
    op: ClassVar[str] = Op.PUT

    def to_message(self) -> dict[str, Any]:
        return protocol.put_request(self.parent)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> PutRequest:
        _expect_op(fields, cls.op)
        return cls(_str(fields, Field.PARENT))


@dataclass(frozen=True)
class PingRequest(Request):
    op: ClassVar[str] = Op.PING

    def to_message(self) -> dict[str, Any]:
        return protocol.ping_request()

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> PingRequest:
        _expect_op(fields, cls.op)
        return cls()


@dataclass(frozen=True)
class ResetRequest(Request):
    """Kill every process of the code, then remove what the code's uid owns in ``workdir``, the temporary folder
    and ``folders`` (the code's library prefix, /var/tmp); check that nothing in ``keep`` changed after ``since``
    (the guest's clock; None: no check); ``warm``: ready a fresh waiting interpreter afterwards."""

    workdir: str
    folders: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    since: float | None = None
    warm: bool = False
    op: ClassVar[str] = Op.RESET

    def to_message(self) -> dict[str, Any]:
        return protocol.reset_request(self.workdir, self.folders, self.keep, self.since, self.warm)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ResetRequest:
        _expect_op(fields, cls.op)
        return cls(
            _str(fields, Field.WORKDIR),
            _strings(fields, Field.FOLDERS),
            _strings(fields, Field.KEEP),
            _optional_float(fields, Field.SINCE),
            _bool(fields, Field.WARM),
        )


@dataclass(frozen=True)
class SpawnRequest(Request):
    """Start a long-lived child (stdin a pipe, a session of its own, confined like a run's process)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None
    op: ClassVar[str] = Op.SPAWN

    def to_message(self) -> dict[str, Any]:
        return protocol.spawn_request(self.argv, dict(self.env), self.cwd)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> SpawnRequest:
        _expect_op(fields, cls.op)
        return cls(_strings(fields, Field.ARGV), _string_map(fields, Field.ENV), _optional_str(fields, Field.CWD))


@dataclass(frozen=True)
class FeedRequest(Request):
    """Write ``data`` to a long-lived child's stdin, then relay its output until ``marker`` shows on its stdout
    (not relayed itself; an empty marker: until it exits), it exits, or ``timeout`` passes. Stdout written past
    the marker is kept for the next feed.

    ``trailer``: the line after the marker comes back in the reply instead. ``interrupt``: at the time limit, or
    past ``output_limit`` bytes on a stream (0: no limit), every process under the child is killed and the child
    gets SIGINT, then ``grace`` seconds to show its marker. ``collect_from``: once the marker shows, the regular
    files of that folder matching ``collect`` come back (``collect_budget`` bytes in all) and the folder goes."""

    handle: int
    data: bytes
    marker: bytes
    timeout: float | None
    trailer: bool = False
    interrupt: bool = False
    grace: float = 0.0
    output_limit: int = 0
    collect_from: str | None = None
    collect: tuple[str, ...] = ()
    collect_budget: int = 0
    op: ClassVar[str] = Op.FEED

    def to_message(self) -> dict[str, Any]:
        return protocol.feed_request(
            self.handle,
            self.data,
            self.marker,
            self.timeout,
            self.trailer,
            self.interrupt,
            self.grace,
            self.output_limit,
            self.collect_from,
            self.collect,
            self.collect_budget,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> FeedRequest:
        _expect_op(fields, cls.op)
        return cls(
            _int(fields, Field.HANDLE),
            _bytes(fields, Field.DATA),
            _bytes(fields, Field.MARKER),
            _optional_float(fields, Field.TIMEOUT),
            _bool(fields, Field.TRAILER),
            _bool(fields, Field.INTERRUPT),
            _float(fields, Field.GRACE),
            _int(fields, Field.OUTPUT_LIMIT),
            _optional_str(fields, Field.COLLECT_FROM),
            _strings(fields, Field.COLLECT),
            _int(fields, Field.COLLECT_BUDGET),
        )


@dataclass(frozen=True)
class CloseRequest(Request):
    """Kill a long-lived child and everything under it, and reap it."""

    handle: int
    op: ClassVar[str] = Op.CLOSE

    def to_message(self) -> dict[str, Any]:
        return protocol.close_request(self.handle)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> CloseRequest:
        _expect_op(fields, cls.op)
        return cls(_int(fields, Field.HANDLE))
