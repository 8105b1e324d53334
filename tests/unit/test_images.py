"""The image builder without an engine: names, hints, mirror parsing, recipe hashing and rebuild decisions."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.const import SupportedLanguage
from llm_sandbox.errors import ImageBuildError, LanguageNotSupportedError, UnsupportedBackendError
from llm_sandbox.images import (
    BASE_IMAGE,
    IMAGE_LANGUAGES,
    RECIPE_LABEL,
    ROOTFS_IMAGE,
    build_hint,
    default_image,
    normalize_language,
)
from llm_sandbox.images import engines as engines_module
from llm_sandbox.images import rootfs as rootfs_module
from llm_sandbox.images.__main__ import main
from llm_sandbox.images.builder import ImageBuilder, resolve_languages
from llm_sandbox.images.engines import CliEngine, ImageInfo
from llm_sandbox.images.recipes import ImageStep, image_plan, layer_hash, recipe_text, rootfs_hash
from llm_sandbox.images.rootfs import (
    DEFAULT_MIRROR,
    apt_source_files,
    extra_certificates,
    parse_debian_mirror,
    remove_scratch,
)
from llm_sandbox.languages.registry import LANGUAGES

# ---------------------------------------------------------------------------------------------------------
# Names and hints


def test_languages_match_the_public_language_enum() -> None:
    assert set(IMAGE_LANGUAGES) == {member.value for member in SupportedLanguage}


def test_image_languages_come_from_the_registry_in_build_order() -> None:
    assert tuple(LANGUAGES) == IMAGE_LANGUAGES
    assert IMAGE_LANGUAGES == ("python", "javascript", "java", "cpp", "go", "ruby", "r")


@pytest.mark.parametrize("lang", IMAGE_LANGUAGES)
def test_language_recipes_are_the_language_modules_image_recipes(lang: str) -> None:
    assert recipe_text(lang) == LANGUAGES[lang].image_recipe


@pytest.mark.parametrize("lang", IMAGE_LANGUAGES)
def test_default_image_names(lang: str) -> None:
    assert default_image(lang) == f"llm-sandbox/{lang}:bookworm"


def test_default_image_is_case_insensitive_and_accepts_the_enum() -> None:
    assert default_image("Python") == "llm-sandbox/python:bookworm"
    assert default_image(" JAVA ") == "llm-sandbox/java:bookworm"
    assert default_image(SupportedLanguage.CPP) == "llm-sandbox/cpp:bookworm"
    assert normalize_language(SupportedLanguage.R) == "r"


@pytest.mark.parametrize("bad", ["cobol", "", "python3", "c++"])
def test_default_image_rejects_unknown_languages(bad: str) -> None:
    with pytest.raises(LanguageNotSupportedError) as caught:
        default_image(bad)
    assert isinstance(caught.value, ValueError)
    assert "python, javascript, java, cpp, go, ruby, r" in str(caught.value)


def test_default_image_rejects_non_strings() -> None:
    with pytest.raises(LanguageNotSupportedError):
        default_image(42)  # type: ignore[arg-type]


def test_base_and_rootfs_tags() -> None:
    assert BASE_IMAGE == "llm-sandbox/base:bookworm"
    assert ROOTFS_IMAGE == "llm-sandbox/rootfs:bookworm"


def test_build_hint_for_docker_and_podman() -> None:
    assert build_hint("python") == "python -m llm_sandbox.images build python"
    assert build_hint("Go", "docker") == "python -m llm_sandbox.images build go"
    assert build_hint("ruby", "podman") == "python -m llm_sandbox.images build --engine podman ruby"
    assert build_hint(SupportedLanguage.R, "PODMAN") == "python -m llm_sandbox.images build --engine podman r"


def test_build_hint_errors() -> None:
    with pytest.raises(UnsupportedBackendError):
        build_hint("python", "kubernetes")
    with pytest.raises(LanguageNotSupportedError):
        build_hint("fortran")


def test_resolve_languages() -> None:
    assert resolve_languages(["python"]) == ["python"]
    assert resolve_languages(["Go", "go", "python"]) == ["go", "python"]
    assert resolve_languages(["all"]) == list(IMAGE_LANGUAGES)
    assert resolve_languages(["r", "all"]) == ["r", *[lang for lang in IMAGE_LANGUAGES if lang != "r"]]
    with pytest.raises(LanguageNotSupportedError):
        resolve_languages(["python", "klingon"])


def test_cli_rejects_unknown_language_without_touching_an_engine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "klingon"]) == 2
    assert "klingon" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Debian mirror

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    sources = _write(tmp_path / "debian.sources", DEB822)
    assert parse_debian_mirror([sources]) == "http://mirror.example.org/debian"


def test_mirror_skips_disabled_source_only_and_foreign_stanzas(tmp_path: Path) -> None:
    text = """\
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://sources-only.example.org/debian
Suites: bookworm

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro

Types: deb deb-src
URIs: mirror+file:///etc/apt/mirrors.txt
  https://second.example.org/debian
Suites: bookworm
"""
    sources = _write(tmp_path / "many.sources", text)
    assert parse_debian_mirror([sources]) == "https://second.example.org/debian"


def test_mirror_from_one_line_sources_list(tmp_path: Path) -> None:
    text = """\
# deb http://commented.example.org/debian bookworm main
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://ftp.example.org/debian bookworm main contrib
deb http://later.example.org/debian bookworm main
"""
    sources = _write(tmp_path / "sources.list", text)
    assert parse_debian_mirror([sources]) == "http://ftp.example.org/debian"


def test_mirror_falls_back_to_deb_debian_org(tmp_path: Path) -> None:
    security_only = _write(
        tmp_path / "security.list", "deb http://security.debian.org/debian-security bookworm-security main\n"
    )
    ubuntu = _write(tmp_path / "ubuntu.list", "deb http://archive.ubuntu.com/ubuntu jammy main\n")
    assert parse_debian_mirror([security_only, ubuntu, tmp_path / "missing.list"]) == DEFAULT_MIRROR
    assert parse_debian_mirror([]) == DEFAULT_MIRROR
    assert DEFAULT_MIRROR == "http://deb.debian.org/debian"


def test_mirror_for_another_suite(tmp_path: Path) -> None:
    sources = _write(tmp_path / "debian.sources", DEB822.replace("bookworm", "trixie"))
    assert parse_debian_mirror([sources]) == DEFAULT_MIRROR
    assert parse_debian_mirror([sources], suite="trixie") == "http://mirror.example.org/debian"


def test_apt_source_file_order(tmp_path: Path) -> None:
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    later = _write(sources_dir / "b.sources", DEB822)
    first = _write(sources_dir / "a.sources", DEB822)
    one_line = _write(sources_dir / "c.list", "deb http://x.example.org/debian bookworm main\n")
    _write(sources_dir / "old.list.disabled", "deb http://off.example.org/debian bookworm main\n")
    main_list = _write(tmp_path / "sources.list", "deb http://main.example.org/debian bookworm main\n")
    assert apt_source_files(main_list, sources_dir) == [first, later, main_list, one_line]
    assert apt_source_files(tmp_path / "absent.list", tmp_path / "absent.d") == []


# ---------------------------------------------------------------------------------------------------------
# Recipes and hashes


@pytest.mark.parametrize("lang", IMAGE_LANGUAGES)
def test_language_recipes_build_on_the_base_with_the_classic_builder(lang: str) -> None:
    text = recipe_text(lang)
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "ARG BASE_IMAGE=llm-sandbox/base:bookworm"
    assert instructions[1] == "FROM ${BASE_IMAGE}"
    body = "\n".join(instructions)
    assert "<<" not in body  # no heredocs
    assert "--mount" not in body
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE)  # no BuildKit frontend directive
    if lang != "python":
        assert "apt-get install -y --no-install-recommends" in text
        assert "rm -rf /var/lib/apt/lists/*" in text
        assert "update-ca-certificates" in text


def test_common_recipe_sets_up_the_helper_venv_workdir_and_ca_trust() -> None:
    text = recipe_text("common")
    assert "FROM ${ROOTFS_IMAGE}" in text
    assert "python3 -m venv /opt/venv" in text
    assert "chown -R 65534:65534 /opt/venv" in text
    assert "install -d -o 65534 -g 65534 -m 0755 /sandbox" in text
    assert "ENV PATH=/opt/venv/bin:$PATH" in text
    assert "update-ca-certificates" in text
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "NODE_EXTRA_CA_CERTS"):
        assert f"{variable}=/etc/ssl/certs/ca-certificates.crt" in text
    assert "PIP_DISABLE_PIP_VERSION_CHECK=1" in text


def test_missing_recipe_is_a_build_error() -> None:
    with pytest.raises(ImageBuildError):
        recipe_text("cobol")


def test_rootfs_hash_is_stable_and_covers_the_ca_bundle() -> None:
    first = rootfs_hash(b"bundle")
    assert first == rootfs_hash(b"bundle")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert first != rootfs_hash(b"other bundle")
    assert first != rootfs_hash(None)


def test_layer_hash_covers_recipe_and_parent() -> None:
    base = layer_hash("FROM x\n", "parent-a")
    assert base == layer_hash("FROM x\n", "parent-a")
    assert base != layer_hash("FROM x\nRUN true\n", "parent-a")
    assert base != layer_hash("FROM x\n", "parent-b")


class Recipes:
    """Recipe texts that a test can edit."""

    def __init__(self) -> None:
        self.texts = {name: f"recipe of {name}\n" for name in ("common", *IMAGE_LANGUAGES)}

    def __call__(self, name: str) -> str:
        return self.texts[name]


def test_image_plan_chain_and_propagation() -> None:
    recipes = Recipes()
    plan = image_plan(b"ca", recipes)
    assert list(plan) == ["rootfs", "base", *IMAGE_LANGUAGES]
    assert plan["rootfs"].tag == ROOTFS_IMAGE
    assert plan["rootfs"].dockerfile is None
    assert plan["base"].parent == "rootfs"
    assert plan["base"].parent_arg == "ROOTFS_IMAGE"
    assert plan["go"].parent == "base"
    assert plan["go"].parent_arg == "BASE_IMAGE"
    assert plan["go"].tag == "llm-sandbox/go:bookworm"
    assert len({step.recipe_hash for step in plan.values()}) == len(plan)

    recipes.texts["ruby"] += "RUN gem --version\n"
    changed_lang = image_plan(b"ca", recipes)
    assert changed_lang["ruby"].recipe_hash != plan["ruby"].recipe_hash
    assert all(changed_lang[name] == plan[name] for name in plan if name != "ruby")

    recipes.texts["common"] += "RUN true\n"
    changed_base = image_plan(b"ca", recipes)
    assert changed_base["rootfs"] == plan["rootfs"]
    assert all(changed_base[name].recipe_hash != changed_lang[name].recipe_hash for name in plan if name != "rootfs")

    new_ca = image_plan(b"new ca", recipes)
    assert all(new_ca[name].recipe_hash != changed_base[name].recipe_hash for name in plan)


def test_the_shipped_recipes_have_distinct_hashes() -> None:
    plan = image_plan(b"ca")
    assert len({step.recipe_hash for step in plan.values()}) == len(plan)


# ---------------------------------------------------------------------------------------------------------
# CA certificates

CERT_A = b"-----BEGIN CERTIFICATE-----\nAAAA\nBBBB\n-----END CERTIFICATE-----\n"
CERT_B = b"-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n"
CERT_C = b"-----BEGIN CERTIFICATE-----\nDDDD\nEEEE\n-----END CERTIFICATE-----\n"


def test_extra_certificates_keeps_only_what_debian_lacks() -> None:
    shipped = CERT_A + CERT_B
    rewrapped_a = b"# a comment\n-----BEGIN CERTIFICATE-----\nAAAABBBB\n-----END CERTIFICATE-----\n"
    host = rewrapped_a + CERT_C + CERT_B + CERT_C
    assert extra_certificates(host, shipped) == [CERT_C]
    assert extra_certificates(host, b"") == [rewrapped_a.split(b"\n", 1)[1], CERT_C, CERT_B]
    assert extra_certificates(b"", shipped) == []


def test_prepare_rootfs_cleans_apt_and_installs_the_host_ca(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    (root / "var/cache/apt/archives/python3.deb").write_bytes(b"deb")
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_bytes(b"lists")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(CERT_A)
    host_bundle = tmp_path / "host.crt"
    host_bundle.write_bytes(CERT_A + CERT_B + CERT_C)

    ImageBuilder(FakeEngine(), ca_bundle_path=host_bundle)._prepare_rootfs(root)

    assert sorted(p.name for p in (root / "var/cache/apt/archives").iterdir()) == ["partial"]
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_bytes() == CERT_A + CERT_B + CERT_C
    local = root / "usr/local/share/ca-certificates"
    assert sorted(p.name for p in local.iterdir()) == ["host-ca-1.crt", "host-ca-2.crt"]
    assert (local / "host-ca-1.crt").read_bytes() == CERT_B
    assert (local / "host-ca-2.crt").read_bytes() == CERT_C


# ---------------------------------------------------------------------------------------------------------
# Rebuild decisions, with a fake engine


class FakeEngine:
    """Records builds; keeps images as tag -> (id, labels)."""

    def __init__(self, name: str = "docker") -> None:
        self.name = name
        self.images: dict[str, ImageInfo] = {}
        self.built: list[str] = []
        self.build_args: dict[str, Mapping[str, str]] = {}
        self.no_cache: list[bool] = []
        self.removed: list[str] = []
        self._counter = 0

    def qualify(self, tag: str) -> str:
        return f"localhost/{tag}" if self.name == "podman" else tag

    def check(self) -> None:
        return None

    def inspect(self, tag: str) -> ImageInfo | None:
        return self.images.get(tag)

    def _store(self, tag: str, labels: Mapping[str, str]) -> None:
        self._counter += 1
        self.images[tag] = ImageInfo(id=f"id-{self._counter}", labels=dict(labels), size=self._counter)
        self.built.append(tag)

    def build(
        self, tag: str, dockerfile: str, build_args: Mapping[str, str], labels: Mapping[str, str], no_cache: bool
    ) -> None:
        self.build_args[tag] = dict(build_args)
        self.no_cache.append(no_cache)
        self._store(tag, labels)

    def import_rootfs(self, root: Path, tag: str, changes: Sequence[str]) -> None:
        label = next(change for change in changes if change.startswith("LABEL "))
        key, value = label.removeprefix("LABEL ").split("=", 1)
        self._store(tag, {key: value})

    def remove_if_untagged(self, image_id: str) -> None:
        self.removed.append(image_id)


class NoDebootstrapBuilder(ImageBuilder):
    """Imports an empty directory instead of running debootstrap."""

    def _build_rootfs(self, step: ImageStep) -> None:
        self.engine.import_rootfs(Path("/nonexistent"), step.tag, [f"LABEL {RECIPE_LABEL}={step.recipe_hash}"])


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(rootfs_module, "SCRATCH_PARENT", tmp_path)
    return tmp_path


def _builder(engine: FakeEngine, recipes: Recipes, tmp_path: Path) -> NoDebootstrapBuilder:
    bundle = tmp_path / "ca.crt"
    if not bundle.exists():
        bundle.write_bytes(CERT_A)
    return NoDebootstrapBuilder(engine, ca_bundle_path=bundle, load_recipe=recipes)


def test_first_build_then_nothing_to_do(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    outcomes = _builder(engine, recipes, lock_dir).build(["python"])
    assert engine.built == [ROOTFS_IMAGE, BASE_IMAGE, "llm-sandbox/python:bookworm"]
    assert [outcome.action for outcome in outcomes] == ["built", "built", "built"]
    assert engine.build_args[BASE_IMAGE] == {"ROOTFS_IMAGE": ROOTFS_IMAGE}
    assert engine.build_args["llm-sandbox/python:bookworm"] == {"BASE_IMAGE": BASE_IMAGE}
    assert engine.no_cache == [False, False]
    assert engine.removed == []
    assert (lock_dir / "llm-sandbox-images-docker.lock").exists()

    engine.built.clear()
    outcomes = _builder(engine, recipes, lock_dir).build(["python"])
    assert engine.built == []
    assert [outcome.action for outcome in outcomes] == ["up to date"] * 3


def test_a_changed_language_recipe_rebuilds_only_that_image(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    _builder(engine, recipes, lock_dir).build(["python", "go"])
    old_go = engine.images["llm-sandbox/go:bookworm"].id
    engine.built.clear()
    recipes.texts["go"] += "RUN go version\n"
    _builder(engine, recipes, lock_dir).build(["python", "go"])
    assert engine.built == ["llm-sandbox/go:bookworm"]
    assert engine.removed == [old_go]


def test_a_changed_common_recipe_rebuilds_base_and_languages_but_not_rootfs(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    _builder(engine, recipes, lock_dir).build(["python", "r"])
    old = {tag: info.id for tag, info in engine.images.items()}
    engine.built.clear()
    recipes.texts["common"] += "RUN true\n"
    _builder(engine, recipes, lock_dir).build(["r"])
    assert engine.built == [BASE_IMAGE, "llm-sandbox/r:bookworm"]
    assert engine.removed == [old["llm-sandbox/r:bookworm"], old[BASE_IMAGE]]
    statuses = {status.step.name: status.state.value for status in _builder(engine, recipes, lock_dir).status()}
    assert statuses == {
        "rootfs": "present",
        "base": "present",
        "python": "stale",
        "javascript": "absent",
        "java": "absent",
        "cpp": "absent",
        "go": "absent",
        "ruby": "absent",
        "r": "present",
    }


def test_a_new_host_ca_bundle_rebuilds_everything(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    _builder(engine, recipes, lock_dir).build(["cpp"])
    engine.built.clear()
    (lock_dir / "ca.crt").write_bytes(CERT_A + CERT_B)
    _builder(engine, recipes, lock_dir).build(["cpp"])
    assert engine.built == [ROOTFS_IMAGE, BASE_IMAGE, "llm-sandbox/cpp:bookworm"]


def test_force_rebuilds_the_whole_chain_without_cache(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    _builder(engine, recipes, lock_dir).build(["java"])
    engine.built.clear()
    engine.no_cache.clear()
    _builder(engine, recipes, lock_dir).build(["java"], force=True)
    assert engine.built == [ROOTFS_IMAGE, BASE_IMAGE, "llm-sandbox/java:bookworm"]
    assert engine.no_cache == [True, True]


def test_a_foreign_image_with_our_tag_is_stale(lock_dir: Path) -> None:
    engine, recipes = FakeEngine(), Recipes()
    engine.images[ROOTFS_IMAGE] = ImageInfo(id="theirs", labels={}, size=1)
    _builder(engine, recipes, lock_dir).build(["python"])
    assert engine.built[0] == ROOTFS_IMAGE
    assert engine.removed == ["theirs"]


def test_podman_build_args_name_the_localhost_parent(lock_dir: Path) -> None:
    engine, recipes = FakeEngine("podman"), Recipes()
    _builder(engine, recipes, lock_dir).build(["ruby"])
    assert engine.build_args["llm-sandbox/ruby:bookworm"] == {"BASE_IMAGE": f"localhost/{BASE_IMAGE}"}
    assert (lock_dir / "llm-sandbox-images-podman.lock").exists()


# ---------------------------------------------------------------------------------------------------------
# The command-line engine, with a fake runner


class FakeRunner:
    """Stands in for subprocess.run: answers from a table keyed by argv[1:3]."""

    def __init__(self, answers: Mapping[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> Any:
        import subprocess

        self.calls.append((argv, kwargs))
        code, out, err = self.answers.get(tuple(argv[1:3]), (0, "", ""))
        return subprocess.CompletedProcess(argv, code, out, err)


def test_cli_engine_inspect_parses_labels_and_size() -> None:
    runner = FakeRunner(
        {("image", "inspect"): (0, '[{"Id": "sha256:abc", "Size": 123, "Config": {"Labels": {"a": "b"}}}]', "")}
    )
    info = CliEngine("docker", runner).inspect("llm-sandbox/python:bookworm")
    assert info == ImageInfo(id="sha256:abc", labels={"a": "b"}, size=123)
    argv, kwargs = runner.calls[0]
    assert argv == ["docker", "image", "inspect", "llm-sandbox/python:bookworm"]
    assert kwargs["env"]["DOCKER_BUILDKIT"] == "0"


def test_cli_engine_inspect_without_labels_and_absent_images() -> None:
    no_labels = FakeRunner({("image", "inspect"): (0, '[{"Id": "x", "Size": 1, "Config": {"Labels": null}}]', "")})
    assert CliEngine("docker", no_labels).inspect("t") == ImageInfo(id="x", labels={}, size=1)
    absent = FakeRunner({("image", "inspect"): (1, "[]", "Error: No such image: t")})
    assert CliEngine("docker", absent).inspect("t") is None
    podman_absent = FakeRunner({("image", "inspect"): (125, "[]", "Error: t: image not known")})
    assert CliEngine("podman", podman_absent).inspect("t") is None
    broken = FakeRunner({("image", "inspect"): (1, "", "Cannot connect to the Docker daemon")})
    with pytest.raises(ImageBuildError, match="Cannot connect"):
        CliEngine("docker", broken).inspect("t")


def test_cli_engine_names_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    podman = CliEngine("podman", FakeRunner({}))
    assert podman.qualify("llm-sandbox/python:bookworm") == "localhost/llm-sandbox/python:bookworm"
    assert podman.qualify("docker.io/library/debian:12") == "docker.io/library/debian:12"
    assert "DOCKER_BUILDKIT" not in podman.env
    assert CliEngine("docker", FakeRunner({})).qualify("llm-sandbox/r:bookworm") == "llm-sandbox/r:bookworm"
    with pytest.raises(UnsupportedBackendError):
        CliEngine("kubernetes")


def test_cli_engine_build_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rootfs_module, "SCRATCH_PARENT", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    seen: list[tuple[list[str], str, Mapping[str, str] | None]] = []

    def fake_streaming(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
        context = Path(argv[-1])
        assert (context / "Dockerfile").read_text(encoding="utf-8") == "FROM x\n"
        seen.append((list(argv), what, env))

    monkeypatch.setattr(engines_module, "run_streaming", fake_streaming)
    CliEngine("docker", FakeRunner({})).build(
        "llm-sandbox/go:bookworm", "FROM x\n", {"BASE_IMAGE": "b"}, {"l": "v"}, True
    )
    CliEngine("podman", FakeRunner({})).build("llm-sandbox/go:bookworm", "FROM x\n", {}, {}, False)

    docker_argv, _what, docker_env = seen[0]
    assert docker_argv[:4] == ["docker", "build", "--tag", "llm-sandbox/go:bookworm"]
    assert "--no-cache" in docker_argv
    assert docker_argv[docker_argv.index("--build-arg") :][:2] == ["--build-arg", "BASE_IMAGE=b"]
    assert docker_argv[docker_argv.index("--label") :][:2] == ["--label", "l=v"]
    assert docker_env is not None
    assert docker_env["DOCKER_BUILDKIT"] == "0"

    podman_argv = seen[1][0]
    assert podman_argv[:4] == ["podman", "build", "--tag", "localhost/llm-sandbox/go:bookworm"]
    assert podman_argv[podman_argv.index("--runtime") :][:2] == ["--runtime", "runc"]
    assert "nofile=1024:1024" in podman_argv
    assert "--pull=never" in podman_argv
    assert "--no-cache" not in podman_argv
    assert list(tmp_path.iterdir()) == []  # the build context was removed


def test_remove_scratch_removes_a_plain_tree(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "root/etc").mkdir(parents=True)
    (scratch / "root/etc/file").write_text("x", encoding="utf-8")
    (scratch / "root/link").symlink_to("/etc")
    remove_scratch(scratch)
    assert not scratch.exists()
    remove_scratch(scratch)  # already gone: no error


def _rootfs_step() -> ImageStep:
    return image_plan(b"ca", Recipes())["rootfs"]


def test_rootfs_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match="needs root"):
        ImageBuilder(FakeEngine(), mirror=DEFAULT_MIRROR)._build_rootfs(_rootfs_step())


def test_rootfs_needs_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    with pytest.raises(ImageBuildError, match="apt-get install -y debootstrap"):
        ImageBuilder(FakeEngine(), mirror=DEFAULT_MIRROR)._build_rootfs(_rootfs_step())


def test_a_failed_debootstrap_leaves_no_scratch_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "debootstrap"
    fake.write_text('#!/bin/sh\nmkdir -p "$4/etc"\necho "E: no mirror here"\nexit 1\n', encoding="utf-8")
    fake.chmod(0o755)
    scratch_parent = tmp_path / "scratch"
    scratch_parent.mkdir()
    monkeypatch.setattr(rootfs_module, "SCRATCH_PARENT", scratch_parent)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: str(fake) if name == "debootstrap" else None)
    engine = FakeEngine()
    with pytest.raises(ImageBuildError, match="E: no mirror here"):
        ImageBuilder(engine, mirror=DEFAULT_MIRROR)._build_rootfs(_rootfs_step())
    assert list(scratch_parent.iterdir()) == []
    assert engine.built == []
