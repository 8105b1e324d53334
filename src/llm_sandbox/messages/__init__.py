"""Typed requests and replies of the guest's protocol, on the host's side (the protocol itself: ``guest/protocol.py``).

Each request turns into the message the guest reads (``to_message``, built by the protocol's builders); each reply
is read from the guest's JSON (``from_fields``), every field checked for its type: a wrong or missing one is a
``GuestProtocolError``, never a value passed on. Requests have ``from_fields`` too and replies ``to_message``, so
that both directions can be checked against each other.
"""

from llm_sandbox.messages.fields import (
    DEFAULT_COLLECT_BUDGET,
    DEFAULT_COLLECT_COUNT,
    GuestLinkError,
    GuestProtocolError,
    Reply,
)
from llm_sandbox.messages.replies import (
    FEED_ENDINGS,
    CloseReply,
    ExecReply,
    FeedReply,
    InfoReply,
    PutReply,
    ResetReply,
    SpawnReply,
)
from llm_sandbox.messages.requests import (
    CloseRequest,
    CodeFile,
    ExecRequest,
    FeedRequest,
    InfoRequest,
    PingRequest,
    PutRequest,
    Request,
    ResetRequest,
    SpawnRequest,
)

__all__ = [
    "DEFAULT_COLLECT_BUDGET",
    "DEFAULT_COLLECT_COUNT",
    "FEED_ENDINGS",
    "CloseReply",
    "CloseRequest",
    "CodeFile",
    "ExecReply",
    "ExecRequest",
    "FeedReply",
    "FeedRequest",
    "GuestLinkError",
    "GuestProtocolError",
    "InfoReply",
    "InfoRequest",
    "PingRequest",
    "PutReply",
    "PutRequest",
    "Reply",
    "Request",
    "ResetReply",
    "ResetRequest",
    "SpawnReply",
    "SpawnRequest",
]
