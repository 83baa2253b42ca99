"""`python -m components render <stage>`: print every file a stage would push;
`python -m components reference`: write the JSON schema of `Pulumi.<stage>.yaml` and
docs/configuration.md from the config model.

Reads only Pulumi.<stage>.yaml: no AWS, no Pulumi engine. Encrypted values are
shown as a placeholder, since only the engine can decrypt them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .config import SECRET_PLACEHOLDER, Stage, StageConfigError, parse_stage, values_from_stack_file
from .project import PROJECT_DIR
from .reference import generated_files
from .render import render_files


def load_stage(stage_name: str, project_dir: Path = PROJECT_DIR) -> Stage:
    """The stage from its stack file alone (also read by `sidekiq-fleet check` with --outputs)."""
    stack_file = project_dir / f"Pulumi.{stage_name}.yaml"
    if not stack_file.is_file():
        raise FileNotFoundError(f"no stack file {stack_file.name} in {project_dir}")
    return stage_for_render(stage_name, values_from_stack_file(stack_file))


def stage_for_render(stage_name: str, values: dict[str, Any]) -> Stage:
    """The stage from its config values, for rendering only."""
    # Rendering never needs the ssh key, so a stack without it still renders.
    ssh = values.setdefault("ssh", {})
    if isinstance(ssh, dict) and "privateKeyFile" not in ssh:
        ssh.setdefault("privateKey", SECRET_PLACEHOLDER)
    return parse_stage(stage_name, values)


def render_stage(stage_name: str, project_dir: Path = PROJECT_DIR) -> str:
    stage = load_stage(stage_name, project_dir)
    sections = []
    for file in render_files(stage, project_dir):
        header = f"# ==> {file.path}  (mode {file.mode}, owner {file.owner}:{file.group})"
        sections.append(f"{header}\n{file.content}")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="print the files a stage would push")
    render.add_argument("stage")
    commands.add_parser("reference", help="write schema/stage.json and docs/configuration.md")
    args = parser.parse_args(argv)
    if args.command == "reference":
        for path, text in generated_files(PROJECT_DIR).items():
            (PROJECT_DIR / path).write_text(text)
            print(f"wrote {path}")
        return 0
    try:
        print(render_stage(args.stage), end="")
    except (StageConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
