"""Pulumi program: validate the stage config, then deploy the fleet."""

from pathlib import Path

import pulumi

from components.config import StageConfigError, parse_stage, values_from_pulumi
from components.fleet import deploy_fleet

try:
    stage = parse_stage(pulumi.get_stack(), values_from_pulumi())
except StageConfigError as error:
    raise pulumi.RunError(str(error)) from None

for key, value in deploy_fleet(stage, Path(__file__).parent).items():
    pulumi.export(key, value)
