"""The asyncio driver of the guest link: ``link.py``'s protocol and reply assembly, with the bytes moved by the loop.

Docker's and Podman's exec connections are plain sockets, which the loop waits on itself (``LoopDrivable``): a run
in flight holds no thread, so one loop drives as many sessions as it likes. The Kubernetes client's websocket only
blocks; its link is read by one thread of its own (``ThreadedStream``), one blocking read at a time.

A request whose caller is cancelled while it waits (a task's ``cancel()``, ``asyncio.wait_for``,
``asyncio.timeout``) is finished before ``CancelledError`` goes on: the request is sent whole, the guest gets a
``CANCEL`` (it kills the run's processes, as at its time limit, and answers), and that answer is read to its end,
so the link is in step for the next request. A guest that does not answer within ``CANCEL_GRACE_S`` breaks the link
(a sandbox the library created is then replaced on the next call, an attached one gets a new helper).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llm_sandbox.backends.base import AsyncDuplexStream, DuplexStream, LoopDrivable
from llm_sandbox.link import (
    BACKSTOP_GRACE_S,
    GuestLink,
    GuestLinkError,
    LinkProtocol,
    OutputCallback,
    ReplyAssembler,
    ReplyHandOverError,
)
from llm_sandbox.messages import Reply, Request

logger = logging.getLogger(__name__)

# How long a cancelled run's reply is waited for (the guest kills the run at once; this covers a busy engine).
CANCEL_GRACE_S = 10.0


class ThreadedStream:
    """An ``AsyncDuplexStream`` over a blocking ``DuplexStream``: reads run on the stream's own thread, and a read
    whose waiter was cancelled is kept for the next ``recv`` (no byte is lost)."""

    def __init__(self, stream: DuplexStream) -> None:
        self._stream = stream
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-sandbox-link")
        self._reading: asyncio.Future[bytes] | None = None

    async def send(self, data: bytes) -> None:
        # Not on the reader's thread, which may be blocked in a read: the stream takes a write meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, self._stream.send, data)

    async def recv(self, timeout: float | None) -> bytes:
        if self._reading is None:
            self._reading = asyncio.get_running_loop().run_in_executor(self._reader, self._stream.recv, timeout)
        reading = self._reading
        try:
            await asyncio.wait_for(asyncio.shield(reading), timeout)  # a timeout or a cancel leaves the read running
        finally:
            if reading.done():
                self._reading = None
        return reading.result()

    def close(self) -> None:
        self._reader.shutdown(wait=False)


def loop_stream(stream: DuplexStream) -> AsyncDuplexStream:
    """The loop's way to drive ``stream``: directly where the transport allows it, else on a thread of its own."""
    if isinstance(stream, LoopDrivable):
        view = stream.asynchronous()
        if view is not None:
            return view
    return ThreadedStream(stream)


class AsyncGuestLink:
    """Requests on a ``GuestLink``, driven by the running loop; one at a time (the blocking driver waits meanwhile)."""

    def __init__(self, link: GuestLink) -> None:
        self.link = link
        self._stream: AsyncDuplexStream | None = None
        self._protocol: LinkProtocol | None = None  # while a request is in flight
        self._sending: asyncio.Future[None] | None = None

    async def request(
        self,
        message: Request,
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        encoding_errors: str = "replace",
    ) -> Reply:
        """Send one request and wait for its reply, as ``GuestLink.request`` does; cancelling the wait cancels the
        run in the sandbox (see the module's docstring) and then raises ``CancelledError``."""
        with self.link.borrowed() as (protocol, stream):
            if self._stream is None:
                self._stream = loop_stream(stream)
            frames = protocol.encode_request(message.to_message())
            assembler = ReplyAssembler(on_stdout, on_stderr, encoding_errors)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout + BACKSTOP_GRACE_S
            sending = asyncio.ensure_future(self._stream.send(frames))
            self._protocol, self._sending = protocol, sending
            try:
                await asyncio.shield(sending)
                return await self._receive(protocol, assembler, deadline)
            except asyncio.CancelledError:
                await finish(self._stop(protocol, sending))
                raise
            except ReplyHandOverError as handed:
                raise handed.error from None
            except BaseException as error:
                protocol.fail()
                if isinstance(error, OSError):  # TimeoutError included
                    raise GuestLinkError(f"lost the sandbox's helper: {error}") from error
                raise
            finally:
                self._protocol = self._sending = None

    async def cancel(self) -> bool:
        """Ask the guest to stop the request in flight, from another task than the one that waits for it (that one
        gets the reply, marked ``cancelled``). False when nothing is in flight or it was asked already."""
        protocol, sending, stream = self._protocol, self._sending, self._stream
        if protocol is None or sending is None or stream is None:
            return False
        await asyncio.wait([sending])  # the request goes out whole first
        frame = protocol.cancel_frame()
        if frame:
            await stream.send(frame)
        return bool(frame)

    async def _receive(self, protocol: LinkProtocol, assembler: ReplyAssembler, deadline: float | None) -> Reply:
        assert self._stream is not None
        loop = asyncio.get_running_loop()
        while True:
            wait = None if deadline is None else deadline - loop.time()
            if wait is not None and wait <= 0:
                raise TimeoutError("the sandbox's helper did not answer in time")
            chunk = await self._stream.recv(wait)
            if not chunk:
                raise GuestLinkError("the sandbox's helper exited")
            for event in protocol.feed(chunk):
                reply = assembler.add(event)
                if reply is not None:
                    return reply

    async def _stop(self, protocol: LinkProtocol, sending: asyncio.Future[None]) -> None:
        """Cancel the request in flight in the guest and read its reply to the end (the link stays in step); on
        any failure the link is broken instead, so that nothing stale is ever read as the next reply."""
        assert self._stream is not None
        try:
            await sending  # the guest must read the whole request before the CANCEL
            frame = protocol.cancel_frame()
            if frame:
                await self._stream.send(frame)
            if protocol.pending is not None:
                deadline = asyncio.get_running_loop().time() + CANCEL_GRACE_S
                await self._receive(protocol, ReplyAssembler(), deadline)
        except ReplyHandOverError:
            pass  # the reply was read whole; only its output could not be decoded, and nobody wants it
        except BaseException as error:  # noqa: BLE001 - whatever it was, the link cannot be trusted any more
            logger.warning("the cancelled request's reply did not come (%s); the link is dropped", error)
            protocol.fail()

    def close(self) -> None:
        if isinstance(self._stream, ThreadedStream):
            self._stream.close()


async def finish(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile (once more, or again and again)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
    task.result()
