"""A fake Kubernetes API server for tests: the real HTTP API for pods and namespaces, the real websocket exec
protocol, and real Docker containers behind every pod.

Usage::

    with FakeKubeServer() as server:
        server.write_kubeconfig(path)            # then KUBECONFIG=path, or kubernetes.config.load_kube_config(path)

Routes (all answers are JSON; errors are ``Status`` objects with the real codes and reasons: 400, 401, 403, 404,
405, 409, 422): ``/version``; ``/api/v1/namespaces`` (GET, POST) and ``/api/v1/namespaces/{ns}`` (GET);
``/api/v1/pods`` (GET, ``labelSelector``); ``/api/v1/namespaces/{ns}/pods`` (GET with ``labelSelector``, POST);
``/api/v1/namespaces/{ns}/pods/{name}`` (GET, DELETE, PATCH of labels and annotations);
``/api/v1/namespaces/{ns}/pods/{name}/exec`` (GET or POST with a websocket upgrade). Requests must carry the
bearer token of the kubeconfig. It listens on 127.0.0.1 only, on a random port, over plain HTTP.

``python -m llm_sandbox.testing.fake_kube KUBECONFIG_PATH`` serves until interrupted.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llm_sandbox.testing.fake_kube_admission import ApiError
from llm_sandbox.testing.fake_kube_exec import SUPPORTED_PROTOCOLS, ExecBridge
from llm_sandbox.testing.fake_kube_node import BACKING_LABEL
from llm_sandbox.testing.fake_kube_pods import PodStore
from llm_sandbox.testing.websocket import ServerWebSocket, accept_key

logger = logging.getLogger(__name__)

DEFAULT_DENY_EGRESS = ("io.llm-sandbox.egress", "deny")
_POD = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)")
_POD_EXEC = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec")
_PODS = re.compile(r"/api/v1/namespaces/([^/]+)/pods")
_NAMESPACE = re.compile(r"/api/v1/namespaces/([^/]+)")


class FakeKubeServer:
    """One fake cluster with one node: the local Docker engine."""

    def __init__(
        self,
        docker_client: Any = None,
        *,
        deny_egress: tuple[str, str] | None = DEFAULT_DENY_EGRESS,
        protocols: tuple[str, ...] = SUPPORTED_PROTOCOLS,
    ) -> None:
        """``protocols``: the exec subprotocols served, in preference order (``("v4.channel.k8s.io",)`` plays an
        API server older than Kubernetes 1.30); ``deny_egress``: the label of pods the cluster's NetworkPolicy cuts
        off the network (None: every pod has the network)."""
        if docker_client is None:
            import docker

            docker_client = docker.from_env()
        self.server_id = secrets.token_hex(6)
        self.token = secrets.token_urlsafe(24)
        self.docker = docker_client
        self.protocols = protocols
        self.store = PodStore(docker_client, self.server_id, deny_egress)
        self.kubeconfig_path: Path | None = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the fake API server is not started")
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeKubeServer:
        handler = type("FakeKubeHandler", (_Handler,), {"fake": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="fake-kube-api", daemon=True)
        self._thread.start()
        logger.info("fake Kubernetes API server at %s (backing label %s=%s)", self.url, BACKING_LABEL, self.server_id)
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections (exec streams included) and remove every backing container."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.store.shutdown()

    def __enter__(self) -> FakeKubeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user", "namespace": namespace}}],
            "current-context": "fake",
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (JSON, which every YAML loader reads) with mode 0600."""
        target = Path(path)
        target.write_text(json.dumps(self.kubeconfig(), indent=2))
        target.chmod(0o600)
        self.kubeconfig_path = target
        return target

    def track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake-kube %s", format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        self.fake.track(self.connection, True)
        try:
            body = self._read_body()
            self._authorize()
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if (match := _POD_EXEC.fullmatch(url.path)) and method in ("GET", "POST"):
                self._exec(match.group(1), match.group(2), query)
                return
            self._reply(200 if method != "POST" else 201, self._route(method, url.path, query, body))
        except ApiError as error:
            self._reply(error.code, error.status())
        except json.JSONDecodeError as error:
            self._reply(400, ApiError(400, "BadRequest", f"invalid JSON body: {error}").status())
        finally:
            self.fake.track(self.connection, False)

    def _authorize(self) -> None:
        if not secrets.compare_digest(self.headers.get("Authorization", ""), f"Bearer {self.fake.token}"):
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> dict[str, Any]:
        store = self.fake.store
        selector = (query.get("labelSelector") or [""])[0]
        if path == "/version" and method == "GET":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "platform": sys.platform}
        if path == "/api/v1/pods" and method == "GET":
            return store.list_pods(None, selector)
        if path == "/api/v1/namespaces" and method == "POST":
            return store.create_namespace(body or {})
        if match := _POD.fullmatch(path):
            namespace, name = match.groups()
            if method == "GET":
                return store.get_pod(namespace, name)
            if method == "DELETE":
                return store.delete_pod(namespace, name)
            if method == "PATCH":
                return store.patch_pod(namespace, name, body, self.headers.get("Content-Type", ""))
        elif match := _PODS.fullmatch(path):
            if method == "GET":
                store.get_namespace(match.group(1))
                return store.list_pods(match.group(1), selector)
            if method == "POST":
                return store.create_pod(match.group(1), body or {})
        elif (match := _NAMESPACE.fullmatch(path)) and method == "GET":
            return store.get_namespace(match.group(1))
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _exec(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
        def flag(key: str) -> bool:
            return (query.get(key) or ["false"])[0].lower() in ("true", "1")

        if self.headers.get("Upgrade", "").lower() != "websocket" or not self.headers.get("Sec-WebSocket-Key"):
            raise ApiError(400, "BadRequest", "Upgrade request required")
        offered = [item.strip() for item in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        protocol = next((item for item in self.fake.protocols if item in offered), None)
        if protocol is None:
            raise ApiError(
                400, "BadRequest", f"unsupported subprotocols {offered}; this server speaks {list(self.fake.protocols)}"
            )
        argv = query.get("command") or []
        if not argv:
            raise ApiError(400, "BadRequest", "you must specify at least 1 command")
        if flag("tty"):
            raise ApiError(400, "BadRequest", "the fake API server does not allocate TTYs")
        container_id = self.fake.store.exec_target(namespace, name, (query.get("container") or [""])[0] or None)
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(self.headers["Sec-WebSocket-Key"]))
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = ServerWebSocket(self.rfile, self.connection)
        bridge = ExecBridge(ws, self.fake.docker.api, container_id, argv, protocol)
        bridge.run(stdin=flag("stdin"), stdout=flag("stdout"), stderr=flag("stderr"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llm_sandbox.testing.fake_kube KUBECONFIG_PATH", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with FakeKubeServer() as server:
        server.write_kubeconfig(args[0])
        print(f"serving at {server.url}; KUBECONFIG={args[0]}; Ctrl-C stops and removes every pod", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
