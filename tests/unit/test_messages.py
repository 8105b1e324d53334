"""The typed requests and replies: each one round-trips through its message, and a reply field of the wrong type (or
a missing one) is a protocol error, never a value passed on. The protocol's names are spelled in one place only."""

from __future__ import annotations

import ast
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import llm_sandbox
from llm_sandbox.guest import MODULES
from llm_sandbox.guest.protocol import Ended, Field, Limit, Op, Result
from llm_sandbox.guest.warm import python_recipe
from llm_sandbox.messages import (
    CloseReply,
    CloseRequest,
    CodeFile,
    ExecReply,
    ExecRequest,
    FeedReply,
    FeedRequest,
    GuestLinkError,
    GuestProtocolError,
    InfoReply,
    InfoRequest,
    PingRequest,
    PutReply,
    PutRequest,
    Reply,
    ResetReply,
    ResetRequest,
    SpawnReply,
    SpawnRequest,
)

REQUESTS: list[Any] = [
    InfoRequest("/sandbox", kill_all=True, own_cgroup=False),
    ExecRequest(
        argv=("python", "-u", "{tmp}/main.py"),
        cwd="/sandbox",
        env={"A": "1"},
        timeout=2.5,
        output_limit=1000,
        files=(CodeFile("{tmp}/main.py", "print(1)\n", 0o600),),
        spare=python_recipe("/usr/bin/python3"),
        collect=("*.png", "**/*.csv"),
        collect_budget=4096,
    ),
    ExecRequest(argv=("true",), cwd=None, env={}, timeout=None, output_limit=0),
    PutRequest("/sandbox/data"),
    PingRequest(),
    ResetRequest("/sandbox"),
    SpawnRequest(("python3", "-i"), {"B": "2"}, None),
    FeedRequest(3, b"print(1)\n", b"--done--", 1.5),
    FeedRequest(3, b"", b"", None),
    CloseRequest(3),
]

REPLIES: list[Any] = [
    InfoReply(
        pid=7,
        uid=65534,
        python="/usr/bin/python3",
        workdir_writable=True,
        subreaper=True,
        kill_all=True,
        own_cgroup=False,
    ),
    ExecReply(exit_code=137, duration_s=1.5, timed_out=True, truncated=False, limits=(Limit.OOM,), skipped=("b",)),
    PutReply(),
    PutReply(failed=True, errno=13, reason="Permission denied", ancestor="/"),
    PutReply(failed=True, errno=None, reason="odd", ancestor="/x"),
    ResetReply(left=("/tmp/x",)),
    SpawnReply(handle=1, pid=42),
    FeedReply(ended=Ended.MARKER, exit_code=None),
    FeedReply(ended=Ended.EXITED, exit_code=3),
    CloseReply(exit_code=137),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda item: type(item).__name__)
def test_every_request_round_trips_through_its_message(request_: Any) -> None:
    message = request_.to_message()
    assert message[Field.OP] == request_.op
    assert type(request_).from_fields(message) == request_


@pytest.mark.parametrize("reply", REPLIES, ids=lambda item: type(item).__name__)
def test_every_reply_round_trips_through_its_message(reply: Any) -> None:
    assert type(reply).from_fields(reply.to_message()) == reply


def test_a_request_read_as_another_operation_is_refused() -> None:
    with pytest.raises(GuestProtocolError, match=repr(Op.PUT)):
        PutRequest.from_fields(PingRequest().to_message())


# For each reply: a field and values of the wrong type for it.
WRONG_VALUES: list[tuple[Any, str, list[Any]]] = [
    (REPLIES[0], Result.PID, ["7", 7.0, True, None]),
    (REPLIES[0], Result.PYTHON, [1, None, b"/usr/bin/python3"]),
    (REPLIES[0], Result.KILL_ALL, [1, "true", None]),
    (REPLIES[0], Result.OWN_CGROUP, [0, "false"]),
    (REPLIES[1], Result.EXIT_CODE, ["0", 0.0, False, None]),
    (REPLIES[1], Result.DURATION_S, ["1.5", None, True]),
    (REPLIES[1], Result.TIMED_OUT, [1, "no"]),
    (REPLIES[1], Result.LIMITS, ["oom", [1], None, {"oom": 1}]),
    (REPLIES[1], Result.SKIPPED, ["b", [None]]),
    (REPLIES[3], Result.ERRNO, ["13", 13.5]),
    (REPLIES[3], Result.ANCESTOR, [None, 1]),
    (REPLIES[5], Result.LEFT, [None, "x", [1]]),
    (REPLIES[6], Result.HANDLE, ["1", None, 1.0]),
    (REPLIES[8], Result.ENDED, ["done", None, 1]),
    (REPLIES[8], Result.EXIT_CODE, ["3", 3.0]),
    (REPLIES[9], Result.EXIT_CODE, [None, "137"]),
]


@pytest.mark.parametrize(
    ("reply", "name", "value"),
    [(reply, name, value) for reply, name, values in WRONG_VALUES for value in values],
    ids=lambda item: type(item).__name__ if dataclasses.is_dataclass(item) else repr(item),
)
def test_a_reply_field_of_the_wrong_type_is_a_protocol_error(reply: Any, name: str, value: Any) -> None:
    fields = {**reply.to_message(), name: value}
    with pytest.raises(GuestProtocolError, match=repr(name)):
        type(reply).from_fields(fields)


@pytest.mark.parametrize("reply", [item for item in REPLIES if item.to_message()], ids=lambda item: type(item).__name__)
def test_a_missing_reply_field_is_a_protocol_error(reply: Any) -> None:
    for name in reply.to_message():
        fields = {key: value for key, value in reply.to_message().items() if key != name}
        if isinstance(reply, PutReply) and name == Result.ERRNO:
            continue  # a put reply without errno is the put that worked
        with pytest.raises(GuestProtocolError, match=repr(name)):
            type(reply).from_fields(fields)


def test_protocol_errors_are_link_errors() -> None:
    # The runner turns a lost link into ContainerError and restarts the helper: a protocol error is one of them.
    assert issubclass(GuestProtocolError, GuestLinkError)
    assert issubclass(GuestLinkError, llm_sandbox.errors.SandboxDiedError)


def test_exec_and_feed_replies_carry_the_output_and_the_files() -> None:
    reply = Reply(fields=ExecReply(0, 0.1).to_message(), stdout="o", stderr="e", files={"a": b"1"})
    assert ExecReply.from_reply(reply) == ExecReply(0, 0.1, stdout="o", stderr="e", files={"a": b"1"})
    feed = FeedReply.from_reply(Reply(fields=FeedReply(Ended.TIMEOUT).to_message(), stdout="so far"))
    assert (feed.timed_out, feed.marker_seen, feed.exited, feed.stdout) == (True, False, False, "so far")


# The protocol's names are spelled in guest/protocol.py only -----------------------------------------------------


def _protocol_names() -> set[str]:
    names: set[str] = set()
    for namespace in (Op, Field, Result, Limit, Ended):
        names.update(value for key, value in vars(namespace).items() if not key.startswith("_"))
    return names


def _keyed_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants used the way protocol names are: dict keys, subscripts, ``.get``/``.pop`` keys, and
    comparisons."""
    found: list[tuple[int, str]] = []

    def add(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key in node.keys:
                add(key)
        elif isinstance(node, ast.Subscript):
            add(node.slice)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop"):
            add(node.args[0] if node.args else None)
        elif isinstance(node, ast.Compare):
            for item in [node.left, *node.comparators]:
                add(item)
    return found


def _sources() -> list[tuple[str, str]]:
    guest = resources.files("llm_sandbox.guest")
    sources = [(f"guest/{name}.py", guest.joinpath(f"{name}.py").read_text()) for name in MODULES if name != "protocol"]
    package = Path(llm_sandbox.__file__).parent
    host = ("link.py", "runner.py", "messages/fields.py", "messages/requests.py", "messages/replies.py")
    sources += [(name, (package / name).read_text()) for name in host]
    return sources


def test_no_operation_or_field_name_is_spelled_outside_the_protocol_module() -> None:
    names = _protocol_names()
    # The runner's only other keyed strings fill the language's argv templates, which are not the protocol's.
    template_keys = {"file", "dir", "python", "workdir"}
    spelled = [
        f"{path}:{line}: {value!r}"
        for path, source in _sources()
        for line, value in _keyed_literals(ast.parse(source))
        if value in names and not (path == "runner.py" and value in template_keys)
    ]
    assert spelled == []
