"""What the program loads: a stage of existing hosts must not pay for the AWS SDK (issue 8, P3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import components.fleet
print(",".join(sorted(m for m in ("pulumi", "pulumi_aws", "pulumi_command") if m in sys.modules)))
"""


def test_the_program_imports_the_aws_sdk_only_for_ec2_stages() -> None:
    # A fresh interpreter: this suite's other tests load pulumi_aws into their own.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    # pulumi is there: the probe would pass vacuously if the import failed early.
    assert result.stdout.strip() == "pulumi,pulumi_command"
