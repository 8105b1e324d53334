"""Pool benchmark worker: imports whichever ``llm_sandbox`` its interpreter has and times pool operations.

Started by ``compare_pool.py`` once per side (ours, the reference), each with its own interpreter, because both
packages share the import name. It touches only the API they share: ``create_pool_manager(backend=..., config=
PoolConfig(max_pool_size=..., min_pool_size=...), lang=..., image=...)``, ``get_stats()``, ``close()`` and
``SandboxSession(pool=..., lang=...)`` as a context manager with ``run``. Requests come as JSON lines on stdin and
answers leave as JSON lines on the original stdout; whatever the library prints goes to stderr.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from llm_sandbox import SandboxSession
from llm_sandbox.pool import PoolConfig, create_pool_manager

# The worker runs as a script in either venv: the shared loop comes from this repository's bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.worker_loop import run_worker

CODE = "print(1)"
EXPECTED = "1\n"
READY_TIMEOUT_S = 600.0


def idle_count(pool: Any) -> int:
    counts = pool.get_stats().get("state_counts", {})
    return int(counts.get("idle", 0))


class Worker:
    def __init__(self) -> None:
        self.pool: Any = None

    def cycle(self) -> float:
        """One user: acquire, run, release."""
        started = time.perf_counter()
        with SandboxSession(pool=self.pool, lang="python") as session:
            result = session.run(CODE)
        seconds = time.perf_counter() - started
        if result.stdout != EXPECTED or result.exit_code != 0:
            raise RuntimeError(f"pooled run: stdout {result.stdout!r}, exit {result.exit_code}: {result.stderr!r}")
        return seconds

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "prewarm":  # a pool of `size` sandboxes, all made before the first user
            size = int(request["size"])
            started = time.perf_counter()
            self.pool = create_pool_manager(
                backend="docker",
                config=PoolConfig(max_pool_size=size, min_pool_size=size),
                lang="python",
                image=request["image"],
            )
            while idle_count(self.pool) < size:
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise TimeoutError(f"the pool did not have {size} idle sandboxes within {READY_TIMEOUT_S:g} s")
                time.sleep(0.02)
            return {"seconds": time.perf_counter() - started}
        if op == "cycle":
            return {"seconds": self.cycle()}
        if op == "throughput":  # `threads` users sharing the pool, `per_thread` runs each
            threads, per_thread = int(request["threads"]), int(request["per_thread"])
            errors: list[BaseException] = []

            def user() -> None:
                try:
                    for _ in range(per_thread):
                        self.cycle()
                except BaseException as error:
                    errors.append(error)

            started = time.perf_counter()
            workers = [threading.Thread(target=user) for _ in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
            seconds = time.perf_counter() - started
            if errors:
                raise RuntimeError(f"{len(errors)} user(s) failed: {errors[0]!r}")
            return {"seconds": seconds, "runs": threads * per_thread}
        if op == "close":
            started = time.perf_counter()
            self.pool.close()
            self.pool = None
            return {"seconds": time.perf_counter() - started}
        if op == "hello":
            import llm_sandbox

            return {"seconds": 0.0, "module": llm_sandbox.__file__}
        raise ValueError(f"unknown operation {op!r}")

    def shutdown(self) -> None:
        if self.pool is not None:
            try:
                self.pool.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)


def main() -> None:
    worker = Worker()
    run_worker(worker.handle, worker.shutdown)


if __name__ == "__main__":
    main()
