"""The image builder without an engine: names, hints, mirror parsing, recipe hashing and the plan of the chain
(building, skipping and rebuilding on a real engine: tests/integration/test_image_builder.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_sandbox.const import SupportedLanguage
from llm_sandbox.errors import ImageBuildError, LanguageNotSupportedError, UnsupportedBackendError
from llm_sandbox.images import (
    BASE_IMAGE,
    IMAGE_LANGUAGES,
    ROOTFS_IMAGE,
    build_hint,
    default_image,
    normalize_language,
)
from llm_sandbox.images.__main__ import main
from llm_sandbox.images.builder import resolve_languages
from llm_sandbox.images.engines import CliEngine
from llm_sandbox.images.recipes import image_plan, layer_hash, recipe_text, rootfs_hash
from llm_sandbox.images.rootfs import (
    DEFAULT_MIRROR,
    apt_source_files,
    extra_certificates,
    parse_debian_mirror,
    prepare_rootfs,
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
    assert "65534 /opt/venv" not in text  # the venv stays root's: it is on root's PATH
    assert "install -d -o 65534 -g 65534 -m 0755 /sandbox /opt/llm-sandbox/user" in text
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

    prepare_rootfs(root, host_bundle)

    assert sorted(p.name for p in (root / "var/cache/apt/archives").iterdir()) == ["partial"]
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_bytes() == CERT_A + CERT_B + CERT_C
    local = root / "usr/local/share/ca-certificates"
    assert sorted(p.name for p in local.iterdir()) == ["host-ca-1.crt", "host-ca-2.crt"]
    assert (local / "host-ca-1.crt").read_bytes() == CERT_B
    assert (local / "host-ca-2.crt").read_bytes() == CERT_C


# ---------------------------------------------------------------------------------------------------------
# The command-line engine (nothing here runs the engine; tests/integration/test_image_builder.py builds for real)


def test_cli_engine_names_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    podman = CliEngine("podman")
    assert podman.qualify("llm-sandbox/python:bookworm") == "localhost/llm-sandbox/python:bookworm"
    assert podman.qualify("docker.io/library/debian:12") == "docker.io/library/debian:12"
    assert "DOCKER_BUILDKIT" not in podman.env
    docker = CliEngine("docker")
    assert docker.qualify("llm-sandbox/r:bookworm") == "llm-sandbox/r:bookworm"
    assert docker.env["DOCKER_BUILDKIT"] == "0"  # the classic builder: recipes use no BuildKit features
    with pytest.raises(UnsupportedBackendError):
        CliEngine("kubernetes")


def test_remove_scratch_removes_a_plain_tree(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "root/etc").mkdir(parents=True)
    (scratch / "root/etc/file").write_text("x", encoding="utf-8")
    (scratch / "root/link").symlink_to("/etc")
    remove_scratch(scratch)
    assert not scratch.exists()
    assert (Path("/etc") / "passwd").exists()  # the link was removed, not followed
    remove_scratch(scratch)  # already gone: no error
