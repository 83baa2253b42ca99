"""Pulumi program: validate the stage config, then deploy the fleet."""

from pathlib import Path

import pulumi

from components.config import StageConfigError, parse_stage, resolve_files, values_from_pulumi
from components.fleet import deploy_fleet

PROJECT_DIR = Path(__file__).parent

try:
    stage = resolve_files(parse_stage(pulumi.get_stack(), values_from_pulumi()), PROJECT_DIR)
except StageConfigError as error:
    raise pulumi.RunError(str(error)) from None

for key, value in deploy_fleet(stage, PROJECT_DIR).items():
    pulumi.export(key, value)
