"""`sidekiq-fleet import --capistrano DIR --stage STAGE`: a stack file for the `existing` hosts provider
from a Capistrano 3 project that runs Sidekiq with capistrano-sidekiq 3.x.

The project is read by Capistrano itself, never by parsing its Ruby: `cap STAGE doctor:variables
doctor:servers` prints every variable with `inspect` (a lambda without arguments is evaluated first,
as `fetch` would) and every server with its roles and properties. Only plain literals are mapped; the
rest is listed as not mapped.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncssh
import yaml

from components.__main__ import stage_for_render
from components.config import NAMESPACE, ExistingHost, StageConfigError

# The rules OpenSSH applies to a known_hosts file (hashed names, [address]:port), shared with the
# program's own ssh.knownHostsFile.
from components.config.files import pinned_key

from .outputs import OpsError

APP_VERSION = "imported"
CAPFILES = ("capfile", "Capfile", "capfile.rb", "Capfile.rb")
CAP_TIMEOUT = 300
# What net-ssh, and so Capistrano, trusts by default.
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
DEFAULT_CONFIG_FILE = "sidekiq.yml"
# The variables that are mapped, or that only pick another variable's default.
MAPPED = frozenset(
    {
        "application", "deploy_to", "current_directory", "stage", "rack_env", "rails_env", "ssh_options",
        "sidekiq_env", "sidekiq_roles", "sidekiq_role", "sidekiq_config_files", "sidekiq_service_unit_name",
        "sidekiq_user",
    }
)  # fmt: skip
# Where each unmapped capistrano-sidekiq setting went in sidekiq-fleet.
HINTS = {
    "sidekiq_service_unit_env_files": "put the variables in env (pulumi config set --secret --path env.NAME)",
    "sidekiq_service_unit_env_vars": "put the variables in env (pulumi config set --secret --path env.NAME)",
    "sidekiq_log": "Sidekiq logs to the journal: sidekiq-fleet logs",
    "sidekiq_error_log": "Sidekiq logs to the journal: sidekiq-fleet logs",
    "sidekiq_command": "see sidekiq.command (default `bundle exec sidekiq`)",
    "sidekiq_command_args": "see sidekiq.command",
    "sidekiq_use_login_shell": "see sidekiq.loginShell (default true: /bin/bash -lc)",
    "sidekiq_service_templates_path": "see sidekiq.unitTemplate",
    "sidekiq_systemctl_user": "sidekiq-fleet runs system units (sidekiq.scope); adopt finds the old units "
    "as system units or user units of sidekiq.user",
    "service_unit_user": "sidekiq-fleet runs system units (sidekiq.scope); adopt finds the old units "
    "as system units or user units of sidekiq.user",
    "sidekiq_lingering_user": "sidekiq-fleet runs system units (sidekiq.scope)",
    "sidekiq_default_hooks": "see :sidekiq_fleet_default_hooks in contrib/capistrano/sidekiq_fleet.rake",
}
SERVER_PROPERTIES = frozenset({"sidekiq_user", "run_as"})


class CapistranoError(OpsError):
    """Capistrano could not be run or read, or its settings do not make a valid stage."""


class NotLiteral(ValueError):
    """A value doctor printed that is not a plain literal: a lambda with arguments, an ask, an object."""


class Symbol(str):
    """A Ruby symbol; it compares and formats as its name, as Ruby interpolates it."""

    def __repr__(self) -> str:
        return f":{self}"


# ---- Ruby's inspect, read back ----------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*[?!]?")
# :name= is a setter's symbol, but :name=> is a hash key.
_SYMBOL = re.compile(r":([A-Za-z_][A-Za-z0-9_]*(?:[?!]|=(?!>))?)")
_NEW_STYLE_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*[?!]?):(?=\s)")  # Ruby 3.4: {user: "deploy"}
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?(?![A-Za-z0-9_.])")
_KEYWORDS = {"nil": None, "true": True, "false": False}
_UNICODE = re.compile(r"\{([0-9a-fA-F ]+)\}|([0-9a-fA-F]{4})")  # \u{1F600 41} or \u00e9
_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "e": "\x1b", "s": " ", "a": "\a", "b": "\b", "f": "\f",
    "v": "\v", "0": "\0", '"': '"', "\\": "\\", "#": "#",
}  # fmt: skip


class _Reader:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, what: str) -> NotLiteral:
        return NotLiteral(f"{what} at column {self.pos + 1} of {self.text!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def take(self, literal: str) -> bool:
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def value(self) -> Any:
        self.skip_space()
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("a value is missing")
        char = text[pos]
        if char == '"':
            return self.string()
        if char == "[":
            return self.array()
        if char == "{":
            return self.hash()
        if char == ":":
            if text.startswith(':"', pos):
                self.pos += 1
                return Symbol(self.string())
            match = _SYMBOL.match(text, pos)
            if match:
                self.pos = match.end()
                return Symbol(match.group(1))
            raise self.fail("not a plain symbol")
        match = _NUMBER.match(text, pos)
        if match:
            self.pos = match.end()
            return float(match.group()) if match.group(1) or match.group(2) else int(match.group())
        match = _NAME.match(text, pos)
        if match and match.group() in _KEYWORDS:
            self.pos = match.end()
            return _KEYWORDS[match.group()]
        raise self.fail("not a literal")

    def string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char != "\\":
                out.append(char)
                continue
            escape = text[self.pos : self.pos + 1]
            self.pos += 1
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
            elif escape == "u":
                match = _UNICODE.match(text, self.pos)
                if match is None:
                    raise self.fail("a bad \\u escape")
                self.pos = match.end()
                codes = (match.group(1) or match.group(2)).split()
                out.extend(chr(int(code, 16)) for code in codes)
            else:
                raise self.fail(f"the escape \\{escape}")  # \x: bytes that are not UTF-8
        raise self.fail("an unterminated string")

    def array(self) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        self.skip_space()
        if self.take("]"):
            return items
        while True:
            items.append(self.value())
            self.skip_space()
            if self.take("]"):
                return items
            if not self.take(","):
                raise self.fail("expected , or ]")

    def hash(self) -> dict[Any, Any]:
        self.pos += 1
        items: dict[Any, Any] = {}
        self.skip_space()
        if self.take("}"):
            return items
        while True:
            self.skip_space()
            match = _NEW_STYLE_KEY.match(self.text, self.pos)
            if match:
                self.pos = match.end()
                key: Any = Symbol(match.group(1))
            else:
                key = self.value()
                if self.take(":"):  # {"a b": 1}
                    key = Symbol(key)
                else:
                    self.skip_space()
                    if not self.take("=>"):
                        raise self.fail("expected =>")
            if isinstance(key, list | dict):
                raise self.fail("a key that is a list or a hash")
            items[key] = self.value()
            self.skip_space()
            if self.take("}"):
                return items
            if not self.take(","):
                raise self.fail("expected , or }")


def ruby(value: Any) -> str:
    """A parsed value as Ruby 3.1 inspects it, for messages."""
    if value is None or isinstance(value, bool):
        return {None: "nil", True: "true", False: "false"}[value]
    if isinstance(value, Symbol):
        return f":{value}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*[?!=]?", value) else f":{ruby(str(value))}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(map(ruby, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{ruby(k)}=>{ruby(v)}" for k, v in value.items()) + "}"
    return repr(value)


def parse_literal(text: str) -> Any:
    """A Ruby value from its `inspect`: nil, true, false, numbers, strings, symbols (as Symbol),
    arrays and hashes (both hash styles). Raises NotLiteral for anything else."""
    reader = _Reader(text.strip())
    value = reader.value()
    reader.skip_space()
    if reader.pos != len(reader.text):
        raise reader.fail("unexpected text")
    return value


# ---- doctor's output ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A server as doctor:servers shows it: its own ssh_options and keys are not shown."""

    hostname: str
    user: str | None
    port: int | None
    roles: tuple[str, ...]
    properties: dict[str, Any]
    # The properties' text when they are not plain literals (a lambda in a property, say).
    unreadable: str | None = None

    @property
    def uri(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.hostname}{f':{self.port}' if self.port else ''}"


@dataclass(frozen=True)
class Doctor:
    """What `cap STAGE doctor:variables doctor:servers` printed: each variable's `inspect` text, and
    the servers."""

    variables: dict[str, str]
    servers: list[Server]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# OutputHelpers#puts indents every line of a table by four spaces; a line of those spaces ends it.
_INDENT = "    "
_URI = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[^@:\s\[\]]+)(?::(?P<port>[0-9]+))?")


def _table(lines: list[str], title: re.Pattern[str]) -> tuple[re.Match[str], list[str]] | None:
    """The rows under a title line, up to the first line that is blank or not indented."""
    for index, line in enumerate(lines):
        match = title.fullmatch(line.strip())
        if match:
            rows = []
            for row in lines[index + 1 :]:
                if not row.startswith(_INDENT) or not row.strip():
                    break
                rows.append(row[len(_INDENT) :])
            return match, rows
    return None


def _variables(rows: list[str]) -> dict[str, str]:
    variables: dict[str, str] = {}
    last = None
    for row in rows:
        reader = _Reader(row)
        try:
            key = reader.value() if row.startswith((":", '"')) else None
        except NotLiteral:
            key = None
        if isinstance(key, str) and row[reader.pos : reader.pos + 1] == " ":
            last = str(key)
            variables[last] = row[reader.pos :].strip()
        elif last is not None:
            variables[last] += "\n" + row  # a value whose inspect spans lines: never a literal
        else:
            raise CapistranoError(f"cannot read doctor:variables' line {row!r}")
    return variables


def _server(row: str) -> Server:
    uri, _, rest = row.partition(" ")
    match = _URI.fullmatch(uri)
    reader = _Reader(rest)
    try:
        roles = reader.value()
    except NotLiteral as error:
        raise CapistranoError(f"cannot read doctor:servers' line {row!r}: {error}") from None
    text = rest[reader.pos :].strip()
    try:
        properties, unreadable = (parse_literal(text) if text else {}), None
    except NotLiteral:
        properties, unreadable = {}, text
    if match is None or not isinstance(roles, list) or not isinstance(properties, dict):
        raise CapistranoError(
            f"cannot read doctor:servers' line {row!r}: expected [user@]host[:port] [roles] {{ properties }}"
        )
    port = match.group("port")
    return Server(
        hostname=match.group("host"),
        user=match.group("user"),
        port=int(port) if port else None,
        roles=tuple(str(role) for role in roles),
        properties={str(key): value for key, value in properties.items()},
        unreadable=unreadable,
    )


def parse_doctor(stdout: str) -> Doctor:
    """The variables and servers from doctor's output (Capistrano 3's VariablesDoctor and
    ServersDoctor): `<title>`, then rows indented by four spaces, colored only on a terminal."""
    lines = _ANSI.sub("", stdout).splitlines()
    variables = _table(lines, re.compile("Variables"))
    servers = _table(lines, re.compile(r"Servers \(([0-9]+)\)"))
    if variables is None or servers is None:
        raise CapistranoError(
            "cap printed no `Variables` or `Servers (N)` table: is this a Capistrano 3 project "
            f"(doctor:variables and doctor:servers)? It printed:\n{stdout.strip()[-2000:]}"
        )
    title, rows = servers
    parsed = [_server(row) for row in rows]
    if len(parsed) != int(title.group(1)):
        raise CapistranoError(f"doctor:servers announced {title.group(1)} servers and listed {len(parsed)}")
    return Doctor(_variables(variables[1]), parsed)


# ---- the mapping --------------------------------------------------------------------------------


@dataclass
class Imported:
    """The stack file's values (keys without the namespace), with what was not mapped, what to do
    next, and the Capistrano setting each key came from (for validation errors)."""

    values: dict[str, Any]
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


_UNSET = object()


class _Variables:
    def __init__(self, raw: dict[str, str], unmapped: list[str]) -> None:
        self.raw, self.unmapped = raw, unmapped

    def get(self, name: str, instead: str) -> Any:
        """The variable's literal value; None when unset or nil; _UNSET (listed as not mapped, with
        what happens instead) when it is not a literal."""
        if name not in self.raw:
            return None
        try:
            return parse_literal(self.raw[name])
        except NotLiteral:
            self.unmapped.append(f":{name} = {self.raw[name]}: not a plain value; {instead}")
            return _UNSET

    def first(self, names: Sequence[str], instead: str) -> tuple[str, Any]:
        """The first of the variables that is set, with its name."""
        for name in names:
            value = self.get(name, instead)
            if value is not None:
                return name, value
        return "", None


def _names(value: Any, variable: str) -> list[str]:
    """A role list as Capistrano's roles() takes it: a name or a list of names."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise CapistranoError(f":{variable} = {ruby(value)}: expected a role name or a list of role names")
    return [str(item) for item in items]


def _host_names(servers: Sequence[Server]) -> list[str]:
    """Short names for hosts.existing: the first label of a DNS name (the whole name, dots as -, when
    labels repeat; an address with dots or colons as -), then :port when a host repeats."""

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:63] or "host"

    def is_address(name: str) -> bool:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    options = [
        [safe(s.hostname)] if is_address(s.hostname) else [safe(s.hostname.split(".")[0]), safe(s.hostname)]
        for s in servers
    ]
    names = [choices[0] for choices in options]
    if len(set(names)) < len(names):
        names = [choices[-1] for choices in options]
    if len(set(names)) < len(names):
        names = [f"{name}-{s.port or 22}" for name, s in zip(names, servers, strict=True)]
    return names


def _process_name(config_file: str) -> str:
    """sidekiq.yml is the default process; another file's name without its extension, lowercased,
    other characters as -, and a leading `sidekiq-` dropped: sidekiq_low.yml is low."""
    if config_file == DEFAULT_CONFIG_FILE:
        return "default"
    stem = config_file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return name.removeprefix("sidekiq-") or name


def _unit(unit_name: str, config_file: str) -> str:
    """capistrano-sidekiq 3's unit of a config file: <unit_name>.service for sidekiq.yml, else
    <unit_name>.<file without its extension>.service."""
    if config_file == DEFAULT_CONFIG_FILE:
        return f"{unit_name}.service"
    return f"{unit_name}.{'.'.join(config_file.split('.')[:-1])}.service"


def _one(servers: list[Server], values: list[str], what: str, unmapped: list[str]) -> str:
    """The value the servers share; when they differ, the first, listed as not mapped."""
    if len(set(values)) > 1:
        shown = ", ".join(
            f"{server.hostname}: {value}" for server, value in zip(servers, values, strict=True)
        )
        unmapped.append(f"the servers' {what} differ ({shown}); the stage has one, {values[0]} is written")
    return values[0]


def _sidekiq_servers(doctor: Doctor, variables: _Variables) -> tuple[list[Server], str]:
    """The servers of capistrano-sidekiq's roles, and those roles as words (for messages)."""
    name, value = variables.first(
        ("sidekiq_roles", "sidekiq_role"), "the servers are picked by their role instead"
    )
    if value is not None and value is not _UNSET:
        roles, why = _names(value, name), f"set by :{name}"
    elif any("sidekiq" in server.roles for server in doctor.servers):
        roles, why = ["sidekiq"], ""
    else:
        roles, why = ["worker"], "capistrano-sidekiq's default, as no server has the role sidekiq"
    servers = [s for s in doctor.servers if "all" in roles or set(roles) & set(s.roles)]
    wanted = f"the role {' or '.join(roles)}" + (f" ({why})" if why else "")
    if not servers:
        listed = "; ".join(f"{s.uri} {ruby(list(map(Symbol, s.roles)))}" for s in doctor.servers) or "none"
        raise CapistranoError(
            f"no server of the stage has {wanted}; its servers: {listed}. Give the Sidekiq servers that "
            "role, or set :sidekiq_roles"
        )
    return servers, wanted


def _host_key(known: asyncssh.SSHKnownHosts | None, server: Server) -> str | None:
    if known is None:
        return None
    try:
        return pinned_key(known, ExistingHost(address=server.hostname, port=server.port or 22))
    except ValueError:  # no key, or an address the model refuses (validation names it)
        return None


def _ssh_users(servers: list[Server], variables: _Variables, imported: Imported) -> list[str]:
    """Each server's SSH user in net-ssh's order: its own, then :ssh_options' (~/.ssh/config and the
    local login name are this machine's, not the project's)."""
    ssh_options = variables.get("ssh_options", "only the servers' own users are read")
    global_user = None
    if isinstance(ssh_options, dict):
        global_user = ssh_options.get("user")
        for key, value in ssh_options.items():
            if key != "user":
                imported.unmapped.append(
                    f":ssh_options[{ruby(key)}] = {ruby(value)}: not mapped; the key is ssh.privateKey, "
                    "host keys are pinned in the stage"
                )
    users = [server.user or global_user for server in servers]
    missing = [server.hostname for server, user in zip(servers, users, strict=True) if not user]
    if missing:
        raise CapistranoError(
            f"Capistrano names no SSH user for {', '.join(missing)}: neither its server line (user: or "
            "user@host) nor :ssh_options[:user] sets one as a plain value, so net-ssh would use "
            "~/.ssh/config or your login name. Set one in the Capistrano stage, then import again"
        )
    return [str(user) for user in users]


def _map_hosts(
    doctor: Doctor,
    variables: _Variables,
    imported: Imported,
    known_hosts: asyncssh.SSHKnownHosts | None,
    known_hosts_name: str,
    stage: str,
) -> tuple[list[Server], list[str]]:
    """hosts and ssh from the Sidekiq servers; the servers and their SSH users."""
    servers, role_source = _sidekiq_servers(doctor, variables)
    users = _ssh_users(servers, variables, imported)
    existing: list[dict[str, Any]] = []
    for index, (server, name) in enumerate(zip(servers, _host_names(servers), strict=True)):
        host: dict[str, Any] = {"name": name, "address": server.hostname}
        if server.port and server.port != 22:
            host["port"] = server.port
        key = _host_key(known_hosts, server)
        if key is not None:
            host["hostKey"] = key
        existing.append(host)
        imported.sources[f"hosts.existing[{index}]"] = f"the server {server.uri}, of {role_source}"
        if server.unreadable:
            imported.unmapped.append(
                f"server {server.hostname}: properties {server.unreadable}: not plain values; its "
                "sidekiq_user and run_as are not read"
            )
        for prop, value in server.properties.items():
            if prop not in SERVER_PROPERTIES:
                imported.unmapped.append(
                    f"server {server.hostname}: property :{prop} = {ruby(value)}: not mapped"
                )
    for server in doctor.servers:
        if server not in servers:
            roles = ruby(list(map(Symbol, server.roles)))
            imported.notes.append(f"left out {server.uri} {roles}: not in {role_source}")
    imported.values["hosts"] = {"provider": "existing", "existing": existing}
    imported.sources["hosts"] = f"the servers of {role_source}"
    imported.values["ssh"] = {"user": _one(servers, users, "SSH users", imported.unmapped)}
    imported.sources["ssh.user"] = "the servers' user (their server line, else :ssh_options[:user])"

    pinned = [host for host in existing if "hostKey" in host]
    if pinned:
        imported.notes.append(
            f"pinned the host key of {len(pinned)} of {len(existing)} hosts from {known_hosts_name}"
        )
    if len(pinned) < len(existing):
        # Validation needs a key for each host: the file is the user's to fill, as the notes say.
        imported.values["ssh"]["knownHostsFile"] = f"{stage}.known_hosts"
        lacking = ", ".join(host["address"] for host in existing if "hostKey" not in host)
        imported.notes.append(
            f"{known_hosts_name} has no key for {lacking}: add their lines to {stage}.known_hosts in the "
            "project (ssh.knownHostsFile), e.g. from `ssh-keyscan -t ed25519 [-p PORT] ADDRESS` once "
            "compared with the host's /etc/ssh/ssh_host_ed25519_key.pub"
        )
    imported.notes.append(
        "doctor:servers does not show a server's own ssh_options: if a server line sets a user there, "
        "check ssh.user"
    )
    return servers, users


def _map_sidekiq(
    doctor: Doctor,
    variables: _Variables,
    imported: Imported,
    application: str,
    stage: str,
    servers: list[Server],
    users: list[str],
) -> None:
    """sidekiq: capistrano-sidekiq 3's user, directory, environment, processes and units."""
    sidekiq: dict[str, Any] = {}
    imported.values["sidekiq"] = sidekiq
    raw, sources = doctor.variables, imported.sources
    sidekiq_user = variables.get("sidekiq_user", "sidekiq.user is read from the servers")
    run_as = [
        server.properties.get("sidekiq_user")
        or (sidekiq_user if isinstance(sidekiq_user, str) else None)
        or server.properties.get("run_as")
        or user
        for server, user in zip(servers, users, strict=True)
    ]
    sidekiq["user"] = _one(servers, [str(user) for user in run_as], "Sidekiq users", imported.unmapped)
    sources["sidekiq.user"] = ":sidekiq_user, else the servers' sidekiq_user, run_as or SSH user"

    deploy_to = variables.get("deploy_to", "sidekiq.appDir is left to its default")
    current = variables.get("current_directory", "`current` is used")
    if isinstance(deploy_to, str):
        current = current if isinstance(current, str) and current else "current"
        sidekiq["appDir"] = f"{deploy_to.rstrip('/')}/{current}"
        sources["sidekiq.appDir"] = f":deploy_to = {raw['deploy_to']}, plus /{current}"

    name, environment = variables.first(
        ("sidekiq_env", "rack_env", "rails_env", "stage"), "sidekiq.environment is left to the stage name"
    )
    if isinstance(environment, str) or environment is None:
        sidekiq["environment"] = str(environment or stage)
        sources["sidekiq.environment"] = f":{name} = {raw[name]}" if name else "the stage"

    config_files = variables.get("sidekiq_config_files", "the processes and adopt are not written")
    if config_files is None:
        config_files = [DEFAULT_CONFIG_FILE]
    if config_files is not _UNSET and (
        not isinstance(config_files, list) or not all(isinstance(file, str) for file in config_files)
    ):
        raise CapistranoError(f":sidekiq_config_files = {ruby(config_files)}: expected a list of file names")
    if isinstance(config_files, list) and config_files != [DEFAULT_CONFIG_FILE]:
        sidekiq["processes"] = [
            {"name": _process_name(file), "configFile": f"config/{file}"} for file in config_files
        ]
        sources["sidekiq.processes"] = f":sidekiq_config_files = {raw['sidekiq_config_files']}"

    unit_name = variables.get("sidekiq_service_unit_name", "adopt is not written")
    if unit_name is None:
        unit_name = f"{application}_sidekiq_{stage}"
    if isinstance(unit_name, str) and isinstance(config_files, list):
        sidekiq["adopt"] = [_unit(unit_name, file) for file in config_files]
        sources["sidekiq.adopt"] = f":sidekiq_service_unit_name (so {unit_name}) and :sidekiq_config_files"
    else:
        imported.notes.append(
            "sidekiq.adopt is not written: list capistrano-sidekiq's units there, or both run side by side"
        )


def map_stage(
    doctor: Doctor, stage: str, known_hosts: asyncssh.SSHKnownHosts | None, known_hosts_name: str
) -> Imported:
    """The stack file's values from what Capistrano said of the stage."""
    imported = Imported(values={})
    variables = _Variables(doctor.variables, imported.unmapped)
    application = variables.get("application", "")
    if not isinstance(application, str) or not application:
        raise CapistranoError(
            f"Capistrano's :application is {doctor.variables.get('application', 'not set')}; "
            "expected a plain string, the app's name (sidekiq-fleet's app)"
        )
    imported.values.update({"app": str(application), "appVersion": APP_VERSION})
    imported.sources["app"] = f":application = {doctor.variables['application']}"
    servers, users = _map_hosts(doctor, variables, imported, known_hosts, known_hosts_name, stage)
    _map_sidekiq(doctor, variables, imported, str(application), stage, servers, users)
    for variable in sorted(doctor.variables):
        own = variable.startswith("sidekiq_fleet_")  # the rake file's settings, not capistrano-sidekiq's
        if variable.startswith(("sidekiq_", "service_unit_")) and not own and variable not in MAPPED:
            hint = HINTS.get(variable, "no equivalent in the stage file")
            imported.unmapped.append(f":{variable} = {doctor.variables[variable]}: {hint}")
    return imported


def check_stage(imported: Imported, stage: str) -> None:
    """Validate the values as the program does; each problem names the Capistrano setting behind it."""
    try:
        stage_for_render(stage, copy.deepcopy(imported.values))
    except StageConfigError as error:
        problems = []
        for problem in error.problems:
            path = problem.removeprefix(f"{NAMESPACE}:").partition(": ")[0]
            origin = max(
                (key for key in imported.sources if path == key or path.startswith((f"{key}.", f"{key}["))),
                key=len,
                default=None,
            )
            problems.append(f"  - {problem}" + (f" (from {imported.sources[origin]})" if origin else ""))
        raise CapistranoError(
            "the settings Capistrano gave do not make a valid stage; fix them in the Capistrano project "
            "and import again:\n" + "\n".join(problems)
        ) from None


# ---- the files ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as in the committed stack files."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def stack_file_text(imported: Imported, directory: Path, stage: str) -> str:
    header = (
        f"# Imported by `sidekiq-fleet import` from the Capistrano project {directory}, stage {stage}\n"
        f"# (cap {stage} doctor:variables doctor:servers). appVersion {APP_VERSION} is a placeholder for\n"
        "# your deploy to set. Secrets are not in this file until you set them:\n"
        f"#   pulumi stack select {stage}\n"
        "#   pulumi config set --secret --path ssh.privateKey < KEY_FILE\n"
    )
    config = {f"{NAMESPACE}:{key}": value for key, value in imported.values.items()}
    body = yaml.dump({"config": config}, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return header + body


def cap_command(directory: Path, override: str | None) -> list[str]:
    """`--cap-command`, else `bundle exec cap` for a bundled project, else `cap`."""
    if override:
        return shlex.split(override)
    return ["bundle", "exec", "cap"] if (directory / "Gemfile.lock").is_file() else ["cap"]


def _failure(argv: list[str], directory: Path, stage: str, result: subprocess.CompletedProcess[str]) -> str:
    output = f"{result.stdout}\n{result.stderr}"
    shown = shlex.join(argv)
    missing = re.search(r"LoadError: cannot load such file -- (\S+)", output)
    if missing:
        library = missing.group(1)
        return (
            f"`{shown}` failed: the project requires the Ruby library {library}, which this Ruby cannot load "
            f"(a plugin gem, probably {library.replace('/', '-')}, is not installed here). Install the "
            f"project's gems (`bundle install` in {directory}) and import with --cap-command \"bundle exec "
            'cap", or install that gem where this cap finds it'
        )
    if "Stage not set" in output:
        found = sorted(path.stem for path in (directory / "config" / "deploy").glob("*.rb"))
        return (
            f"Capistrano does not know the stage {stage!r} in {directory} "
            f"(config/deploy/ has: {', '.join(found) or 'no stage files'})"
        )
    tail = "\n".join(output.strip().splitlines()[-15:])
    return f"`{shown}` failed (exit status {result.returncode}) in {directory}:\n{tail}"


def run_doctor(directory: Path, stage: str, command: list[str]) -> str:
    """doctor's output for the stage; both tasks in one run, as loading the project is most of it."""
    if not directory.is_dir():
        raise CapistranoError(f"--capistrano {directory}: not a directory")
    if not any((directory / name).is_file() for name in CAPFILES):
        raise CapistranoError(f"--capistrano {directory}: no Capfile there; expected a Capistrano 3 project")
    argv = [*command, stage, "doctor:variables", "doctor:servers"]
    try:
        result = subprocess.run(
            argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,  # a Capfile that asks fails instead of waiting
            capture_output=True,
            text=True,
            timeout=CAP_TIMEOUT,
            env={key: value for key, value in os.environ.items() if key != "SSHKIT_COLOR"},
        )
    except FileNotFoundError:
        package = {"cap": "capistrano", "bundle": "ruby-bundler"}.get(argv[0])
        install = f"; Debian's package {package} provides it" if package else ""
        raise CapistranoError(
            f"{argv[0]}: command not found{install}; --cap-command names how to run Capistrano in the "
            'project, e.g. --cap-command "bundle exec cap"'
        ) from None
    except subprocess.TimeoutExpired:
        raise CapistranoError(f"`{shlex.join(argv)}` did not finish in {CAP_TIMEOUT} s") from None
    if result.returncode != 0:
        raise CapistranoError(_failure(argv, directory, stage, result))
    return result.stdout


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts | None:
    try:
        return asyncssh.import_known_hosts(path.expanduser().read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CapistranoError(f"--known-hosts {path}: {error}") from None


def run_import(
    directory: Path,
    stage: str,
    output: Path,
    *,
    force: bool = False,
    command: str | None = None,
    known_hosts: Path = DEFAULT_KNOWN_HOSTS,
    out: IO[str],
    err: IO[str],
) -> int:
    """Write the stack file; the report on err, the path written on out."""
    directory = directory.resolve()
    doctor = parse_doctor(run_doctor(directory, stage, cap_command(directory, command)))
    imported = map_stage(doctor, stage, _known_hosts(known_hosts), str(known_hosts))
    check_stage(imported, stage)
    text = stack_file_text(imported, directory, stage)
    try:
        with output.open("w" if force else "x") as file:
            file.write(text)
    except FileExistsError:
        raise CapistranoError(f"{output} exists; --force overwrites it, --output writes elsewhere") from None
    user = imported.values["ssh"]["user"]
    print(f"wrote {output}", file=out)
    if imported.unmapped:
        print("Not mapped (set these by hand where you need them):", file=err)
        for line in imported.unmapped:
            print(f"  - {line}", file=err)
    print("Notes:", file=err)
    for line in imported.notes:
        print(f"  - {line}", file=err)
    steps = [
        f"pulumi stack init {stage} (in the sidekiq-fleet project), then `pulumi config set --secret "
        "--path ssh.privateKey < KEY_FILE` with the key Capistrano logs in with: no key is in the file",
        f"pulumi up logs in as {user} (ssh.user) and needs passwordless sudo for it on every host; an "
        "admin login there leaves the deploy user only its control-script sudo",
        f"appVersion is {APP_VERSION!r}: have your deploy set it to the release "
        "(pulumi config set appVersion <sha>)",
        "env: the variables Sidekiq needs that the app does not read itself, e.g. "
        "pulumi config set --secret --path env.REDIS_URL ...",
        "sidekiq.adoptSudoers: the sudoers.d file that gave the deploy user systemctl, if any",
        "in the Capistrano project, replace capistrano-sidekiq with contrib/capistrano/sidekiq_fleet.rake",
        f"sidekiq-fleet render {stage}; pulumi preview --diff -s {stage}; pulumi up -s {stage}",
    ]
    print("Next:", file=err)
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step}", file=err)
    return 0
