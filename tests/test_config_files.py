"""ssh.privateKeyFile and ssh.knownHostsFile, read by resolve_files() before deploying, with real keys
and known_hosts files hashed by OpenSSH's own ssh-keygen."""

from __future__ import annotations

import base64
import copy
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from components.config import Stage, StageConfigError, parse_stage, resolve_files
from components.config.keys import preferred_host_key
from tests.conftest import FAKE_KEY, HOST_KEY

NS = "sidekiq-fleet"
HOSTS = [
    {"name": "a", "address": "192.0.2.11"},
    {"name": "b", "address": "192.0.2.12", "port": 2222},
]


SECURITY_KEY_BASES = {
    "sk-ssh-ed25519@openssh.com": "ssh-ed25519",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sha2-nistp256",
}


def public_key(kind: str) -> str:
    """A real public key of KIND as TYPE BASE64. A security key's wraps a generated key's data with
    an application, as a FIDO token's does (asyncssh cannot make one without a token)."""
    if kind in SECURITY_KEY_BASES:
        data = asyncssh.generate_private_key(SECURITY_KEY_BASES[kind]).public_data
        key_data = data[4 + int.from_bytes(data[:4]) :]  # after the base type's name
        blob = len(kind).to_bytes(4) + kind.encode() + key_data + (4).to_bytes(4) + b"ssh:"
        return f"{kind} {base64.b64encode(blob).decode()}"
    options = {"key_size": 2048} if kind == "ssh-rsa" else {}
    key = asyncssh.generate_private_key(kind, **options)
    return " ".join(key.export_public_key().decode().split()[:2])


ED25519, ECDSA, RSA = public_key("ssh-ed25519"), public_key("ecdsa-sha2-nistp256"), public_key("ssh-rsa")


def stage_with_files(tmp_path: Path, known_hosts: str | None, key: str | None = FAKE_KEY) -> Stage:
    values: dict[str, Any] = {
        "app": "example",
        "appVersion": "v1.4.2",
        "hosts": {"provider": "existing", "existing": copy.deepcopy(HOSTS)},
        "ssh": {"user": "admin", "privateKeyFile": "id_test", "knownHostsFile": "known_hosts"},
    }
    if key is not None:
        (tmp_path / "id_test").write_text(key)
    if known_hosts is not None:
        (tmp_path / "known_hosts").write_text(known_hosts)
    return resolve_files(parse_stage("local", values), tmp_path)


def pinned(stage: Stage) -> list[str | None]:
    return [host.host_key for host in stage.config.hosts.existing]


def problems(tmp_path: Path, known_hosts: str | None, key: str | None = FAKE_KEY) -> list[str]:
    with pytest.raises(StageConfigError) as error:
        stage_with_files(tmp_path, known_hosts, key)
    return error.value.problems


def test_resolve_files_reads_the_key_and_pins_host_keys(tmp_path: Path) -> None:
    stage = stage_with_files(tmp_path, f"# comment\n192.0.2.11 {ED25519} a\n[192.0.2.12]:2222 {ECDSA}\n")
    assert stage.config.ssh.private_key.get_secret_value() == FAKE_KEY
    assert pinned(stage) == [ED25519, ECDSA]


def test_a_file_hashed_by_ssh_keygen_with_three_key_types_pins_ed25519(tmp_path: Path) -> None:
    """What `ssh-keyscan -H` writes: hashed names, one line per key type, RSA first."""
    plain = "".join(
        f"{name} {key}\n" for name in ("192.0.2.11", "[192.0.2.12]:2222") for key in (RSA, ECDSA, ED25519)
    )
    (tmp_path / "known_hosts").write_text(plain)
    subprocess.run(["ssh-keygen", "-H", "-f", tmp_path / "known_hosts"], check=True, capture_output=True)
    hashed = (tmp_path / "known_hosts").read_text()
    assert "192.0.2" not in hashed
    assert hashed.count("|1|") == 6
    assert pinned(stage_with_files(tmp_path, None)) == [ED25519, ED25519]


@pytest.mark.parametrize(
    ("keys", "chosen"),
    [
        ([RSA, ECDSA, ED25519], ED25519),
        ([RSA, ECDSA], ECDSA),
        ([RSA], RSA),
    ],
)
def test_of_several_keys_the_preferred_type_is_pinned(tmp_path: Path, keys: list[str], chosen: str) -> None:
    lines = "".join(f"192.0.2.11,[192.0.2.12]:2222 {key}\n" for key in keys)
    assert pinned(stage_with_files(tmp_path, lines)) == [chosen, chosen]


def test_the_ecdsa_curves_come_in_order_of_size() -> None:
    curves = [public_key(f"ecdsa-sha2-nistp{bits}") for bits in (521, 384, 256)]
    assert preferred_host_key([asyncssh.import_public_key(k) for k in curves]) == curves[2]
    assert preferred_host_key([asyncssh.import_public_key(k) for k in curves[:2]]) == curves[1]
    assert preferred_host_key([]) is None


def test_a_revoked_key_is_never_pinned(tmp_path: Path) -> None:
    lines = f"192.0.2.11,[192.0.2.12]:2222 {ED25519}\n192.0.2.11,[192.0.2.12]:2222 {ECDSA}\n"
    lines += f"@revoked * {ED25519}\n"
    assert pinned(stage_with_files(tmp_path, lines)) == [ECDSA, ECDSA]


def test_comments_host_lists_and_patterns_match(tmp_path: Path) -> None:
    lines = f"#192.0.2.11 {RSA}\nweb-a,192.0.2.11 {ED25519}\n[192.0.2.1?]:2222 {ECDSA}\n"
    assert pinned(stage_with_files(tmp_path, lines)) == [ED25519, ECDSA]


def test_the_port_entry_wins_over_the_plain_one_which_is_asyncsshs_fallback(tmp_path: Path) -> None:
    both = f"192.0.2.11 {ED25519}\n192.0.2.12 {RSA}\n[192.0.2.12]:2222 {ECDSA}\n"
    assert pinned(stage_with_files(tmp_path, both)) == [ED25519, ECDSA]
    plain = f"192.0.2.11 {ED25519}\n192.0.2.12 {RSA}\n"
    assert pinned(stage_with_files(tmp_path, plain)) == [ED25519, RSA]


def test_a_host_not_in_the_file_is_named_with_its_key(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, f"192.0.2.11 {ED25519}\n")
    assert problem == (
        f"{NS}:hosts.existing[1].hostKey: {tmp_path / 'known_hosts'} has no key for 192.0.2.12 port 2222; "
        "expected a host key line for it, or hostKey set"
    )


def test_a_certificate_authority_alone_cannot_be_pinned(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, f"192.0.2.11 {ED25519}\n@cert-authority [192.0.2.12]:2222 {ECDSA}\n")
    assert problem.startswith(f"{NS}:hosts.existing[1].hostKey: ")
    assert "has only a @cert-authority key, which cannot be pinned for 192.0.2.12 port 2222" in problem


def test_a_key_type_the_program_cannot_pin_is_named(tmp_path: Path) -> None:
    security_key = public_key("sk-ssh-ed25519@openssh.com")
    (problem,) = problems(tmp_path, f"192.0.2.11 {ED25519}\n[192.0.2.12]:2222 {security_key}\n")
    assert "has no key of a type the program can pin (ssh-ed25519, ecdsa-sha2-nistp256," in problem


def test_a_malformed_file_is_named_by_its_key(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, f"@bogus 192.0.2.11 {ED25519}\n")
    assert problem == (
        f"{NS}:ssh.knownHostsFile: cannot read {tmp_path / 'known_hosts'}: "
        "Invalid known hosts marker: bogus; expected a known_hosts file"
    )


def test_an_explicit_host_key_wins_over_known_hosts(tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "app": "example",
        "appVersion": "v1.4.2",
        "hosts": {"provider": "existing", "existing": [{"address": "192.0.2.11", "hostKey": HOST_KEY}]},
        "ssh": {"user": "admin", "privateKey": FAKE_KEY, "knownHostsFile": "known_hosts"},
    }
    (tmp_path / "known_hosts").write_text(f"192.0.2.11 {ED25519}\n")
    stage = resolve_files(parse_stage("local", values), tmp_path)
    assert pinned(stage) == [HOST_KEY]


def test_missing_files_are_the_only_problems_each_named_by_its_key(tmp_path: Path) -> None:
    with pytest.raises(StageConfigError) as error:
        stage_with_files(tmp_path, None, key=None)
    assert str(error.value).startswith("stage 'local' has 2 configuration problem(s):")
    key_problem, known_problem = error.value.problems
    assert key_problem == (
        f"{NS}:ssh.privateKeyFile: cannot use {tmp_path / 'id_test'}: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'id_test'}'; expected a readable OpenSSH private key file"
    )
    assert known_problem == (
        f"{NS}:ssh.knownHostsFile: cannot read {tmp_path / 'known_hosts'}: [Errno 2] No such file or "
        f"directory: '{tmp_path / 'known_hosts'}'; expected a known_hosts file"
    )


ENCRYPTED_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key("pkcs8-pem", passphrase="x")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello\n", "not an unencrypted OpenSSH or PEM private key (Invalid private key)"),
        (
            asyncssh.generate_private_key("ssh-ed25519")
            .export_private_key("pkcs8-pem", passphrase="x")
            .decode(),
            "not an unencrypted OpenSSH or PEM private key (Passphrase must be specified",
        ),
    ],
    ids=["not-a-key", "encrypted"],
)
def test_a_private_key_file_that_cannot_be_used_is_named(tmp_path: Path, text: str, reason: str) -> None:
    (problem,) = problems(tmp_path, f"192.0.2.11,[192.0.2.12]:2222 {ED25519}\n", key=text)
    assert problem.startswith(f"{NS}:ssh.privateKeyFile: cannot use {tmp_path / 'id_test'}: {reason}")
    assert problem.endswith("; expected a readable OpenSSH private key file")


def test_a_pem_private_key_is_accepted(tmp_path: Path) -> None:
    pem = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_private_key("pkcs1-pem").decode()
    stage = stage_with_files(tmp_path, f"192.0.2.11,[192.0.2.12]:2222 {ED25519}\n", key=pem)
    assert stage.config.ssh.private_key.get_secret_value() == pem
