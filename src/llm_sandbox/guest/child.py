"""Starting a run's process with fork and exec (the subprocess module would cost every session its import)."""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Dict, List, Optional, Tuple

    from llm_sandbox.guest.confine import confine, drop_privileges, prefer_for_oom_kill
    from llm_sandbox.guest.processes import wait_status

CHUNK = 65536
# After a child exits, background processes that still hold its output pipes get this long to finish writing what
# they buffered before they are killed (or, for a long-lived child, before its exit is reported).
DRAIN_GRACE_S = 0.05


class Child:
    """A process started with fork and exec, in a session of its own, stdin from /dev/null (or a pipe) and its
    output on two pipes. (The subprocess module would do, but importing it would cost every session's start-up.)
    ``stdin_pipe`` with ``pipe_fd`` other than 0: the pipe is that descriptor instead, and stdin is /dev/null.
    ``user``: the code's (uid, gid), taken for good before the exec (the helper runs as root); ``confined``: the
    seccomp filter is installed, as that user, right before the exec."""

    def __init__(
        self,
        argv: List[str],
        env: Dict[str, str],
        cwd: Optional[str],
        confined: bool,
        stdin_pipe: bool = False,
        user: Optional[Tuple[int, int]] = None,
        pipe_fd: int = 0,
    ) -> None:
        in_read: Optional[int] = None
        in_write: Optional[int] = None
        if stdin_pipe and pipe_fd != 0 and user is not None:
            # A program may open its pipe again by name (/dev/fd/3, as R opens its script), which only the pipe's
            # owner may: it is made as the code's user (a pipe belongs to the effective ids that make it; fchown
            # would need a capability the sandbox drops).
            in_read, in_write = pipe_as(user)
        elif stdin_pipe:
            in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        check_read, check_write = os.pipe()  # close-on-exec: stays empty when exec succeeds
        pid = os.fork()
        if pid == 0:  # the child: nothing here may return into the helper's loop
            try:
                os.setsid()
                # Python ignores these two; the code it runs must get the default actions (a write past the
                # file-size limit is a SIGXFSZ death, exit 153, not an error the code may swallow).
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
                prefer_for_oom_kill()
                on_stdin = in_read is not None and pipe_fd == 0
                os.dup2(in_read if in_read is not None and on_stdin else os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out_write, 1)
                os.dup2(err_write, 2)
                if in_read is not None and not on_stdin:
                    if check_write == pipe_fd:  # keep the exec check's pipe out of the way (a copy, close-on-exec)
                        check_write = os.dup(check_write)
                    if in_read != pipe_fd:
                        os.dup2(in_read, pipe_fd)
                    os.set_inheritable(pipe_fd, True)  # dup2 onto itself would leave it close-on-exec
                if user is not None:
                    drop_privileges(user)  # before the chdir: the folder is entered with the code's rights
                if cwd:
                    os.chdir(cwd)
                if confined:
                    confine()
                os.execvpe(argv[0], argv, env)
            except BaseException as error:
                number = getattr(error, "errno", None) or 0
                os.write(check_write, ("%d:%s" % (number, getattr(error, "strerror", None) or error)).encode())
            finally:
                os._exit(127)
        for fd in (out_write, err_write, check_write, in_read):
            if fd is not None:
                os.close(fd)
        self.pid = pid
        self.returncode: Optional[int] = None
        self.stdout_fd, self.stderr_fd = out_read, err_read
        self.stdin_fd: Optional[int] = in_write
        failure = b""
        while True:
            chunk = os.read(check_read, 4096)
            if not chunk:
                break
            failure += chunk
        os.close(check_read)
        if failure:
            self.wait()
            self.close()
            number, _, message = failure.decode(errors="replace").partition(":")
            raise OSError(int(number or 0), message)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.wait()
            if pid:
                self.returncode = wait_status(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = wait_status(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:  # reaped already by a clean-up of leftovers: it was killed
                self.returncode = -signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd, self.stdin_fd):
            if fd is None:
                continue
            try:
                os.close(fd)
            except OSError:
                pass


def pipe_as(user: Tuple[int, int]) -> Tuple[int, int]:
    """A pipe owned by ``user`` (made with the effective ids switched to it, and back)."""
    uid, gid = os.geteuid(), os.getegid()
    os.setegid(user[1])
    os.seteuid(user[0])
    try:
        return os.pipe()
    finally:
        os.seteuid(uid)
        os.setegid(gid)


def write_to_child(fd: int, data: bytes) -> int:
    """``os.write`` to a child's stdin, where a child that has gone away is a BrokenPipeError, not our death (the
    helper takes SIGPIPE's default action, which ends it when the host's side of its own output goes away)."""
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        return os.write(fd, data)
    finally:
        signal.signal(signal.SIGPIPE, previous)
