"""shellcheck on every script the program writes or runs on a host, for several stage shapes.

Codes left out, each on purpose:
- SC2016: the bodies handed to `bash -c '…'` (run as the deploy user) expand on the far side;
- SC2034: the helpers every service script shares define `run_as`, which some do not use;
- SC2015: `[ a ] && (( b )) || die` means "die unless both", as written;
- SC2140: messages splice a shell-quoted value into double-quoted text ("…"'it'"…");
- SC2183: `printf "%s" <keys>` with no key at all writes the empty file on purpose;
- SC2001: sed on a variable in the control script reads better than nested ${//};
- SC2174: `mkdir -p -m 0755` in deploy's home: the parents get 0755 from the umask 022 the scripts run
  with, and -m states the mode of the directory that matters.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import scripts
from components.render import render_control, render_files
from tests.conftest import stage_from

EXCLUDED = "SC2016,SC2034,SC2015,SC2140,SC2183,SC2001,SC2174"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFRyfMJQgt0Y4TQt5156vbF2nZe1Ymd9V0dDD4+k30j"
SHAPES: dict[str, dict[str, Any]] = {
    "system": {"sidekiq": {"processes": [{"name": "default"}, {"name": "low"}]}, "env": {"A": "b"}},
    "user": {"sidekiq": {"scope": "user"}, "env": {"A": "b"}},
    "restart-strategy": {"rollout": {"strategy": "restart"}},
    "keys": {"sidekiq": {"authorizedKeys": [KEY]}},
}


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["shellcheck", "--shell=bash", f"--exclude={EXCLUDED}", "--format=gcc", str(path)],
        capture_output=True,
        text=True,
    )


def root_body(command: str) -> str:
    """The bash body of `sudo -n /bin/bash -c BODY`, or the command itself."""
    words = shlex.split(command)
    return words[-1] if words[:3] == ["sudo", "-n", "/bin/bash"] else command


@pytest.fixture(scope="module", autouse=True)
def _shellcheck_is_installed() -> None:
    assert shutil.which("shellcheck"), "shellcheck is missing: bin/_common.sh's ensure_packages installs it"


@pytest.mark.parametrize("shape", SHAPES)
def test_every_script_passes_shellcheck(existing_values, tmp_path: Path, shape: str) -> None:
    existing_values.update(SHAPES[shape])
    stage = stage_from(existing_values)
    files = render_files(stage)
    texts = {
        "sidekiqctl": render_control(stage),
        "install": root_body(scripts.install(stage, files, "web1")),
        "uninstall": root_body(scripts.uninstall(stage, files, "web1")),
        "restart": root_body(scripts.restart(stage, "web1", "v1")),
        "prepare": scripts.prepare_host(stage, "web1"),
        "wait-for-port": scripts.wait_for_port("192.0.2.1", 22, 60),
        "stage-in-home": scripts._STAGE_IN_HOME,
        "keys-block": scripts._KEYS_BLOCK,
    }
    found = []
    for name, text in texts.items():
        path = tmp_path / name
        path.write_text(text if text.startswith("#!") else "#!/bin/bash\n" + text)
        result = shellcheck(path)
        found += result.stdout.splitlines()
    assert found == []


def test_shellcheck_finds_what_it_should(tmp_path: Path) -> None:
    """The check is real: an unquoted expansion and a bad test fail it."""
    path = tmp_path / "bad"
    path.write_text("#!/bin/bash\nrm -rf $dir/x\nif [ $a == b ]; then :; fi\n")
    result = shellcheck(path)
    assert result.returncode != 0
    assert "SC2086" in result.stdout
