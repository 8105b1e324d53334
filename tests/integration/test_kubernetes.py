"""What is particular to the Kubernetes backend, against the fake API server and the unmodified client: the
restricted pod, its lifecycle, the namespace rule, the network labels, binary-safe exec streams on v4 and v5,
hostile archives made inside the pod, the label sweep, and errors from the API server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import (
    ContainerError,
    FileTooLargeError,
    ImageNotFoundError,
    SandboxSession,
    UnknownOptionError,
    UnsafeArchiveError,
)
from llm_sandbox.backends.base import Command
from llm_sandbox.backends.kubernetes import KubernetesBackend, sweep_pods
from llm_sandbox.images import default_image
from llm_sandbox.labels import EGRESS_LABEL, MANAGED_LABEL
from llm_sandbox.testing.fake_kube import FakeKubeServer
from llm_sandbox.testing.fake_kube_admission import ENFORCE_LABEL
from llm_sandbox.testing.fake_kube_exec import V4

PYTHON = default_image("python")
ALL_BYTES = bytes(range(256)) * 4


def _pods(kube_api: Any, namespace: str = "default") -> dict[str, Any]:
    return {pod.metadata.name: pod for pod in kube_api.list_namespaced_pod(namespace).items}


@pytest.fixture(scope="module")
def session(fake_kube: FakeKubeServer) -> Iterator[SandboxSession]:
    with SandboxSession(backend="kubernetes", lang="python") as opened:
        yield opened


@pytest.fixture(scope="module")
def restricted_namespace(kube_api: Any) -> str:
    """A namespace that enforces the "restricted" Pod Security Standard (Pod Security Admission labels)."""
    kube_api.create_namespace({"metadata": {"name": "restricted", "labels": {ENFORCE_LABEL: "restricted"}}})
    return "restricted"


def test_the_default_pod_meets_the_restricted_standard(session: SandboxSession, kube_api: Any) -> None:
    pod = kube_api.read_namespaced_pod(session.container_id, "default")
    spec, container = pod.spec, pod.spec.containers[0]
    assert spec.restart_policy == "Never"
    assert spec.automount_service_account_token is False
    assert spec.security_context.run_as_non_root is True
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.security_context.run_as_user == 65534
    assert container.resources.limits == {"memory": "1Gi", "cpu": "1", "ephemeral-storage": "1Gi"}
    assert set(container.resources.requests) == {"cpu", "memory"}
    workdir = spec.volumes[0]
    assert workdir.empty_dir.medium == "Memory" and workdir.empty_dir.size_limit
    assert container.volume_mounts[0].mount_path == "/sandbox"
    assert container.command == ["sleep", "infinity"]
    assert pod.metadata.labels[MANAGED_LABEL] == "true"
    assert pod.metadata.labels[EGRESS_LABEL] == "deny"
    # ...and that is what the code sees.
    assert session.execute_command("id -u; ls /var/run/secrets 2>&1").stdout.startswith("65534\n")
    assert "tmpfs" in session.execute_command("grep ' /sandbox ' /proc/mounts").stdout


def test_a_restricted_namespace_admits_the_default_pod_and_refuses_a_privileged_one(restricted_namespace: str) -> None:
    with SandboxSession(backend="kubernetes", kube_namespace=restricted_namespace, lang="python") as session:
        assert session.run("print('admitted')").stdout == "admitted\n"
    privileged = {
        "spec": {"containers": [{"name": "c", "image": PYTHON, "securityContext": {"privileged": True}}]},
    }
    with pytest.raises(ContainerError, match="PodSecurity"):
        SandboxSession(
            backend="kubernetes", kube_namespace=restricted_namespace, pod_manifest=privileged, lang="python"
        ).open()


def test_the_pod_is_deleted_on_close(kube_api: Any, fake_kube: FakeKubeServer) -> None:
    session = SandboxSession(backend="kubernetes", lang="python").open()
    name = session.container_id
    assert name in _pods(kube_api)
    started = time.monotonic()
    session.close()
    session.close()
    assert time.monotonic() - started < 2
    assert name not in _pods(kube_api)


def test_a_failed_open_deletes_the_pod_it_created(kube_api: Any, fake_kube: FakeKubeServer) -> None:
    no_python = {
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": PYTHON,
                    "command": ["/bin/sleep", "infinity"],
                    "env": [{"name": "PATH", "value": "/none"}],
                }
            ]
        }
    }
    before = set(_pods(kube_api))
    with pytest.raises(ContainerError, match="python3"):
        SandboxSession(backend="kubernetes", pod_manifest=no_python, lang="python").open()
    with pytest.raises(ImageNotFoundError, match="kind load"):
        SandboxSession(backend="kubernetes", image="llm-sandbox/no-such-image:1", lang="python").open()
    assert set(_pods(kube_api)) == before


def test_the_namespace_of_the_manifest_wins_for_every_call(kube_api: Any, fake_kube: FakeKubeServer) -> None:
    kube_api.create_namespace({"metadata": {"name": "team-a"}})
    manifest = {"metadata": {"namespace": "team-a"}, "spec": {"containers": [{"name": "work", "image": PYTHON}]}}
    with SandboxSession(backend="kubernetes", kube_namespace="default", pod_manifest=manifest, lang="python") as s:
        assert s.container_id in _pods(kube_api, "team-a")
        assert s.container_id not in _pods(kube_api, "default")
        assert s.execute_command("hostname").stdout.strip() == s.container_id
        s.execute_command("mkdir -p /tmp/out && echo data > /tmp/out/f")
        s.install(["six"])  # the network label is patched in team-a too
    assert not _pods(kube_api, "team-a")


def test_network_is_a_label_for_the_cluster_policy(kube_api: Any, fake_kube: FakeKubeServer) -> None:
    with SandboxSession(backend="kubernetes", lang="python", network="full") as session:
        pod = kube_api.read_namespaced_pod(session.container_id, "default")
        assert pod.metadata.labels[EGRESS_LABEL] == "allow"


def test_commit_container_and_docker_options_are_refused_up_front() -> None:
    with pytest.raises(UnknownOptionError, match="commit_container"):
        SandboxSession(backend="kubernetes", commit_container=True)
    with pytest.raises(UnknownOptionError, match="resources="):
        SandboxSession(backend="kubernetes", runtime_configs={"mem_limit": "2g"})
    with pytest.raises(UnknownOptionError, match="dockerfile"):
        SandboxSession(backend="kubernetes", dockerfile=__file__)


def test_binary_files_round_trip_and_sparse_files_are_refused(session: SandboxSession, tmp_path: Path) -> None:
    local = tmp_path / "all-bytes.bin"
    local.write_bytes(ALL_BYTES)
    session.copy_to_runtime(str(local), "/sandbox/bin/all-bytes.bin")
    session.copy_from_runtime("/sandbox/bin", str(tmp_path / "back"))
    assert (tmp_path / "back" / "bin" / "all-bytes.bin").read_bytes() == ALL_BYTES
    session.execute_command("truncate -s 50G /tmp/sparse && mkdir -p /tmp/d && truncate -s 2G /tmp/d/sparse")
    with pytest.raises(FileTooLargeError):
        session.copy_from_runtime("/tmp/sparse", str(tmp_path / "sparse"))
    with pytest.raises(FileTooLargeError):
        session.copy_from_runtime("/tmp/d", str(tmp_path / "d"))
    session.execute_command("rm -rf /tmp/sparse /tmp/d")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["all-bytes.bin", "back"]


def test_a_hostile_tar_in_the_pod_writes_nothing(kube_api: Any, fake_kube: FakeKubeServer, tmp_path: Path) -> None:
    # The owner of an attached pod (or code that can write to PATH) controls what `tar` is: the archive is hostile.
    evil = textwrap.dedent(
        """
        import io, sys, tarfile
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            for name in ("data/ok.txt", "data/../../escaped.txt"):
                info = tarfile.TarInfo(name); info.size = 2
                archive.addfile(info, io.BytesIO(b"hi"))
        sys.stdout.buffer.write(out.getvalue())
        """
    )
    failing = '/usr/bin/tar "$@"; exit 2'
    script = (
        f"printf '%s' {_quote(evil)} > /opt/evil.py && "
        "printf '#!/bin/sh\\nexec python3 /opt/evil.py\\n' > /usr/local/bin/tar && chmod +x /usr/local/bin/tar && "
        f"printf '#!/bin/sh\\n%s\\n' {_quote(failing)} > /usr/local/bin/failing-tar && "
        "chmod +x /usr/local/bin/failing-tar && mkdir -p /data && echo hi > /data/ok.txt && exec sleep infinity"
    )
    kube_api.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "hostile"},
            "spec": {"containers": [{"name": "c", "image": PYTHON, "command": ["sh", "-c", script]}]},
        },
    )
    try:
        with SandboxSession(backend="kubernetes", container_id="hostile", lang="python") as session:
            with pytest.raises(UnsafeArchiveError):
                session.copy_from_runtime("/data", str(tmp_path / "dest" / "data"))
            session.execute_command("mv /usr/local/bin/failing-tar /usr/local/bin/tar")
            with pytest.raises(ContainerError, match="tar failed"):  # a complete archive, but tar said it failed
                session.copy_from_runtime("/data", str(tmp_path / "dest" / "data"))
        assert not (tmp_path / "escaped.txt").exists()
        assert list(tmp_path.iterdir()) == []
    finally:
        kube_api.delete_namespaced_pod("hostile", "default", grace_period_seconds=0)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _exercise_streams(backend: KubernetesBackend, tmp_path: Path) -> None:
    """Binary-safe exec, duplex stream and archives through one backend."""
    printed = backend.exec(Command(["printf", "\\377\\000\\200ok"]))
    assert (printed.exit_code, printed.stdout) == (0, b"\xff\x00\x80ok")
    failed = backend.exec(
        Command(["sh", "-c", "echo out; echo err >&2; exit 7"], workdir="/tmp", environment={"A": "1"})
    )
    assert (failed.exit_code, failed.stdout, failed.stderr) == (7, b"out\n", b"err\n")
    missing = backend.exec(Command(["no-such-program"]))
    assert missing.exit_code == 127 and b"no-such-program" in missing.stderr
    stream = backend.open_stream(Command(["cat"]))
    stream.send(ALL_BYTES)
    echoed = b""
    while len(echoed) < len(ALL_BYTES):
        echoed += stream.recv(timeout=10)
    assert echoed == ALL_BYTES
    with pytest.raises(TimeoutError):
        stream.recv(timeout=0.3)
    stream.close()
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("in.bin")
        info.size = len(ALL_BYTES)
        archive.addfile(info, io.BytesIO(ALL_BYTES))
    backend.put_archive("/tmp", buffer.getvalue())
    assert backend.exec(Command(["sh", "-c", "cmp /tmp/in.bin /tmp/in.bin && wc -c < /tmp/in.bin"])).stdout == b"1024\n"
    archive_stream = backend.get_archive("/tmp/in.bin")
    try:
        assert not archive_stream.is_dir and archive_stream.size == len(ALL_BYTES)
        data = b"".join(archive_stream.chunks)
    finally:
        archive_stream.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("in.bin")
        assert member is not None and member.read() == ALL_BYTES


@pytest.mark.parametrize("protocols", [("v5.channel.k8s.io",), (V4,)], ids=["v5", "v4"])
def test_exec_streams_are_binary_safe_on_v4_and_v5(docker_client: Any, tmp_path: Path, protocols: tuple[str]) -> None:
    from kubernetes import client

    with FakeKubeServer(docker_client, protocols=protocols) as server:
        configuration = client.Configuration(host=server.url, api_key={"authorization": f"Bearer {server.token}"})
        api: Any = client.CoreV1Api(client.ApiClient(configuration))  # given dicts, as users do
        body = {
            "metadata": {"name": "streams"},
            "spec": {"containers": [{"name": "c", "image": PYTHON, "command": ["sleep", "infinity"]}]},
        }
        api.create_namespaced_pod("default", body)
        backend = KubernetesBackend(client=api)
        try:
            backend.attach("streams")
            _exercise_streams(backend, tmp_path)
        finally:
            backend.close()
            api.api_client.close()


def test_wrong_credentials_are_a_container_error_that_says_so(fake_kube: FakeKubeServer) -> None:
    from kubernetes import client

    configuration = client.Configuration(host=fake_kube.url, api_key={"authorization": "Bearer wrong"})
    api = client.CoreV1Api(client.ApiClient(configuration))
    try:
        with pytest.raises(ContainerError, match="credentials"):
            SandboxSession(backend="kubernetes", client=api, lang="python").open()
    finally:
        api.api_client.close()


def test_sweep_deletes_what_a_killed_process_left_behind(kube_api: Any, tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\nfrom llm_sandbox import SandboxSession\n"
        "session = SandboxSession(backend='kubernetes', lang='python').open()\n"
        "print(session.container_id, flush=True)\nsys.stdin.read()\n"
    )
    process = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdin is not None
    left = process.stdout.readline().strip()
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stdin.close()
    with SandboxSession(backend="kubernetes", lang="python") as alive:  # its owner lives: the sweep keeps it
        assert left in _pods(kube_api)
        assert sweep_pods(kube_api, namespace="default") == [f"default/{left}"]
        assert alive.container_id in _pods(kube_api)
    assert left not in _pods(kube_api)
