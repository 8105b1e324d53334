"""The Bubblewrap backend's command lines (pure logic; the backend itself runs in the contract suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_sandbox.backends import bwrap_argv
from llm_sandbox.backends.bwrap_rootfs import RootfsCache, cache_key, image_environment
from llm_sandbox.errors import ContainerError, ImageNotFoundError


def test_the_sandbox_unshares_every_namespace_but_the_user_one_and_no_network_unless_asked() -> None:
    argv = bwrap_argv.bwrap_argv("/s/root", "/sandbox", ["sleep", "infinity"], info_fd=7)
    assert set(bwrap_argv.UNSHARED) <= set(argv)
    assert "--unshare-user" not in argv and "--unshare-all" not in argv
    assert {"--die-with-parent", "--new-session"} <= set(argv)
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == ["/s/root", "/"]
    assert argv[-2:] == ["sleep", "infinity"]
    shared = bwrap_argv.bwrap_argv("/s/root", "/sandbox", ["true"], info_fd=7, network=True)
    assert "--unshare-net" not in shared and "/etc/resolv.conf" in shared


def test_an_exec_sets_user_bounding_set_and_no_new_privs_before_its_command() -> None:
    argv = bwrap_argv.user_argv("65534:65534", bwrap_argv.HELPER_CAPABILITIES, "/sandbox")
    assert argv[:4] == ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    assert "--bounding-set=-all,+setuid,+setgid,+kill,+setpcap" in argv
    assert "--no-new-privs" in argv
    assert argv[-1] == "/sandbox"  # the working folder is entered as that user, by the script before it
    assert bwrap_argv.user_argv(None, (), "/")[1:3] == ["--reuid=0", "--regid=0"]
    assert "--bounding-set=-all" in bwrap_argv.user_argv("sandbox", (), "/")


def test_the_install_step_has_the_network_and_writes_only_what_it_is_given() -> None:
    argv = bwrap_argv.install_bwrap_argv("/s/root", ["/opt/llm-sandbox/user"], "/sandbox", ("setuid",))
    assert "--unshare-net" not in argv and "--unshare-pid" in argv
    assert argv[argv.index("--ro-bind") + 1 : argv.index("--ro-bind") + 3] == ["/s/root", "/"]
    at = argv.index("--bind")
    assert argv[at : at + 3] == ["--bind", "/s/root/opt/llm-sandbox/user", "/opt/llm-sandbox/user"]
    assert "CAP_SETUID" in argv
    system = bwrap_argv.install_bwrap_argv("/s/root", None, "/sandbox", ())
    assert system[system.index("--bind") + 1 : system.index("--bind") + 3] == ["/s/root", "/"]


def test_the_launcher_mounts_the_overlay_and_the_capped_places_then_execs_bwrap() -> None:
    mounts = bwrap_argv.Mounts("/cache/rootfs", "/s/upper", "/s/work", "/s/root")
    place = bwrap_argv.TmpfsPlace("/tmp", 1024, 0o1777, (0, 0))
    argv = bwrap_argv.launch_argv(mounts, [place], ["/cg/a/cgroup.procs", "/cg/b/cgroup.procs"], ["bwrap", "x"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "/cg/a/cgroup.procs /cg/b/cgroup.procs" in argv
    assert "lowerdir=/cache/rootfs,upperdir=/s/upper,workdir=/s/work" in argv
    options = "size=1024,mode=1777,uid=0,gid=0,nosuid,nodev"
    assert argv[-6:] == [options, "/s/root/tmp", "/cache/rootfs/tmp", "--", "bwrap", "x"]
    nested = [bwrap_argv.TmpfsPlace("/tmp/work", 1, 0o755, (1, 1)), place]
    ordered = bwrap_argv.launch_argv(mounts, nested, [], ["bwrap"])
    assert ordered.index("/s/root/tmp") < ordered.index("/s/root/tmp/work")  # the outer place is mounted first
    plain = bwrap_argv.launch_argv(mounts, [place], [], ["bwrap"], copy_up=False)  # a default image: nothing there
    assert plain[-5:] == [options, "/s/root/tmp", "", "--", "bwrap"]


def test_image_configuration_and_cache_names() -> None:
    assert image_environment({"Env": ["PATH=/usr/bin:/bin", "EMPTY=", "odd"]}) == {"PATH": "/usr/bin:/bin", "EMPTY": ""}
    assert cache_key("sha256:" + "ab" * 32) == "ab" * 32
    with pytest.raises(ContainerError):
        cache_key("sha256:../../etc")


def test_an_exported_image_is_used_without_any_engine(tmp_path: Path) -> None:
    export = tmp_path / ("ab" * 32)
    (export / "rootfs").mkdir(parents=True)
    saved = {"image": "llm-sandbox/python:bookworm", "engine": "docker", "config": {"Env": ["PATH=/usr/bin"]}}
    (export / "config.json").write_text(json.dumps(saved))
    cache = RootfsCache(tmp_path, clients={})  # no engine reachable
    found = cache.rootfs("llm-sandbox/python:bookworm")
    assert (found.path, found.environment) == (export / "rootfs", {"PATH": "/usr/bin"})
    with pytest.raises(ImageNotFoundError):
        cache.rootfs("llm-sandbox/ruby:bookworm")
