"""The server's sessions: sandboxes a client keeps across calls, by id.

In Python, JavaScript, Ruby and R a session is an ``InteractiveSandboxSession``: every call is a cell of one
interpreter, so variables, functions and imports carry over. In the compiled languages (Java, C++, Go) it is an
``ArtifactSandboxSession``: each call is a new program, while the files and libraries of the sandbox carry over.
Sessions are bounded in number, closed once idle for ``session_idle_timeout`` seconds, and all closed with the
server. Calls on one session run one at a time; different sessions run side by side.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.config import DEFAULT_WORKDIR
from llm_sandbox.data import ExecutionResult
from llm_sandbox.errors import SandboxError, SandboxTimeoutError, ValidationError
from llm_sandbox.interactive import InteractiveSandboxSession
from llm_sandbox.interactive.kernel_types import KERNELS
from llm_sandbox.languages.registry import get_language
from llm_sandbox.mcp.executor import timed_out_result
from llm_sandbox.mcp.languages import PLOTTING_LANGUAGES
from llm_sandbox.mcp.settings import ServerSettings

logger = logging.getLogger(__name__)


class SessionNotFoundError(SandboxError, LookupError):
    """No open session has this id (it was closed, it expired, or it never existed)."""


class TooManySessionsError(SandboxError, RuntimeError):
    """The server holds as many sessions as it may."""


@dataclass(eq=False)
class ServerSession:
    """One open session and what the registry knows of it."""

    session_id: str
    language: str
    session: InteractiveSandboxSession | ArtifactSandboxSession
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def stateful(self) -> bool:
        return isinstance(self.session, InteractiveSandboxSession)

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "language": self.language,
            "stateful": self.stateful,
            "workdir": DEFAULT_WORKDIR,
            "calls": self.calls,
            "idle_s": round(time.monotonic() - self.last_used, 1),
        }


class SessionRegistry:
    """Open sessions by id, with their bound and their expiry."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, ServerSession] = {}
        self._opening = 0  # slots taken by sessions being opened
        self._lock = threading.Lock()
        self._closed = threading.Event()
        period = min(30.0, max(0.5, settings.session_idle_timeout / 4))
        self._reaper = threading.Thread(target=self._reap_loop, args=(period,), name="llm-sandbox-mcp-expiry")
        self._reaper.daemon = True
        self._reaper.start()

    # Opening and closing ---------------------------------------------------------------------------------------

    def create(self, language: str, libraries: Sequence[str] | None) -> ServerSession:
        name = get_language(language).name
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the server is shutting down")
            if len(self._sessions) + self._opening >= self.settings.max_sessions:
                raise TooManySessionsError(
                    f"this server holds at most {self.settings.max_sessions} sessions: close one (close_session) "
                    "or wait for an idle one to expire"
                )
            self._opening += 1
        try:
            session = self._open(name, libraries)
        finally:
            with self._lock:
                self._opening -= 1
        entry = ServerSession(uuid.uuid4().hex, name, session)
        with self._lock:
            if not self._closed.is_set():
                self._sessions[entry.session_id] = entry
                return entry
        session.close()  # the server closed while this one opened
        raise RuntimeError("the server is shutting down")

    def _open(
        self, language: str, libraries: Sequence[str] | None
    ) -> InteractiveSandboxSession | ArtifactSandboxSession:
        options: dict[str, Any] = {
            "lang": language,
            "libraries": list(libraries or []),
            "copy_limit": self.settings.max_file_bytes,
            "keep_template": self.settings.keep_template,
            **self.settings.sandbox_options(),
        }
        session: InteractiveSandboxSession | ArtifactSandboxSession
        if language in KERNELS:
            session = InteractiveSandboxSession(**options)
        else:
            session = ArtifactSandboxSession(enable_plotting=language in PLOTTING_LANGUAGES, **options)
        session.open()
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            entry = self._sessions.pop(session_id, None)
        if entry is None:
            raise SessionNotFoundError(f"no open session {session_id!r}: list_sessions shows the open ones")
        with entry.lock:  # a call still running on it ends first
            entry.session.close()

    def close_all(self) -> None:
        """Close every session and stop expiring them: the server is going away."""
        self._closed.set()
        with self._lock:
            entries = list(self._sessions.values())
            self._sessions.clear()
        for entry in entries:
            try:
                entry.session.close()
            except Exception:  # every session must get its turn to close
                logger.warning("closing session %s failed", entry.session_id, exc_info=True)

    def describe_all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [entry.describe() for entry in self._sessions.values()]

    # Calls -----------------------------------------------------------------------------------------------------

    def run(self, session_id: str, code: str, timeout: float | None) -> ExecutionResult:
        with self._use(session_id) as entry:
            try:
                return entry.session.run(code, timeout=timeout)
            except SandboxTimeoutError as error:
                return timed_out_result(error)

    def upload(self, session_id: str, path: str, content: bytes) -> str:
        """Write ``content`` to ``path`` in the session's sandbox (relative to its workdir); return the full path."""
        if len(content) > self.settings.max_file_bytes:
            raise ValidationError(
                f"the file has {len(content)} bytes; this server takes at most {self.settings.max_file_bytes}"
            )
        target = sandbox_path(path)
        with self._use(session_id) as entry, tempfile.TemporaryDirectory(prefix="llm-sandbox-mcp-") as folder:
            local = Path(folder) / "upload"
            local.write_bytes(content)
            entry.session.copy_to_runtime(str(local), target)
        return target

    def download(self, session_id: str, path: str) -> tuple[str, bytes]:
        """The bytes of the file at ``path`` in the session's sandbox (relative to its workdir), and its full path."""
        source = sandbox_path(path)
        with self._use(session_id) as entry, tempfile.TemporaryDirectory(prefix="llm-sandbox-mcp-") as folder:
            local = Path(folder) / "download"
            entry.session.copy_from_runtime(source, str(local))
            if local.is_dir():
                raise ValidationError(f"{source} is a folder: download its files one at a time")
            return source, local.read_bytes()

    def _use(self, session_id: str) -> _InUse:
        return _InUse(self, self._find(session_id))

    def _find(self, session_id: str) -> ServerSession:
        with self._lock:
            entry = self._sessions.get(session_id)
        if entry is None:
            raise SessionNotFoundError(f"no open session {session_id!r}: list_sessions shows the open ones")
        return entry

    def is_registered(self, entry: ServerSession) -> bool:
        with self._lock:
            return self._sessions.get(entry.session_id) is entry

    # Expiry ----------------------------------------------------------------------------------------------------

    def _reap_loop(self, period: float) -> None:
        while not self._closed.wait(period):
            self.expire_idle()

    def expire_idle(self) -> list[str]:
        """Close the sessions unused for longer than the idle timeout (a session in a call is never idle)."""
        limit = self.settings.session_idle_timeout
        now = time.monotonic()
        expired: list[ServerSession] = []
        with self._lock:
            for session_id, entry in list(self._sessions.items()):
                # Taking its lock here means no call is running on it, and none starts: a call that was waiting
                # finds it unregistered once it gets the lock.
                if now - entry.last_used > limit and entry.lock.acquire(blocking=False):
                    expired.append(self._sessions.pop(session_id))
        for entry in expired:
            logger.info("session %s expired after %.0f s idle", entry.session_id, limit)
            try:
                entry.session.close()
            except Exception:
                logger.warning("closing expired session %s failed", entry.session_id, exc_info=True)
            finally:
                entry.lock.release()
        return [entry.session_id for entry in expired]


class _InUse:
    """Holds a session's lock for one call, and marks it used when the call ends."""

    def __init__(self, registry: SessionRegistry, entry: ServerSession) -> None:
        self.registry = registry
        self.entry = entry

    def __enter__(self) -> ServerSession:
        self.entry.lock.acquire()
        if not self.registry.is_registered(self.entry):  # closed or expired while this call waited
            self.entry.lock.release()
            raise SessionNotFoundError(f"session {self.entry.session_id!r} was closed")
        self.entry.last_used = time.monotonic()
        return self.entry

    def __exit__(self, *exc_info: object) -> None:
        self.entry.calls += 1
        self.entry.last_used = time.monotonic()
        self.entry.lock.release()


def sandbox_path(path: str) -> str:
    """``path`` inside the sandbox: relative paths are under the workdir; the result is normalised and absolute."""
    if not isinstance(path, str) or not path.strip() or "\0" in path:
        raise ValidationError(f"a file path is needed (relative to {DEFAULT_WORKDIR}, or absolute), not {path!r}")
    joined = posixpath.normpath(posixpath.join(DEFAULT_WORKDIR, path))
    if joined == "/":
        raise ValidationError(f"{path!r} names the root folder, not a file")
    return joined
