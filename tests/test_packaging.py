"""Packaging: requirements.lock agrees with pyproject.toml, and `pip install .` into a fresh virtualenv
gives a working `sidekiq-fleet` that runs from the installed package, not from the checkout.

The install is offline, from the wheelhouse that bin/_common.sh's ensure_venv downloads from the lock
(under $SIDEKIQ_FLEET_CACHE/wheels); build isolation stays on, so setuptools comes from the wheelhouse
too, as in any `pip install .`. It builds a copy of the project's sources, so no build/ nor egg-info
lands in the checkout. About 20 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.dependency_groups import resolve_dependency_groups
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCK = PROJECT_DIR / "requirements.lock"
PYPROJECT = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())

# What the program and the ops command import (components/, ops/): declared, so `pip install .`
# brings them. pyyaml came only through pulumi before it was declared.
RUNTIME = {"pulumi", "pulumi-aws", "pulumi-command", "jinja2", "pydantic", "asyncssh", "pyyaml"}
TEST_GROUP = {"pytest", "jsonschema", "packaging"}
DEV_GROUP = TEST_GROUP | {"ruff", "mutmut", "mypy", "types-pyyaml", "setuptools"}


def lock_entries() -> dict[str, tuple[Requirement, list[str]]]:
    """Each entry of the lock by canonical name: its requirement line and its sha256 hashes."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())  # one logical line per entry
    entries: dict[str, tuple[Requirement, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line.split(" --hash=", 1)[0].strip())
        name = canonicalize_name(requirement.name)
        assert name not in entries, f"requirements.lock pins {name} twice"
        entries[name] = (requirement, re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line))
    return entries


def declared(*groups: str) -> list[Requirement]:
    """[project] dependencies, or the named dependency groups (includes followed)."""
    if not groups:
        return [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    return [Requirement(t) for t in resolve_dependency_groups(PYPROJECT["dependency-groups"], *groups)]


def names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"requirements.lock: {requirement} is not pinned with =="
    return specifier.version


def test_pyproject_declares_the_runtime_dependencies_and_the_groups() -> None:
    assert names(declared()) == RUNTIME
    assert names(declared("test")) == TEST_GROUP
    assert names(declared("dev")) == DEV_GROUP
    assert PYPROJECT["project"]["scripts"] == {"sidekiq-fleet": "ops.cli:main"}


def test_every_lock_entry_is_pinned_with_a_sha256_hash() -> None:
    entries = lock_entries()
    assert len(entries) > len(RUNTIME | DEV_GROUP), "the lock has the transitive packages too"
    for name, (requirement, hashes) in entries.items():
        pinned_version(requirement)
        assert hashes, f"requirements.lock: {name} has no --hash=sha256:"


def test_the_lock_pins_every_declared_dependency_within_its_specifier() -> None:
    entries = lock_entries()
    build = [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    for requirement in [*declared(), *declared("dev"), *build]:
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} (pyproject.toml) is not in requirements.lock: run bin/lock"
        version = pinned_version(entries[name][0])
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject.toml's {requirement}: run bin/lock"
        )


def test_the_lock_keeps_the_versions_pinned_before_it() -> None:
    """The lock replaced requirements*.txt without upgrading anything they pinned."""
    entries = lock_entries()
    before = {
        "pulumi": "3.272.0",
        "pulumi-aws": "7.51.1",
        "pulumi-command": "1.2.1",
        "jinja2": "3.1.6",
        "pydantic": "2.14.4",
        "asyncssh": "2.24.1",
        "cryptography": "50.0.2",
        "pytest": "9.2.0",
        "ruff": "0.17.6",
        "mutmut": "3.8.1",
        "setuptools": "84.2.1",
        "jsonschema": "4.26.0",
    }
    assert {name: pinned_version(entries[name][0]) for name in before} == before


def wheelhouse() -> Path:
    """The wheelhouse of the current lock, as bin/_common.sh names it; it must be there."""
    out = subprocess.run(
        ["bash", "-c", "source bin/_common.sh && wheelhouse_dir"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(out.stdout.strip())
    assert (path / ".complete").is_file(), (
        f"no complete wheelhouse at {path}: bin/_common.sh's ensure_venv downloads it "
        "(bash -c 'source bin/_common.sh; ensure_venv', as bin/test does)"
    )
    return path


def clean_env() -> dict[str, str]:
    """This environment without anything that would point pip or Python elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV")) or key == "PIP_CERT"
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=clean_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} (in {cwd}) exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with `pip install .` done in it, offline from the wheelhouse."""
    wheels = wheelhouse()
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    shutil.copy(PROJECT_DIR / "pyproject.toml", source)
    for top in {
        pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }:
        shutil.copytree(PROJECT_DIR / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=root)
    run(
        [venv / "bin" / "pip", "install", "-q", "--no-cache-dir", "--no-index", "--find-links", wheels, "."],
        cwd=source,
    )
    return venv


def site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python3*/site-packages")
    return path


def test_the_console_script_runs_from_the_installed_package(venv: Path, tmp_path: Path) -> None:
    # A decoy of each package in the working directory: the console script must not see them.
    for package in ("ops", "components"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('{package} from the cwd')\n")
    result = run([venv / "bin" / "sidekiq-fleet", "--help"], cwd=tmp_path)
    assert "usage: sidekiq-fleet" in result.stdout
    assert "render" in result.stdout
    # And from the project root, where the checkout's packages are, Python in safe-path mode
    # (as console scripts are: their sys.path[0] is the venv's bin/) imports the installed ones.
    code = "import ops, components; print(ops.__file__, components.__file__)"
    where = run([venv / "bin" / "python", "-P", "-c", code], cwd=PROJECT_DIR).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(site_packages(venv)), f"{path} is not the installed package"


def test_render_local_from_the_installed_package(venv: Path) -> None:
    result = run([venv / "bin" / "sidekiq-fleet", "render", "local"], cwd=PROJECT_DIR)
    assert "# ==> /etc/systemd/system/sidekiq.target  (mode 0644, owner root:root)" in result.stdout
    assert "# ==> /etc/systemd/system/sidekiq-default@.service  (mode 0644, owner root:root)" in result.stdout
    assert "Description=sidekiq-default slot %i" in result.stdout


def test_the_wheel_carries_the_templates(venv: Path) -> None:
    installed = sorted(p.name for p in (site_packages(venv) / "components" / "templates").glob("*.j2"))
    assert installed == sorted(p.name for p in (PROJECT_DIR / "components" / "templates").glob("*.j2"))


def test_the_installed_metadata_declares_asyncssh_and_pyyaml(venv: Path) -> None:
    code = "import importlib.metadata as m, json; print(json.dumps(m.requires('sidekiq-fleet')))"
    requires = json.loads(run([venv / "bin" / "python", "-c", code], cwd=venv).stdout)
    assert {"asyncssh", "pyyaml"} <= names([Requirement(r) for r in requires])
    assert names([Requirement(r) for r in requires]) == RUNTIME


def test_pip_install_dot_installs_the_locked_versions(venv: Path) -> None:
    """Every distribution in the fresh venv is the lock's version (pip and setuptools come from venv)."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    found = json.loads(run([venv / "bin" / "python", "-c", code], cwd=venv).stdout)
    installed = {canonicalize_name(name): version for name, version in found.items()}
    for bootstrap in ("pip", "setuptools", "sidekiq-fleet"):
        installed.pop(bootstrap, None)
    pins = {name: pinned_version(requirement) for name, (requirement, _) in lock_entries().items()}
    assert installed.keys() >= RUNTIME
    assert {name: pins.get(name) for name in installed} == installed
