"""Where the Pulumi project is: the stage files, and the directory the engine runs in."""

from __future__ import annotations

from pathlib import Path


def find_project_dir(start: Path | None = None) -> Path:
    """The checkout this code runs from; installed (`pip install .`), the nearest directory from
    START (the working directory) up that has a Pulumi.yaml, as the pulumi CLI looks for it."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "Pulumi.yaml").is_file():
        return checkout
    here = (start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / "Pulumi.yaml").is_file()), here)


PROJECT_DIR = find_project_dir()
