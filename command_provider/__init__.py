"""A STAND-IN for the pulumi-command 1.2.1 resource provider, written in Python.

This is not Pulumi's provider. The real plugin, ``pulumi-resource-command`` v1.2.1, is a Go
program that cannot be built on this machine (the Go module proxy refuses
``github.com/pulumi/pulumi-command/provider``), so this package implements, from scratch, only
the part of it that the sidekiq-fleet program uses:

* ``command:remote:Command``      run commands over SSH on create, update and delete;
* ``command:remote:CopyToRemote`` upload a text or file asset, or a directory, over SFTP;
* ``command:local:Command``       run commands on the machine running Pulumi.

It speaks the Pulumi provider gRPC protocol, so the real Pulumi engine and the real
``pulumi_command`` Python SDK drive it. See README.md beside this file for what is and is not
implemented. Start it the way the engine does: ``python -m command_provider <engine-address>``.
"""

PROVIDER_NAME = "command"
PROVIDER_VERSION = "1.2.1"

REMOTE_COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
LOCAL_COMMAND = "command:local:Command"
RESOURCE_TYPES = (REMOTE_COMMAND, COPY_TO_REMOTE, LOCAL_COMMAND)
