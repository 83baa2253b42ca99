"""The harness's pure parts: the distro table, the template key per distro, the mirror from apt's sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localhosts import config, template, tools


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the recipe and a cache root of the test's own, with a harness key in it."""
    copy = tmp_path / "recipe"
    shutil.copytree(config.RECIPE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(config, "RECIPE_DIR", copy)
    monkeypatch.setenv("SIDEKIQ_FLEET_CACHE", str(tmp_path / "cache"))
    key = config.key_path()
    key.parent.mkdir(parents=True)
    key.with_name(key.name + ".pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7 harness\n")
    return copy


def test_each_distro_names_its_release_and_sidekiq() -> None:
    assert config.distro("bookworm") == config.Distro(sidekiq="6.4.1", ruby_package="ruby3.1")
    assert config.distro("trixie") == config.Distro(sidekiq="7.3.2", ruby_package="ruby3.3")
    with pytest.raises(ValueError, match=r"unknown distro 'sid'; one of: bookworm, trixie"):
        config.distro("sid")


def test_each_distro_has_its_own_template_key_and_folder(recipe: Path) -> None:
    keys = {distro: template.template_key(distro) for distro in ("bookworm", "trixie")}
    assert keys["bookworm"] != keys["trixie"]
    assert keys == {distro: template.template_key(distro) for distro in ("bookworm", "trixie")}
    assert template.template_key() == keys["bookworm"]
    assert template.rootfs_dir("trixie") == Path(config.cache_root()) / "rootfs" / "trixie"


def test_a_distros_own_recipe_file_changes_only_its_key(recipe: Path) -> None:
    before = {distro: template.template_key(distro) for distro in ("bookworm", "trixie")}
    (recipe / "distros" / "trixie" / "app" / "config" / "sidekiq.yml").write_text(":concurrency: 7\n")
    assert template.template_key("trixie") != before["trixie"]
    assert template.template_key("bookworm") == before["bookworm"]
    (recipe / "app" / "bin" / "push-jobs").write_text("#!/bin/sh\n")
    assert template.template_key("bookworm") != before["bookworm"]


DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    ("deb822", "sources_list", "mirror"),
    [
        pytest.param(DEB822, None, "http://mirror.example/debian", id="deb822"),
        pytest.param(
            DEB822.replace("Suites: bookworm bookworm-updates", "Suites: bookworm-updates\nEnabled: yes"),
            None,
            None,
            id="deb822-updates-only",
        ),
        pytest.param(
            None,
            "deb http://security.example/debian-security bookworm-security main\n"
            "# deb http://old.example/debian bookworm main\n"
            "deb [arch=amd64] http://mirror.example/debian trixie main contrib\n",
            "http://mirror.example/debian",
            id="sources-list",
        ),
        pytest.param(None, "deb http://mirror.example/debian bookworm contrib\n", None, id="no-main"),
    ],
)
def test_the_mirror_is_apts_source_of_a_release_with_main(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deb822: str | None,
    sources_list: str | None,
    mirror: str | None,
) -> None:
    monkeypatch.delenv("SIDEKIQ_FLEET_MIRROR", raising=False)
    monkeypatch.setattr(tools, "SOURCES_DEB822", tmp_path / "debian.sources")
    monkeypatch.setattr(tools, "SOURCES_LIST", tmp_path / "sources.list")
    if deb822 is not None:
        (tmp_path / "debian.sources").write_text(deb822)
    if sources_list is not None:
        (tmp_path / "sources.list").write_text(sources_list)
    if mirror is None:
        with pytest.raises(RuntimeError, match="no apt source for a Debian release's main component"):
            tools.debian_mirror()
    else:
        assert tools.debian_mirror() == mirror


def test_the_mirror_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDEKIQ_FLEET_MIRROR", "http://override.example/debian")
    assert tools.debian_mirror() == "http://override.example/debian"
