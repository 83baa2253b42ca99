"""Stage configuration, validated before any resource exists.

- model.py: the typed model of ``Pulumi.<stage>.yaml``, with each key's expected form;
- errors.py: pydantic's errors translated into messages that name the config key;
- sources.py: where the values come from (the program, the Automation API, the stage file);
- files.py: the files a stage names (private key, known_hosts), read before deploying;
- keys.py: OpenSSH keys, parsed once, by asyncssh.
"""

from .errors import StageConfigError, key_path, parse_stage
from .files import resolve_files
from .model import (
    NAMESPACE,
    SECRET_PLACEHOLDER,
    AmiById,
    AmiLookup,
    Ec2Hosts,
    ExistingHost,
    ExistingHosts,
    Process,
    Stage,
    StageConfig,
)
from .sources import values_from_config, values_from_pulumi, values_from_stack_file

__all__ = [
    "NAMESPACE",
    "SECRET_PLACEHOLDER",
    "AmiById",
    "AmiLookup",
    "Ec2Hosts",
    "ExistingHost",
    "ExistingHosts",
    "Process",
    "Stage",
    "StageConfig",
    "StageConfigError",
    "key_path",
    "parse_stage",
    "resolve_files",
    "values_from_config",
    "values_from_pulumi",
    "values_from_stack_file",
]
