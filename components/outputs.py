"""The stack outputs: the contract between the program (components/fleet.py), which exports them, and
whoever reads them (the ops command in ops/, other tooling). docs/operating.md "Stack outputs" shows
an example.

`outputsVersion` changes whenever a field is added, removed or changes meaning; readers refuse another
version with a message that says what to do.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .config.model import HostKey

OUTPUTS_VERSION: Final = 3


class _Contract(BaseModel):
    # camelCase on the wire, like the stage config; fields a newer writer adds are ignored.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class HostOutputs(_Contract):
    name: str
    address: str
    port: int = Field(ge=1, le=65535)
    ssh_user: str
    # The configured key, or for EC2 the one prepare's first connection found; None until then.
    host_key: HostKey | None
    units: list[str]
    control: str
    # Known once the host's restart succeeded.
    app_version: str | None
    instance_id: str | None = None
    public_ip: str | None = None
    private_ip: str | None = None
    public_dns: str | None = None
    private_dns: str | None = None


class StackOutputs(_Contract):
    outputs_version: Literal[3] = OUTPUTS_VERSION
    stage: str
    app: str
    app_version: str
    scope: Literal["system", "user"]
    deploy_user: str
    units: list[str]
    control: str
    # rollout.batchSize: `sidekiq-fleet restart` goes batch by batch like `pulumi up`.
    batch_size: int = Field(ge=1)
    # ops.identityFile: the key `sidekiq-fleet` offers when no -i is given.
    ops_identity_file: str | None = None
    hosts: list[HostOutputs]
