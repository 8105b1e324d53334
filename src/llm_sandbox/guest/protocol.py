"""The protocol between the host and the guest: frame kinds, operations, field names, and the messages' builders.

One module for both sides: the guest joins it into its program (first, before the modules that use it) and the host
imports it (``llm_sandbox.messages``, ``llm_sandbox.link``). No operation or field name is spelled anywhere else.

A frame is a 5-byte header (kind byte, big-endian length) and its body. The host sends one request at a time: a
``REQUEST`` frame holding a ``marshal``-ed dict (read by the guest with no import at all; safe in this direction
only, since the guest trusts the host and the host never unmarshals guest data), followed by a ``PAYLOAD`` frame
when the request says ``with_payload``. The guest answers with any number of ``STDOUT``/``STDERR`` frames (raw
output bytes) and ``FILE`` frames (a collected file: its name's length, its name, its bytes), then exactly one
``REPLY`` frame: a JSON object that echoes the request's ``id`` and ends the request. While a run (``exec``) is in
flight the host may send one ``CANCEL`` frame (empty): the guest stops the run as its time limit would and still
answers with its reply (``cancelled``), so the link stays in step. A ``CANCEL`` that comes once the run has ended
(the host and the reply crossed) is skipped.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, Optional, Sequence, Tuple

FRAME_HEADER = struct.Struct(">cI")
FILE_NAME_HEADER = struct.Struct(">H")
MARSHAL_VERSION = 2  # plain values only; every Python 3 reads it


class Frame:
    """Frame kinds: a request and its binary payload go in; output, collected files and the reply come out."""

    REQUEST = b"M"
    PAYLOAD = b"B"
    STDOUT = b"1"
    STDERR = b"2"
    FILE = b"F"
    REPLY = b"J"
    CANCEL = b"X"  # host to guest, while an exec is in flight: stop it now


class Op:
    """The operations the guest serves."""

    INFO = "info"  # describe the sandbox; carries the sandbox's capabilities (the first request of a link)
    EXEC = "exec"  # run one process to its end (code files written first, output relayed, files collected)
    PUT = "put"  # unpack a tar (the payload) into a folder
    PING = "ping"
    RESET = "reset"  # kill every process of the code and remove what it wrote
    SPAWN = "spawn"  # start a long-lived child with a stdin pipe
    FEED = "feed"  # write to a long-lived child's stdin and relay its output up to a marker
    CLOSE = "close"  # kill a long-lived child and its descendants


class Field:
    """Request fields."""

    OP = "op"
    ID = "id"
    WITH_PAYLOAD = "with_payload"
    PAYLOAD = "payload"  # where the guest keeps the binary frame that followed the request
    # info
    WORKDIR = "workdir"
    KILL_ALL = "kill_all"
    OWN_CGROUP = "own_cgroup"
    CODE_USER = "code_user"
    CONFINE = "confine"
    LEASE = "lease"
    PREFIX = "prefix"
    CODE_PATH = "code_path"
    DISK_PATHS = "disk_paths"
    DISK_LIMIT = "disk_limit"
    FOLDERS = "folders"
    KEEP = "keep"  # reset: folders left in place, whose entries must not have changed since SINCE
    SINCE = "since"
    WARM = "warm"  # reset: ready a fresh waiting interpreter afterwards, like the one the last run had
    # exec, spawn
    ARGV = "argv"
    CWD = "cwd"
    ENV = "env"
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    TEMPDIR = "tempdir"
    FILES = "files"
    SPARE = "spare"  # exec: the recipe of the language's spare process (warm.spare_recipe)
    COLLECT = "collect"
    COLLECT_BUDGET = "collect_budget"
    COLLECT_COUNT = "collect_count"
    # one code file of an exec
    PATH = "path"
    CONTENT = "content"
    MODE = "mode"
    # put
    PARENT = "parent"
    # feed, close
    HANDLE = "handle"
    DATA = "data"
    MARKER = "marker"
    TRAILER = "trailer"  # feed: the line after the marker is the child's word on what it did (sent back, not relayed)
    INTERRUPT = "interrupt"  # feed: at the time limit, interrupt the child (SIGINT) rather than leave it running
    GRACE = "grace"  # feed: how long an interrupted child gets to come back to its marker
    COLLECT_FROM = "collect_from"  # feed: the folder whose matching files are sent back (and removed) at the marker


class Result:
    """Reply fields."""

    ID = "id"
    ERROR = "error"
    # info
    PID = "pid"
    UID = "uid"
    PYTHON = "python"
    WORKDIR_WRITABLE = "workdir_writable"
    SUBREAPER = "subreaper"
    KILL_ALL = "kill_all"
    OWN_CGROUP = "own_cgroup"
    SEPARATED = "separated"
    CAN_CONFINE = "can_confine"
    # exec
    EXIT_CODE = "exit_code"
    DURATION_S = "duration_s"
    TIMED_OUT = "timed_out"
    TRUNCATED = "truncated"
    LIMITS = "limits"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # the host cancelled the run (its processes were killed)
    # put
    ERRNO = "errno"
    REASON = "reason"
    ANCESTOR = "ancestor"
    # spawn
    HANDLE = "handle"
    # feed
    ENDED = "ended"
    TRAILER = "trailer"
    INTERRUPTED = "interrupted"
    # reset
    LEFT = "left"
    CHANGED = "changed"
    NOW = "now"


class Limit:
    """The sandbox limits an exec reply may name as hit (read from the sandbox's own cgroup counters)."""

    OOM = "oom"
    PIDS = "pids"
    DISK = "disk"  # the places the code writes held the disk cap's total (see disk.py)


class Ended:
    """Why a feed ended."""

    MARKER = "marker"
    EXITED = "exited"
    TIMEOUT = "timeout"


# Requests ------------------------------------------------------------------------------------------------------


def info_request(
    workdir: str,
    kill_all: bool,
    own_cgroup: bool,
    code_user: Optional[Sequence[int]] = None,
    seccomp: bool = False,
    lease: bool = False,
    prefix: Sequence[str] = (),
    code_path: Sequence[str] = (),
    disk_paths: Sequence[str] = (),
    disk_limit: int = 0,
) -> Dict[str, Any]:
    """``kill_all``: kill(-1) as the code's uid reaches the code's processes only; ``own_cgroup``: the cgroup
    counters under /sys/fs/cgroup are the sandbox's own; ``code_user``: the code's (uid, gid) when the helper was
    started as root to run the code under that uid, out of its reach (None: the code runs as the helper's user);
    ``seccomp``: install the library's seccomp filter in every process the code runs (the guest says in its reply
    whether it can); ``lease``: the end of the helper's input ends the sandbox (every other process is killed);
    ``prefix``: the argv every command runs under (an environment wrapper), through which the guest looks up the
    code's interpreter; ``code_path``: folders put at the end of the PATH of every process the code runs (the
    code's own library prefix: on the code's PATH, never on the helper's or root's); ``disk_paths`` and
    ``disk_limit``: the size-capped places the code writes and the total they may hold together (0: no cap)."""
    return {
        Field.OP: Op.INFO,
        Field.WORKDIR: workdir,
        Field.KILL_ALL: kill_all,
        Field.OWN_CGROUP: own_cgroup,
        Field.CODE_USER: None if code_user is None else list(code_user),
        Field.CONFINE: seccomp,
        Field.LEASE: lease,
        Field.PREFIX: list(prefix),
        Field.CODE_PATH: list(code_path),
        Field.DISK_PATHS: list(disk_paths),
        Field.DISK_LIMIT: disk_limit,
    }


def code_file(path: str, content: str, mode: int = 0o644) -> Dict[str, Any]:
    """One file an exec writes before it runs (``{tmp}`` in ``path`` is the run's temporary folder)."""
    return {Field.PATH: path, Field.CONTENT: content, Field.MODE: mode}


def exec_request(
    argv: Sequence[str],
    cwd: Optional[str],
    env: Dict[str, str],
    timeout: Optional[float],
    output_limit: int,
    files: Sequence[Dict[str, Any]] = (),
    spare: Optional[Dict[str, Any]] = None,
    tempdir: bool = True,
    collect: Sequence[str] = (),
    collect_budget: int = 0,
    collect_count: int = 0,
) -> Dict[str, Any]:
    """Run ``argv`` to its end. ``collect``: glob patterns, relative to the run's temporary folder or absolute,
    whose regular files are sent back (up to ``collect_budget`` bytes and ``collect_count`` files in all; 0: no
    count limit) before the folder is removed; outside the folder, only files the run changed."""
    return {
        Field.OP: Op.EXEC,
        Field.ARGV: list(argv),
        Field.CWD: cwd,
        Field.ENV: dict(env),
        Field.TIMEOUT: timeout,
        Field.OUTPUT_LIMIT: output_limit,
        Field.TEMPDIR: tempdir,
        Field.FILES: [dict(item) for item in files],
        Field.SPARE: spare,
        Field.COLLECT: list(collect),
        Field.COLLECT_BUDGET: collect_budget,
        Field.COLLECT_COUNT: collect_count,
    }


def put_request(parent: str) -> Dict[str, Any]:
    """Unpack the payload (a tar) into ``parent``."""
    return {Field.OP: Op.PUT, Field.PARENT: parent}


def ping_request() -> Dict[str, Any]:
    return {Field.OP: Op.PING}


def reset_request(
    workdir: str,
    folders: Sequence[str] = (),
    keep: Sequence[str] = (),
    since: Optional[float] = None,
    warm: bool = False,
) -> Dict[str, Any]:
    """``folders``: more folders whose entries the code's uid owns are removed (its library prefix, /var/tmp);
    ``keep``: folders left as they are, and checked: an entry changed after ``since`` (the guest's clock) is named
    in the reply's ``changed``; ``warm``: once the reset is done, start a fresh waiting interpreter like the one
    the last Python run had (the reset ended it), so the next run does not start one cold."""
    return {
        Field.OP: Op.RESET,
        Field.WORKDIR: workdir,
        Field.FOLDERS: list(folders),
        Field.KEEP: list(keep),
        Field.SINCE: since,
        Field.WARM: warm,
    }


def spawn_request(argv: Sequence[str], env: Dict[str, str], cwd: Optional[str]) -> Dict[str, Any]:
    return {Field.OP: Op.SPAWN, Field.ARGV: list(argv), Field.ENV: dict(env), Field.CWD: cwd}


def feed_request(
    handle: int,
    data: bytes,
    marker: bytes,
    timeout: Optional[float],
    trailer: bool = False,
    interrupt: bool = False,
    grace: float = 0.0,
    output_limit: int = 0,
    collect_from: Optional[str] = None,
    collect: Sequence[str] = (),
    collect_budget: int = 0,
) -> Dict[str, Any]:
    """Write ``data`` to the child's stdin, then relay its output until ``marker`` shows on its stdout (an empty
    marker: until it exits), it exits, or ``timeout`` passes. ``trailer``: the line that follows the marker is
    read too and sent back in the reply. ``interrupt``: at the time limit (or past ``output_limit`` bytes on a
    stream, 0 for none) the processes under the child are killed and the child gets SIGINT, then ``grace`` seconds
    to show its marker. ``collect_from``: once the marker shows, the regular files there that match ``collect``
    are sent back (``collect_budget`` bytes in all) and the folder is removed."""
    return {
        Field.OP: Op.FEED,
        Field.HANDLE: handle,
        Field.DATA: data,
        Field.MARKER: marker,
        Field.TIMEOUT: timeout,
        Field.TRAILER: trailer,
        Field.INTERRUPT: interrupt,
        Field.GRACE: grace,
        Field.OUTPUT_LIMIT: output_limit,
        Field.COLLECT_FROM: collect_from,
        Field.COLLECT: list(collect),
        Field.COLLECT_BUDGET: collect_budget,
    }


def close_request(handle: int) -> Dict[str, Any]:
    return {Field.OP: Op.CLOSE, Field.HANDLE: handle}


# Replies -------------------------------------------------------------------------------------------------------


def error_reply(message: str) -> Dict[str, Any]:
    return {Result.ERROR: message}


def info_reply(
    pid: int,
    uid: int,
    python: str,
    workdir_writable: bool,
    subreaper: bool,
    kill_all: bool,
    own_cgroup: bool,
    separated: bool = False,
    can_confine: bool = False,
) -> Dict[str, Any]:
    """``kill_all`` and ``own_cgroup`` say what the guest made of the capabilities it was given; ``separated``:
    the guest runs as root and every process of the code under the code's uid; ``can_confine``: the seccomp
    filter can be installed here (tried when the host asked for it, else whether the architecture has one)."""
    return {
        Result.SEPARATED: separated,
        Result.CAN_CONFINE: can_confine,
        Result.PID: pid,
        Result.UID: uid,
        Result.PYTHON: python,
        Result.WORKDIR_WRITABLE: workdir_writable,
        Result.SUBREAPER: subreaper,
        Result.KILL_ALL: kill_all,
        Result.OWN_CGROUP: own_cgroup,
    }


def exec_reply(
    exit_code: int,
    duration_s: float,
    timed_out: bool = False,
    truncated: bool = False,
    limits: Sequence[str] = (),
    skipped: Sequence[str] = (),
    cancelled: bool = False,
) -> Dict[str, Any]:
    """``limits``: the ``Limit`` names whose counters rose during the run; ``skipped``: the collected files left
    out because they did not fit the budget; ``cancelled``: the host's ``CANCEL`` stopped the run."""
    return {
        Result.CANCELLED: cancelled,
        Result.EXIT_CODE: exit_code,
        Result.DURATION_S: duration_s,
        Result.TIMED_OUT: timed_out,
        Result.TRUNCATED: truncated,
        Result.LIMITS: list(limits),
        Result.SKIPPED: list(skipped),
    }


def put_failed_reply(errno: Optional[int], reason: str, ancestor: str) -> Dict[str, Any]:
    """The files could not be unpacked: the error, and the deepest folder that exists on the way to ``parent``.
    (A put that worked answers with an empty reply.)"""
    return {Result.ERRNO: errno, Result.REASON: reason, Result.ANCESTOR: ancestor}


def empty_reply() -> Dict[str, Any]:
    return {}


def reset_reply(left: Sequence[str], changed: Sequence[str] = (), now: float = 0.0) -> Dict[str, Any]:
    """``left``: what could not be removed; ``changed``: entries of the kept folders changed since the request's
    ``since``; ``now``: the guest's clock once the reset was done (the ``since`` of a later check)."""
    return {Result.LEFT: list(left), Result.CHANGED: list(changed), Result.NOW: now}


def spawn_reply(handle: int, pid: int) -> Dict[str, Any]:
    return {Result.HANDLE: handle, Result.PID: pid}


def feed_reply(
    ended: str,
    exit_code: Optional[int],
    trailer: Optional[str] = None,
    timed_out: bool = False,
    interrupted: bool = False,
    truncated: bool = False,
    skipped: Sequence[str] = (),
) -> Dict[str, Any]:
    """``ended``: an ``Ended`` value; ``exit_code``: the child's, once it has exited (else None); ``trailer``: the
    line after the marker (when asked for and the marker showed); ``timed_out``: the time limit passed;
    ``interrupted``: the child was interrupted (at the time limit or the output limit); ``truncated``: output past
    the limit was dropped; ``skipped``: collected files left out (over the budget)."""
    return {
        Result.ENDED: ended,
        Result.EXIT_CODE: exit_code,
        Result.TRAILER: trailer,
        Result.TIMED_OUT: timed_out,
        Result.INTERRUPTED: interrupted,
        Result.TRUNCATED: truncated,
        Result.SKIPPED: list(skipped),
    }


def close_reply(exit_code: int) -> Dict[str, Any]:
    return {Result.EXIT_CODE: exit_code}


# Collected files -----------------------------------------------------------------------------------------------


def file_frame_head(name: str) -> bytes:
    """The start of a ``FILE`` frame's body: the name's length and the name; the file's bytes follow."""
    encoded = name.encode("utf-8", "surrogateescape")
    return FILE_NAME_HEADER.pack(len(encoded)) + encoded


def split_file_frame(body: bytes) -> Tuple[str, bytes]:
    """A ``FILE`` frame's name and bytes; ValueError when the body is too short for the name it announces."""
    if len(body) < FILE_NAME_HEADER.size:
        raise ValueError("a file frame shorter than its name's length")
    (size,) = FILE_NAME_HEADER.unpack_from(body)
    end = FILE_NAME_HEADER.size + size
    if len(body) < end:
        raise ValueError("a file frame shorter than its name")
    return body[FILE_NAME_HEADER.size : end].decode("utf-8", "surrogateescape"), body[end:]
