"""Open sessions, closed at interpreter exit so that nothing a session created outlives the process unnoticed.

An open session is held here until it is closed, so a session the caller stops referring to keeps its container
until the process exits (as the reference implementation's does: its examples open a session in a function and
attach to its container by id afterwards). (A container also ends by itself when its ``session_timeout`` passes, or
once the host process is gone.)
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Protocol

logger = logging.getLogger(__name__)


class Closable(Protocol):
    session_id: str

    def close(self) -> None: ...


_open: set[Closable] = set()
_lock = threading.Lock()


def track(session: Closable) -> None:
    with _lock:
        _open.add(session)


def untrack(session: Closable) -> None:
    with _lock:
        _open.discard(session)


@atexit.register
def close_open_sessions() -> None:
    with _lock:
        sessions = list(_open)
    for session in sessions:
        try:
            session.close()
        except Exception:
            logger.warning("could not close session %s at exit", session.session_id[:12], exc_info=True)
