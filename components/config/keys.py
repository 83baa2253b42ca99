"""OpenSSH keys of the stage config, each parsed once, by asyncssh: the parser the ops client
connects with."""

from __future__ import annotations

import base64
import binascii

import asyncssh

# What the command provider and the ops client can pin, in the order a host's keys are preferred
# when a known_hosts file has several.
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
# The public key algorithms OpenSSH accepts in authorized_keys (no options prefix: we add none).
AUTHORIZED_KEY_TYPES = (
    *HOST_KEY_TYPES,
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _parsed(value: str, types: tuple[str, ...]) -> asyncssh.SSHKey:
    """One key line, TYPE BASE64 [COMMENT], of one of TYPES, whose data is a key of that type."""
    words = value.split()
    if not words or not value.isprintable():
        raise ValueError(f"{_shown(value)} is not one line of printable text")
    if words[0] not in types:
        raise ValueError(f"{_shown(value)} starts with {words[0]!r}, not a key type such as ssh-ed25519")
    try:
        # Strictly: asyncssh's decoder skips what is not base64, OpenSSH refuses the line.
        base64.b64decode(words[1], validate=True)
        return asyncssh.import_public_key(value)
    except (IndexError, binascii.Error, asyncssh.KeyImportError, ValueError):
        raise ValueError(f"{_shown(value)} has no {words[0]} key data after its type") from None


def authorized_key(value: str) -> str:
    """An authorized_keys line, its words joined by single spaces."""
    _parsed(value, AUTHORIZED_KEY_TYPES)
    return " ".join(value.split())


def host_key(value: str) -> str:
    """A host key as TYPE BASE64, the form the command provider and the ops client pin."""
    _parsed(value, HOST_KEY_TYPES)
    return " ".join(value.split()[:2])


def check_private_key(value: str) -> None:
    try:
        asyncssh.import_private_key(value)
    except (asyncssh.KeyImportError, ValueError) as error:
        raise ValueError(f"not an unencrypted OpenSSH or PEM private key ({error})") from None


def preferred_host_key(keys: list[asyncssh.SSHKey]) -> str | None:
    """The key to pin of a host's several, as TYPE BASE64: by HOST_KEY_TYPES, ed25519 first."""
    usable = [key for key in keys if key.get_algorithm() in HOST_KEY_TYPES]
    if not usable:
        return None
    chosen = min(usable, key=lambda key: HOST_KEY_TYPES.index(key.get_algorithm()))
    return " ".join(chosen.export_public_key("openssh").decode().split()[:2])
