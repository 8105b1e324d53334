"""Plumbing for ``compare_reference.py``: the reference's venv, the worker processes and the Docker housekeeping."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any

REFERENCE_PACKAGE = "llm-sandbox"
REFERENCE_VERSION = "0.3.46"
BENCH_LABEL = "io.llm-sandbox.bench"
OUR_LABEL = "io.llm-sandbox.managed"
OUR_PID_LABEL = "io.llm-sandbox.owner-pid"
REFERENCE_VENV_DIR = "/sandbox/.sandbox-venv"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# The reference's own interpreter ---------------------------------------------------------------------------------


def installed_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m, docker; print(m.version('llm-sandbox'))"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_reference_venv(venv: Path) -> Path:
    """Create (or reuse) a venv holding exactly the reference release and the Docker SDK; return its python."""
    python = venv / "bin" / "python"
    if python.exists() and installed_version(python) == REFERENCE_VERSION:
        log(f"reusing {venv} ({REFERENCE_PACKAGE}=={REFERENCE_VERSION})")
        return python
    if venv.exists():
        shutil.rmtree(venv)
    log(f"creating {venv} and installing {REFERENCE_PACKAGE}=={REFERENCE_VERSION} from PyPI")
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{REFERENCE_PACKAGE}=={REFERENCE_VERSION}", "docker"], check=True)
    found = installed_version(python)
    if found != REFERENCE_VERSION:
        raise RuntimeError(f"the reference venv at {venv} has {REFERENCE_PACKAGE} {found!r}, not {REFERENCE_VERSION}")
    return python


# Worker processes ------------------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker failed an operation (``answer`` holds its error reply) or stopped answering (``answer`` is None)."""

    def __init__(self, message: str, answer: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.answer = answer

    @property
    def reason(self) -> str:
        """The library's own error (``Type: message``) when the worker answered, else the worker's fate."""
        if self.answer is not None:
            return str(self.answer.get("error", "unknown error"))
        return str(self).splitlines()[0]

    @property
    def containers(self) -> list[str]:
        """Containers the failed operation had created before failing (to remove at the end)."""
        return [str(cid) for cid in (self.answer or {}).get("containers", [])]


class WorkerProcess:
    """One ``bench_worker.py`` subprocess speaking JSON lines; its stderr goes to a log file."""

    def __init__(self, side: str, python: Path, script: Path, log_path: Path, cwd: Path) -> None:
        self.side = side
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w", encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        # Neither side may see the other's package through PYTHONPATH.
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            [str(python), str(script), side],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            cwd=str(cwd),
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as error:
            raise WorkerError(f"{self.side} worker is gone ({self.tail()})") from error
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty as error:
            raise WorkerError(f"{self.side} worker gave no answer to {op!r} within {timeout:.0f} s") from error
        if line is None:
            raise WorkerError(f"{self.side} worker exited during {op!r}: {self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise WorkerError(f"{self.side} worker failed {op!r}: {answer.get('error')}\n{self.tail()}", answer)
        return answer

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float) -> None:
        """Ask the worker to close its session and exit; kill it (only it) if it does not."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"op": "shutdown"}) + "\n")
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.side} worker did not exit in {timeout:.0f} s; killing pid {self.process.pid}")
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


# Docker housekeeping ---------------------------------------------------------------------------------------------


def docker_created(attrs: dict[str, Any]) -> float:
    """Seconds since the epoch from the engine's RFC 3339 ``Created`` field (nanosecond precision, 'Z')."""
    raw = str(attrs.get("Created", ""))
    stamp, _, fraction = raw.rstrip("Z").partition(".")
    try:
        base = datetime.fromisoformat(stamp + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return base + (float("0." + fraction[:6]) if fraction[:6].isdigit() else 0.0)


def start_attach_target(client: Any, image: str) -> Any:
    """The existing container of the attach workload, with the venv the reference insists on for attached runs."""
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, labels={BENCH_LABEL: "1"}, user="root", network_disabled=True
    )
    try:
        code, output = container.exec_run(["python3", "-m", "venv", REFERENCE_VENV_DIR], user="root")
    except BaseException:
        container.remove(force=True)
        raise
    if code != 0:
        container.remove(force=True)
        raise RuntimeError(f"could not create {REFERENCE_VENV_DIR} in the attach container: {output!r}")
    return container


def looks_like_reference(attrs: dict[str, Any], image_ids: set[str], images: set[str]) -> bool:
    """A container made by the reference's ``open()``: a bench image, its own CMD, a TTY, PYTHONUNBUFFERED=1."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    if OUR_LABEL in labels or BENCH_LABEL in labels:
        return False
    if attrs.get("Image") not in image_ids and config.get("Image") not in images | image_ids:
        return False
    return bool(config.get("Tty")) and "PYTHONUNBUFFERED=1" in (config.get("Env") or [])


def sweep(
    client: Any,
    *,
    window: tuple[float, float],
    images: set[str],
    image_ids: set[str],
    known: set[str],
    our_pid: int | None,
    by_shape: bool,
) -> list[str]:
    """Remove what the run left behind, and nothing else.

    Always: containers a worker reported (``known``) and ours labelled with our worker's pid. With ``by_shape``
    (the run failed, so a reference container may exist whose id never came back): also unlabelled containers of
    the reference's shape created from a bench image inside ``window``. The reference does not label its
    containers, and other people's containers on this engine must survive, so that guess is only made when needed.
    """
    removed: list[str] = []
    for container in client.containers.list(all=True):
        attrs: dict[str, Any] = container.attrs
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        created = docker_created(attrs)
        in_window = window[0] - 1 <= created <= window[1] + 1
        shaped = in_window and looks_like_reference(attrs, image_ids, images)
        ours = our_pid is not None and labels.get(OUR_PID_LABEL) == str(our_pid)
        if container.id in known or ours or (by_shape and shaped):
            try:
                container.remove(force=True)
                removed.append(container.id[:12])
            except Exception as error:
                log(f"could not remove {container.id[:12]}: {error}")
        elif shaped:
            log(f"left alone {container.id[:12]}: shaped like a reference container but not reported by our worker")
    return removed


def image_ids(client: Any, *images: str) -> set[str]:
    found: set[str] = set()
    for image in images:
        try:
            found.add(str(client.images.get(image).id))
        except Exception:
            continue
    return found
