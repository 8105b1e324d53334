"""Attacks on library installs, for real: what a run plants or leaves behind must not run with the network on.

A run plants executables on every PATH folder it can write and in its own library prefix, import hooks and
package-manager configuration, and processes that outlive it; then the library installs. Each attack checks that
nothing planted ran (markers the planted code would write stay absent), that the install worked from the real
index, that the install window's network held only this container, and that the next run is correct.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import TEST_LABEL, Harness
from llm_sandbox import ContainerError, SandboxSession
from llm_sandbox.backends.oci import INSTALL_NETWORK_LABEL, INSTALL_NETWORK_PREFIX, sweep_install_networks
from llm_sandbox.labels import MANAGED_LABEL, OWNER_PID_LABEL, sandbox_labels
from llm_sandbox.languages.base import USER_PREFIX

MARKERS = "/tmp/llm-sandbox-attack-markers"  # planted code appends here when it runs (a folder open to all)

# A run plants programs under the names root's and the installs' commands use, in every PATH folder it can write
# and in the bin folders of its own prefix; each would note that it ran (with its uid) and then fail.
PLANT_PROGRAMS = f"""
import os, stat
names = ["timeout", "apt-get", "mktemp", "rm", "sh", "env", "kill", "pip", "pip3", "npm", "python3", "micromamba"]
folders = [p for p in os.environ.get("PATH", "").split(":") if p]
folders += ["{USER_PREFIX}/bin", "{USER_PREFIX}/python/bin", "{USER_PREFIX}/node/node_modules/.bin"]
os.makedirs("{MARKERS}", exist_ok=True)
os.chmod("{MARKERS}", 0o1777)
planted = []
for folder in folders:
    if folder.startswith("{USER_PREFIX}/"):
        os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        continue
    for name in names:
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            continue  # never break the sandbox's own tools: only names that are not there yet
        with open(path, "w") as script:
            script.write("#!/bin/sh\\necho \\"$0 uid=$(id -u)\\" >> {MARKERS}/programs\\nexit 97\\n")
        os.chmod(path, 0o755)
        planted.append(path)
print("\\n".join(planted))
"""

LIST_MARKERS = ["/bin/sh", "-c", f"cat {MARKERS}/* 2>/dev/null; true"]


# Import hooks in the prefix (a .pth, a sitecustomize and a usercustomize that would note they ran), and pip
# configuration in the code's HOME (the workdir) pointing at an index that does not exist.
def _hook(name: str) -> str:
    return f"import os\nopen('{MARKERS}/{name}', 'a').write('ran as %d\\n' % os.getuid())\n"


HOOKS = {"pth": _hook("pth"), "sitecustomize": _hook("sitecustomize"), "usercustomize": _hook("usercustomize")}
PLANT_PYTHON_HOOKS = f"""
import json, os
site = "{USER_PREFIX}/python"
os.makedirs(site, exist_ok=True)
os.makedirs("{MARKERS}", exist_ok=True)
os.chmod("{MARKERS}", 0o1777)
hooks = json.loads({json.dumps(json.dumps(HOOKS))})
with open(os.path.join(site, "zz-attack.pth"), "w") as pth:
    pth.write("import os; exec(" + repr(hooks["pth"]) + ")\\n")
for name in ("sitecustomize", "usercustomize"):
    with open(os.path.join(site, name + ".py"), "w") as custom:
        custom.write(hooks[name])
bogus = "[global]\\nindex-url = http://127.0.0.1:9/simple\\ntimeout = 2\\n"
for folder in (os.path.expanduser("~/.config/pip"), os.path.expanduser("~/.pip"), site):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "pip.conf"), "w") as conf:
        conf.write(bogus)
print("planted")
"""
REMOVE_PYTHON_HOOKS = (
    f"rm -f {USER_PREFIX}/python/zz-attack.pth {USER_PREFIX}/python/sitecustomize.py "
    f"{USER_PREFIX}/python/usercustomize.py {USER_PREFIX}/python/pip.conf"
)

# A process of the code's that records whether it ever saw a route (the install window's network).
WATCHER = (
    f'while :; do if [ -n "$(tail -n +2 /proc/net/route)" ]; then echo saw-network >> {MARKERS}/watcher; fi; '
    "sleep 0.05; done"
)
# Every process but the lister: "uid args".
PROCESSES = (
    "import os\nfor p in os.listdir('/proc'):\n"
    "    if p.isdigit() and int(p) != os.getpid():\n"
    "        try:\n"
    "            uid = os.stat('/proc/' + p).st_uid\n"
    "            args = open('/proc/%s/cmdline' % p, 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
    "        except OSError:\n            continue\n"
    "        print(uid, args)\n"
)
NO_ROUTE = "print(len(open('/proc/net/route').read().splitlines()) - 1)"


def markers(session: SandboxSession) -> str:
    return session.execute_command(LIST_MARKERS).stdout


@pytest.fixture
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python") as opened:
        yield opened


def test_programs_planted_on_path_and_in_the_prefix_never_run_during_an_install(
    backend: Harness, session: SandboxSession
) -> None:
    planted = session.run(PLANT_PROGRAMS)
    assert planted.exit_code == 0, planted.stderr
    paths = planted.stdout.split()
    assert any(path.startswith(USER_PREFIX) for path in paths)  # the attack really planted
    if backend.name != "micromamba":  # the stand-in image gives its environment to the code's user on purpose
        # Nothing on the PATH the code runs with is the code's to write, but its own prefix.
        assert [path for path in paths if not path.startswith(USER_PREFIX + "/")] == []
    session.install(["six==1.16.0"])
    assert markers(session) == ""
    result = session.run("import six\nprint(six.__version__)")
    assert (result.exit_code, result.stdout) == (0, "1.16.0\n"), result.stderr


def test_import_hooks_and_pip_configuration_of_the_code_are_not_read_by_the_install(session: SandboxSession) -> None:
    planted = session.run(PLANT_PYTHON_HOOKS)
    assert (planted.exit_code, planted.stdout) == (0, "planted\n"), planted.stderr
    # The hooks are live for the code itself: a fresh interpreter imports the sitecustomize on its PYTHONPATH.
    assert session.execute_command(["python3", "-c", "pass"]).exit_code == 0
    assert "sitecustomize" in session.execute_command(["/bin/sh", "-c", f"ls {MARKERS}"]).stdout
    session.execute_command(["/bin/sh", "-c", f"rm -f {MARKERS}/*"])
    output = session.install(["six==1.16.0"])  # pip.conf names an index that does not exist: the real one is used
    assert "127.0.0.1:9" not in output.stdout + output.stderr
    assert markers(session) == ""
    assert session.execute_command(REMOVE_PYTHON_HOOKS).exit_code == 0
    result = session.run("import six\nprint(six.__version__)")
    assert (result.exit_code, result.stdout) == (0, "1.16.0\n"), result.stderr
    assert markers(session) == ""


@dataclass
class WindowWatch:
    """What a thread saw of the sandbox's networks while an install ran."""

    networks: list[set[str]] = field(default_factory=list)
    install_networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)


def _networks_of(engine_client: Any, container_id: str) -> set[str]:
    attrs = engine_client.containers.get(container_id).attrs
    return set(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())


def _members(engine_client: Any, network: str) -> set[str]:
    return {container.id for container in engine_client.containers.list(all=True, filters={"network": network})}


def _network_names(engine_client: Any) -> set[str]:
    return {str(network.name) for network in engine_client.networks.list()}


def _inspect_network(engine_client: Any, name: str) -> dict[str, Any]:
    network = engine_client.networks.get(name)
    return dict(network.attrs)


def _probe(engine_client: Any, container_id: str, address: str) -> str:
    """From inside the sandbox (as the code's uid, through the engine): was there a route, and could it connect?"""
    script = (
        "import socket\n"
        "def routes():\n    return len(open('/proc/net/route').read().splitlines()) - 1\n"
        "before = routes()\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, 8000), timeout=1).close()\n    reached = 'reached'\n"
        "except OSError as error:\n    reached = 'refused:' + type(error).__name__\n"
        "print(before, routes(), reached)\n"
    )
    container = engine_client.containers.get(container_id)
    _code, output = container.exec_run(["/usr/bin/python3", "-I", "-c", script], user="65534:65534", demux=True)
    stdout = output[0] if isinstance(output, tuple) else output
    return (stdout or b"").decode().strip()


def _watch(engine_client: Any, container_id: str, other: str, done: threading.Event, seen: WindowWatch) -> None:
    while not done.is_set():
        try:
            names = _networks_of(engine_client, container_id)
        except Exception:
            continue
        seen.networks.append(names)
        for name in names:
            if name.startswith(INSTALL_NETWORK_PREFIX) and name not in seen.install_networks:
                try:
                    seen.install_networks[name] = _inspect_network(engine_client, name)
                    seen.members[name] = _members(engine_client, name)
                except Exception:
                    pass
        if any(name.startswith(INSTALL_NETWORK_PREFIX) for name in names):
            try:
                seen.probes.append(_probe(engine_client, container_id, other))
            except Exception:
                pass
        time.sleep(0.02)


def _address(engine_client: Any, container: Any) -> str:
    container.reload()
    for network in (container.attrs.get("NetworkSettings") or {}).get("Networks", {}).values():
        if network.get("IPAddress"):
            return str(network["IPAddress"])
    raise AssertionError(f"the test's server container has no address: {container.attrs.get('NetworkSettings')}")


@pytest.fixture
def neighbours(backend: Harness, engine_client: Any) -> Iterator[str | None]:
    """Where the other containers of the window test live: the engine's default network on Docker (whose bridge
    networks are kept apart); on Podman an isolated network of the test's, standing for another sandbox's install
    window (Podman 4.3's netavark isolates isolated networks from each other only: a window can reach containers
    on a non-isolated network such as the default ``podman``, where no sandbox of the library ever is)."""
    if backend.engine != "podman":
        yield None
        return
    name = f"llm-sandbox-test-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    body = {"name": name, "driver": "bridge", "labels": {TEST_LABEL: str(os.getpid())}, "options": {"isolate": "true"}}
    engine_client.api.post("/networks/create", data=json.dumps(body)).raise_for_status()
    try:
        yield name
    finally:
        engine_client.api.delete(f"/networks/{name}", params={"force": "true"})


def _move_to(engine_client: Any, container: Any, network: str | None) -> None:
    if network is None:
        return
    for action, target in (("disconnect", "podman"), ("connect", network)):
        body = json.dumps({"Container": container.id})
        engine_client.api.post(f"/networks/{target}/{action}", data=body).raise_for_status()


@pytest.mark.requires("network_switch", "user_switch")
def test_the_install_window_is_a_network_of_its_own_and_is_gone_afterwards(
    backend: Harness, engine_client: Any, make_container: Any, neighbours: str | None
) -> None:
    server = make_container(command=["python3", "-m", "http.server", "8000"])
    _move_to(engine_client, server, neighbours)
    address = _address(engine_client, server)
    # The probe works: a container on the server's network reaches it.
    control = make_container(command=["sleep", "infinity"])
    _move_to(engine_client, control, neighbours)
    deadline = time.monotonic() + 20
    answer = ""
    while time.monotonic() < deadline and not answer.endswith("reached"):
        answer = _probe(engine_client, control.id, address)
    assert answer.endswith("reached"), answer
    with backend.session(lang="python") as session:
        container_id = session.container_id
        assert container_id is not None
        seen = WindowWatch()
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(engine_client, container_id, address, done, seen))
        watcher.start()
        try:
            session.install(["requests==2.31.0"])  # a few packages: the window stays open a moment
        finally:
            done.set()
            watcher.join()
        windows = [names for names in seen.networks if any(n.startswith(INSTALL_NETWORK_PREFIX) for n in names)]
        assert windows, f"the install window was never seen: {seen.networks}"
        assert all(len(names) == 1 for names in windows), windows  # the install network alone
        assert len(seen.install_networks) == 1
        [(name, attrs)] = seen.install_networks.items()
        labels = attrs.get("Labels") or attrs.get("labels") or {}
        assert labels.get(MANAGED_LABEL) == "true"
        assert labels.get(OWNER_PID_LABEL) is not None
        assert labels.get(INSTALL_NETWORK_LABEL) == container_id
        assert seen.members[name] == {container_id}  # nothing else on it
        routed = [probe for probe in seen.probes if probe.split()[:2] != ["0", "0"]]
        assert routed, f"no probe ran inside the window: {seen.probes}"
        assert not any(probe.endswith("reached") for probe in seen.probes), seen.probes
        # After the window: the network is gone and the container has no route.
        assert name not in _network_names(engine_client)
        assert not any(n.startswith(INSTALL_NETWORK_PREFIX) for n in _networks_of(engine_client, container_id))
        assert session.run(NO_ROUTE).stdout == "0\n"
        assert session.run("import requests\nprint(requests.__version__)").stdout == "2.31.0\n"


@pytest.mark.requires("network_switch", "user_switch")
def test_no_process_of_the_code_is_alive_while_the_network_is_on(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python") as session:
        container_id = session.container_id
        assert container_id is not None
        session.execute_command(["/bin/sh", "-c", f"mkdir -p {MARKERS} && chmod 1777 {MARKERS}"])
        # A run leaves a detached watcher behind, and a python run leaves the warm interpreter waiting.
        session.run(
            "import subprocess\n"
            f"subprocess.Popen(['/bin/sh', '-c', {WATCHER!r}], start_new_session=True,\n"
            "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print('left')"
        )
        # And a long-lived process of the code's (as an interactive kernel would be), which outlives runs.
        assert session.sandbox is not None
        session.sandbox.runner.spawn(["/bin/sh", "-c", WATCHER])
        deadline = time.monotonic() + 10
        listed = ""
        while time.monotonic() < deadline and "/bin/sh -c while" not in listed:
            listed = session.run(PROCESSES).stdout
        assert "65534 /bin/sh -c while" in listed, listed  # the watcher is alive before the install
        session.install(["six==1.16.0"])
        time.sleep(0.5)
        assert markers(session) == ""  # no watcher ever saw the install window's network
        listed = session.run(PROCESSES).stdout
        assert "/bin/sh -c while" not in listed, listed
        result = session.run("import six\nprint(six.__version__)")
        assert (result.exit_code, result.stdout) == (0, "1.16.0\n"), result.stderr


@pytest.mark.requires("network_switch", "user_switch")
def test_a_sandbox_whose_window_cannot_be_closed_is_removed_and_replaced(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python") as session:
        first = session.container_id
        assert first is not None
        done = threading.Event()

        def kill_in_the_window() -> None:
            while not done.is_set():
                try:
                    if any(n.startswith(INSTALL_NETWORK_PREFIX) for n in _networks_of(engine_client, first)):
                        engine_client.containers.get(first).kill()
                        return
                except Exception:
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_in_the_window)
        killer.start()
        try:
            with pytest.raises(ContainerError) as raised:
                session.install(["requests==2.31.0"])
        finally:
            done.set()
            killer.join()
        message = str(raised.value)
        assert "new one" in message or "replace" in message, message
        # The next call gets a new sandbox, which works, and no install network is left.
        assert session.run("print('next')").stdout == "next\n"
        assert session.container_id != first
        prefix = INSTALL_NETWORK_PREFIX + first[:12]
        assert [name for name in _network_names(engine_client) if name.startswith(prefix)] == []


# C++ installs run as root: the Debian packages of the default cpp image (Docker only here).


def test_cpp_install_as_root_runs_nothing_the_code_planted() -> None:
    with SandboxSession(lang="cpp") as session:
        planted = session.execute_command(["/usr/bin/python3", "-c", PLANT_PROGRAMS])
        assert planted.exit_code == 0, planted.stderr
        assert any(path.startswith(USER_PREFIX) for path in planted.stdout.split())
        assert [path for path in planted.stdout.split() if not path.startswith(USER_PREFIX + "/")] == []
        # The code's own /tmp holds planted programs too: root's download folder is a fresh mktemp -d of its own.
        session.execute_command(["/bin/sh", "-c", "cp /opt/llm-sandbox/user/bin/rm /tmp/rm; cp /tmp/rm /tmp/mktemp"])
        session.install(["nlohmann-json3-dev"])
        assert markers(session) == ""
        code = (
            "#include <iostream>\n#include <nlohmann/json.hpp>\nint main() {\n"
            '    std::cout << nlohmann::json::parse("{\\"answer\\": 42}")["answer"] << std::endl;\n}\n'
        )
        result = session.run(code)
        assert (result.exit_code, result.stdout) == (0, "42\n"), result.stderr


def test_npm_configuration_and_project_files_of_the_code_are_not_read_by_the_install() -> None:
    with SandboxSession(lang="javascript") as session:
        plant = (
            f"mkdir -p {MARKERS} && chmod 1777 {MARKERS} && mkdir -p {USER_PREFIX}/node/node_modules && "
            "bogus='registry=http://127.0.0.1:9/' && "
            f'for f in "$HOME/.npmrc" {USER_PREFIX}/node/.npmrc {USER_PREFIX}/.npmrc; do echo "$bogus" > "$f"; done && '
            f'printf \'%s\' \'{{"name":"x","version":"1.0.0","scripts":{{"preinstall":"echo ran >> '
            f'{MARKERS}/npm-script","postinstall":"echo ran >> {MARKERS}/npm-script"}}}}\' '
            f"> {USER_PREFIX}/node/package.json"
        )
        assert session.execute_command(["/bin/sh", "-c", plant]).exit_code == 0
        session.install(["dayjs@1.11.10"])
        assert markers(session) == ""
        result = session.run('console.log(require("dayjs")("2024-02-29").add(1, "year").format("YYYY-MM-DD"));')
        assert (result.exit_code, result.stdout) == (0, "2025-02-28\n"), result.stderr


def _create_network(engine_client: Any, engine: str, name: str, labels: dict[str, str]) -> None:
    if engine == "podman":
        body = {"name": name, "driver": "bridge", "labels": labels}
        engine_client.api.post("/networks/create", data=json.dumps(body)).raise_for_status()
    else:
        engine_client.networks.create(name, driver="bridge", labels=labels)


@pytest.mark.requires("network_switch")
def test_the_sweep_removes_install_networks_of_dead_owners_only(backend: Harness, engine_client: Any) -> None:
    engine = backend.engine or "docker"
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid names an owner that is gone
    suffix = f"{os.getpid()}-{time.monotonic_ns() % 10**8}"
    orphan, alive = f"{INSTALL_NETWORK_PREFIX}test-orphan-{suffix}", f"{INSTALL_NETWORK_PREFIX}test-alive-{suffix}"
    base = sandbox_labels("test-sandbox")
    _create_network(
        engine_client, engine, orphan, {**base, OWNER_PID_LABEL: str(finished.pid), INSTALL_NETWORK_LABEL: "x"}
    )
    _create_network(engine_client, engine, alive, {**base, INSTALL_NETWORK_LABEL: "y"})
    try:
        removed = sweep_install_networks(engine_client, sdk=engine)
        names = _network_names(engine_client)
        assert orphan in removed
        assert orphan not in names
        assert alive in names  # its owner (this process) lives
        assert alive not in removed
    finally:
        for name in (orphan, alive):
            for network in engine_client.networks.list():
                if network.name == name:
                    network.remove()


GEMSPEC = (
    'Gem::Specification.new do |s|\n  s.name = "greet"\n  s.version = "0.1.0"\n  s.summary = "test gem"\n'
    '  s.authors = ["llm-sandbox"]\n  s.files = ["lib/greet.rb"]\nend\n'
)
R_DESCRIPTION = (
    "Package: greet\nVersion: 0.1.0\nTitle: Test Package\nDescription: A test package.\nLicense: MIT\n"
    "Author: llm-sandbox\nMaintainer: llm-sandbox <test@example.com>\n"
)


def _write(session: SandboxSession, files: dict[str, str]) -> None:
    script = "import json, os, sys\nfor path, text in json.loads(sys.argv[1]).items():\n"
    script += "    os.makedirs(os.path.dirname(path), exist_ok=True)\n    open(path, 'w').write(text)\n"
    written = session.execute_command(["python3", "-c", script, json.dumps(files)])
    assert written.exit_code == 0, written.stderr


def test_gem_configuration_and_planted_specifications_are_not_read_by_the_install() -> None:
    with SandboxSession(lang="ruby") as session:
        home = session.options.workdir
        evil = f"File.write('{MARKERS}/gemspec', 'ran')\n"
        _write(
            session,
            {
                # A .gemrc that would send installs elsewhere, and a gem specification (Ruby code) in the prefix.
                f"{home}/.gemrc": "install: --install-dir /tmp/planted-gems\ngem: --install-dir /tmp/planted-gems\n",
                f"{USER_PREFIX}/ruby/specifications/evil-1.0.gemspec": evil + GEMSPEC.replace("greet", "evil"),
                f"{home}/src/greet/greet.gemspec": GEMSPEC,
                f"{home}/src/greet/lib/greet.rb": 'module Greet\n  def self.hello\n    "hello"\n  end\nend\n',
            },
        )
        session.execute_command(["/bin/sh", "-c", f"mkdir -p {MARKERS} && chmod 1777 {MARKERS}"])
        built = session.execute_command("cd src/greet && gem build greet.gemspec")
        assert built.exit_code == 0, built.stderr
        session.install([f"{home}/src/greet/greet-0.1.0.gem"])
        assert markers(session) == ""
        assert session.execute_command("test -e /tmp/planted-gems").exit_code != 0
        session.execute_command(["rm", "-f", f"{USER_PREFIX}/ruby/specifications/evil-1.0.gemspec"])
        result = session.run('require "greet"\nputs Greet.hello')
        assert (result.exit_code, result.stdout) == (0, "hello\n"), result.stderr


def test_r_profiles_and_environ_files_of_the_code_are_not_read_by_the_install() -> None:
    with SandboxSession(lang="r") as session:
        home = session.options.workdir
        hook = f'cat("ran", file = "{MARKERS}/rprofile", append = TRUE)\n'
        _write(
            session,
            {
                f"{home}/.Rprofile": hook,
                f"{home}/.Renviron": f"R_PROFILE_USER={home}/.Rprofile\nR_LIBS_USER=/tmp/planted-lib\n",
                f"{home}/src/greet/DESCRIPTION": R_DESCRIPTION,
                f"{home}/src/greet/NAMESPACE": "export(hello)\n",
                f"{home}/src/greet/R/hello.R": 'hello <- function() "hello"\n',
            },
        )
        session.execute_command(["/bin/sh", "-c", f"mkdir -p {MARKERS} && chmod 1777 {MARKERS}"])
        built = session.execute_command("cd src && R_PROFILE_USER=/dev/null R CMD build --no-manual greet")
        assert built.exit_code == 0, built.stderr
        session.execute_command(["/bin/sh", "-c", f"rm -f {MARKERS}/*"])
        session.install([f"{home}/src/greet_0.1.0.tar.gz"])
        assert markers(session) == ""
        assert session.execute_command("test -e /tmp/planted-lib").exit_code != 0
        session.execute_command(["rm", "-f", f"{home}/.Rprofile", f"{home}/.Renviron"])
        result = session.run('library(greet)\ncat(hello(), "\\n", sep = "")')
        assert (result.exit_code, result.stdout) == (0, "hello\n"), result.stderr
