"""Remote scripts: pure functions returning shell text; every value is quoted.

Each privileged script is a bash body run as root through ``sudo -n``, because
the provisioning user has passwordless sudo and no TTY.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Collection, Sequence

from . import layout
from .config import Stage
from .layout import (
    STAGING_DIR,
    STATE_DIR,
    SUDOERS_DIR,
    adopted_sudoers_dir,
    control_path,
    env_path,
    staging_dir,
    sudoers_path,
    version_dir,
)
from .render import RenderedFile

# Every host has it on Debian, Ubuntu and Amazon Linux; the ops commands pin it (asyncssh).
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"
HOST_KEY_LABEL = "sidekiq-fleet: host key: "


def q(value: object) -> str:
    return shlex.quote(str(value))


def as_root(body: str) -> str:
    """Run ``body`` as root with bash in strict mode; no password, no TTY."""
    return f"sudo -n /bin/bash -c {q('set -euo pipefail' + chr(10) + body)}"


def _helpers(stage: Stage, host: str) -> str:
    """Shell functions shared by the service scripts: messages, systemctl, journal."""
    sidekiq = stage.config.sidekiq
    lines = [
        f"host={q(host)}",
        f"group={q(sidekiq.unit_name)}",
        f"run_as={q(sidekiq.user)}",
        'say() { printf "sidekiq-fleet: %s on host %s: %s\\n" "$group" "$host" "$*"; }',
        'die() { say "FAILED: $*" >&2; exit 1; }',
    ]
    if sidekiq.scope == "user":
        lines += [
            'uid=$(id -u "$run_as")',
            'sctl() { runuser -u "$run_as" -- env XDG_RUNTIME_DIR="/run/user/$uid" systemctl --user "$@"; }',
        ]
    else:
        lines.append('sctl() { systemctl "$@"; }')
    return "\n".join(lines) + "\n"


def wait_for_port(address: str, port: int, timeout: int) -> str:
    """Local bash: wait until ``address:port`` accepts TCP, up to ``timeout`` seconds.

    pulumi-command's ssh dial retries have no configurable pause (pulumi-command#1238)
    and can run out while an instance boots; this bounded wait runs first, locally.
    """
    return "\n".join(
        [
            f"address={q(address)} port={q(port)} deadline=$((SECONDS + {int(timeout)}))",
            'until (exec 3<>"/dev/tcp/$address/$port") 2>/dev/null; do',
            "  if (( SECONDS >= deadline )); then",
            f'    echo "sidekiq-fleet: $address:$port did not accept connections '
            f'within {int(timeout)} s" >&2',
            "    exit 1",
            "  fi",
            "  sleep 2",
            "done",
            'echo "sidekiq-fleet: $address:$port accepts connections"',
        ]
    )


def prepare_host(stage: Stage, host: str) -> str:
    """Wait for cloud-init, check sudo, and create the private staging directories.

    The unit's own directory is made here, 0700: pulumi-command's CopyToRemote would create it
    0755 and write the staged files, the env file among them, 0644.
    """
    ssh_user = stage.ssh_user
    staging = f"{q(STAGING_DIR)} {q(staging_dir(stage))}"
    user = q(ssh_user)
    return "\n".join(
        [
            "set -eu",
            f"host={q(host)}",
            "if command -v cloud-init >/dev/null 2>&1; then",
            "  rc=0; cloud-init status --wait >/dev/null || rc=$?",
            "  # 2 means cloud-init finished with recoverable errors.",  # pragma: no mutate - shell comment  # noqa: E501
            '  if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then',
            '    echo "sidekiq-fleet: cloud-init failed on host $host (exit $rc)" >&2',
            "    cloud-init status --long >&2 || true",
            "    exit 1",
            "  fi",
            "fi",
            "if ! sudo -n true 2>/dev/null; then",
            f'  echo "sidekiq-fleet: user {ssh_user} has no passwordless sudo on host $host" >&2',
            "  exit 1",
            "fi",
            f'sudo -n install -d -m 0700 -o {user} -g "$(id -gn {user})" {staging}',
            # Trust on first use: the key of the host this connection reached, for the stack outputs.
            f"if read -r key_type key_data _ <{q(HOST_KEY_FILE)}; then",
            f'  echo "{HOST_KEY_LABEL}$key_type $key_data"',
            "fi",
            'echo "sidekiq-fleet: host $host is ready"',
        ]
    )


def host_key_from(stdout: str) -> str | None:
    """The host key that prepare_host printed (`ssh-ed25519 BASE64`), or None if it printed none."""
    for line in stdout.splitlines():
        key = line.removeprefix(HOST_KEY_LABEL)
        if key != line and re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/]+={0,2}", key):
            return key
    return None


def _as_owner_of(path: str) -> str:
    """The prefix of a command on ``path``: its owner runs it when the path is in a user's home.

    Root never reads, writes or deletes there: a symlink or FIFO the user planted would steer it.
    """
    if path.startswith("~"):
        return f"runuser -u {q(path[1:].partition('/')[0])} -- "
    return ""


def _resolve(path: str) -> str:
    """Shell text for a target path; ``~user/rest`` becomes that user's home."""
    if path.startswith("~"):
        user, _, rest = path[1:].partition("/")
        return f'"$(getent passwd {q(user)} | cut -d: -f6)"/{q(rest)}'
    return q(path)


def _verify_units(files: Sequence[RenderedFile], copies: Sequence[str], control: str) -> list[str]:
    """systemd-analyze verify on copies of every unit, together, so that references resolve.

    systemd 252 verifies a template (G-P@.service) as the instance G-P@i.service. The
    first-release service runs the control script, which is not installed yet: its copy
    points at the staged control script instead, which passed bash -n.
    """
    pairs = zip(files, copies, strict=True)  # pragma: no mutate - same lengths
    units = [(f, c) for f, c in pairs if f.role == "unit"]
    names = [f.path.rsplit("/", 1)[1] for f, _ in units]
    # Warnings name the unit file or, for a template, its @i instance.
    mentions = sorted({*names, *(n.replace("@.", "@i.") for n in names if "@." in n)})
    staged_control = '"$work/verify/control"'
    lines = [
        'mkdir -m 0700 "$work/verify"',
        f'install -m 0700 "$work/{control.rsplit("/", 1)[1]}" {staged_control}',
    ]
    for (_, copy), name in zip(units, names, strict=True):  # pragma: no mutate - same lengths
        lines.append(
            f'sed -e {q("s|" + control + " |")}"$work/verify/control "\'|\' {copy} >"$work/verify"/{q(name)}'
        )
    lines += [
        "verify_out=$(systemd-analyze verify "
        + " ".join(f'"$work/verify"/{q(n)}' for n in names)
        + ' 2>&1) || die "systemd-analyze verify failed, nothing installed: $verify_out"',
        "# verify exits 0 on bad values such as Type=notfy: its warnings about our units fail.",  # pragma: no mutate - shell comment  # noqa: E501
        'ours=$(printf "%s\\n" "$verify_out" | grep -F '
        + " ".join(f"-e {q(m)}" for m in mentions)
        + " || true)",
        '[ -z "$ours" ] || die "systemd-analyze verify warned, nothing installed: $ours"',
        '[ -z "$verify_out" ] || say "note: systemd-analyze verify reported other units: $verify_out"',
    ]
    return lines


def _root_only_dirs(path: str, user: str) -> list[str]:
    """Refuse when anyone but root could replace the control script: its directory and each
    parent must be root's and writable by no group or other."""
    problem = (
        f'"$d is not root-owned or is writable by others, so "{q(user)}" could replace "{q(path)}"; '
        'expected root-owned directories without group or other write; nothing installed"'
    )
    return [
        f"d={q(posixpath.dirname(path))}",
        "while :; do",
        # A directory that is missing yet is made root's 0755 by the install below.
        '  if found=$(stat -c "%u %a" "$d" 2>/dev/null); then',
        '    read -r owner mode <<<"$found"',
        f'    [ "$owner" = 0 ] && (( (8#$mode & 8#022) == 0 )) || die {problem}',
        "  fi",
        '  [ "$d" = / ] && break',
        '  d=$(dirname "$d")',
        "done",
    ]


def _check_whole_sudoers(drop_in: tuple[str, str] | None, removed: Sequence[str]) -> list[str]:
    """visudo -c of the host's whole sudoers configuration as the install leaves it, on copies: the
    new drop-in (path, staged copy) in place, sidekiq.adoptSudoers' files gone. A drop-in that passes
    alone can still clash with another (an alias defined twice)."""
    directory = SUDOERS_DIR
    include = f"^([@#]includedir)[[:space:]]+{re.escape(directory)}/?[[:space:]]*$"
    change = "the new drop-in" if drop_in else "sidekiq.adoptSudoers' files removed"
    problem = (
        f'"the sudoers configuration with {change} failed visudo -c, nothing installed: '
        '$(cat "$work/visudo.err")"'
    )
    patterns = "|".join(q(f"{directory}/{name}") for name in removed)
    skip = f"case $f in {patterns}) continue ;; esac; " if removed else ""
    copy_drop_in = []
    if drop_in is not None:
        path, copy = drop_in
        # Over the installed one, if any.
        copy_drop_in = [f'cp -p {copy} "$work/sudoers.d"/{q(posixpath.basename(path))}']
    return [
        'mkdir -m 0700 "$work/sudoers.d"',
        f"for f in {q(directory)}/*; do",
        f'  {skip}[ ! -f "$f" ] || cp -p "$f" "$work/sudoers.d/"',
        "done",
        *copy_drop_in,
        f"if ! grep -Eq {q(include)} /etc/sudoers; then",
        f'  say "note: /etc/sudoers does not include {directory}, so sudo will not read '
        f'{"the drop-in" if drop_in else "its files"}"',
        "fi",
        f'sed -E "s|{include}|\\1 $work/sudoers.d|" /etc/sudoers >"$work/sudoers"',
        f'visudo -cf "$work/sudoers" >/dev/null 2>"$work/visudo.err" || die {problem}',
    ]


def _keys_markers(stage: Stage) -> tuple[str, str]:
    group = stage.config.sidekiq.unit_name
    return (
        f"# BEGIN sidekiq-fleet {group}: sidekiq.authorizedKeys of pulumi up; edits here are overwritten",
        f"# END sidekiq-fleet {group}",
    )


# Run as the deploy user, never as root: its home is its own, and root writing there could follow a
# symlink it planted. Replaces this group's block (stdin: the keys, maybe none), keeps every other line.
_KEYS_BLOCK = """set -euo pipefail
begin=$1 end=$2 ssh_dir=$3/.ssh file=$3/.ssh/authorized_keys
keys=$(cat)
[ -n "$keys" ] || [ -f "$file" ] || exit 0
umask 077
mkdir -p "$ssh_dir"
new=$(mktemp "$ssh_dir/.authorized_keys.XXXXXX")
trap 'rm -f "$new"' EXIT
if [ -f "$file" ]; then
  awk -v b="$begin" -v e="$end" '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' "$file" >"$new"
fi
[ -z "$keys" ] || printf '%s\\n%s\\n%s\\n' "$begin" "$keys" "$end" >>"$new"
if [ -f "$file" ] && cmp -s "$new" "$file"; then exit 0; fi
mv -f "$new" "$file"
echo changed
"""


# Run as the owner of a file in their home, stdin its validated content: writes it beside the target
# and prints "staged", or prints nothing when the target already has that content. Only a plain
# file is compared, so a FIFO planted in its place cannot block the install.
_STAGE_IN_HOME = """set -euo pipefail
target=$1 staged=$2 mode=$3 group=$4
dir=${target%/*}
[ -d "$dir" ] || mkdir -p -m 0755 "$dir"
rm -f "$staged"
(umask 077 && cat >"$staged")
chgrp "$group" "$staged"
chmod "$mode" "$staged"
if [ -f "$target" ] && cmp -s "$staged" "$target"; then
  rm -f "$staged"
else
  echo staged
fi
"""


def _write_keys(stage: Stage, keys_file: str) -> str:
    """Shell text (as root) that puts the block of keys read from KEYS_FILE into the user's file."""
    user = stage.config.sidekiq.user
    begin, end = _keys_markers(stage)
    home = f'"$(getent passwd {q(user)} | cut -d: -f6)"'
    script = f"bash -c {q(_KEYS_BLOCK)} sidekiq-fleet {q(begin)} {q(end)} {home}"
    return f"runuser -u {q(user)} -- {script} <{keys_file}"


def install(stage: Stage, files: Sequence[RenderedFile], host: str) -> str:
    """Validate the staged files, then install them atomically as root.

    Nothing is installed unless every file validates; files are written under a
    hidden temporary name next to their target and renamed into place together.
    """
    sidekiq = stage.config.sidekiq
    control = control_path(stage)
    body = [
        _helpers(stage, host),
        "work=$(mktemp -d /run/sidekiq-fleet-install.XXXXXX)",
        "pending=() pending_home=()",  # pragma: no mutate - bash 5 takes an unset array as empty
        "cleanup() {",
        '  rm -rf "$work"',
        '  for p in "${pending[@]}"; do rm -f "$p"; done',
        *[
            f'  if [ "${{#pending_home[@]}}" -gt 0 ]; then {owner}rm -f "${{pending_home[@]}}"; fi'
            for owner in sorted({_as_owner_of(f.path) for f in files} - {""})
        ],
        "}",
        "trap cleanup EXIT",  # pragma: no mutate - bash reads signal names in any case
        f'getent passwd {q(sidekiq.user)} >/dev/null || die "user {sidekiq.user} does not exist"',
    ]
    # A missing ReadWritePaths= entry stops the unit from starting: refuse before anything changes.
    for index, path in enumerate(sidekiq.writable_paths or []):
        problem = (
            f"sidekiq-fleet:sidekiq.writablePaths[{index}]: {path} does not exist on this host; "
            "expected an existing path, as systemd refuses to start a unit with a missing one; "
            "nothing installed"
        )
        body.append(f"[ -e {q(path)} ] || die {q(problem)}")
    body += _root_only_dirs(control, sidekiq.user)
    names = [file.path.rsplit("/", 1)[1] for file in files]
    copies = [f'"$work"/{q(name)}' for name in names]
    for file, copy in zip(files, copies, strict=True):  # pragma: no mutate - same lengths
        body.append(f"install -m 0600 {q(file.staged_path)} {copy}")
        if file.role == "sudoers":
            body.append(
                f'visudo -cf {copy} >/dev/null 2>"$work/visudo.err" || die "the sudoers drop-in '
                'failed visudo -cf, nothing installed: $(cat "$work/visudo.err")"'
            )
            body += _check_whole_sudoers((file.path, copy), sidekiq.adopt_sudoers)
        if file.role == "control":
            body.append(
                f'bash -n {copy} 2>"$work/bash.err" || die "the control script failed bash -n, '
                'nothing installed: $(cat "$work/bash.err")"'
            )
    if sidekiq.adopt_sudoers and not any(file.role == "sudoers" for file in files):
        body += _check_whole_sudoers(None, sidekiq.adopt_sudoers)
    body += _verify_units(files, copies, control)
    body += _refuse_foreign_units(stage, control)
    # sidekiq.authorizedKeys: checked by ssh-keygen like the files, before anything is installed. One key
    # at a time: on a file of several, ssh-keygen -l skips a bad line and still exits 0.
    keys = sidekiq.authorized_keys
    for index, key in enumerate(keys):
        problem = (
            f"sidekiq-fleet:sidekiq.authorizedKeys[{index}]: ssh-keygen -l refused it, nothing installed"
        )
        body.append(
            f'printf "%s\\n" {q(key)} >"$work/key"; ssh-keygen -l -f "$work/key" >/dev/null '
            f'2>"$work/keygen.err" || die {q(problem)}": $(cat "$work/keygen.err")"'
        )
    # One "%s" per argument, each key with its newline: no key at all writes an empty file.
    listed = " ".join(q(key + "\n") for key in keys)
    body.append(f'printf "%s" {listed} >"$work/authorized_keys"')
    body += ["unit_changed=0", "changed=0"]
    body.append("staged=()")  # pragma: no mutate - bash 5 takes an unset array as empty
    for index, (file, name, copy) in enumerate(
        zip(files, names, copies, strict=True)  # pragma: no mutate - same lengths
    ):
        target, tmp = f'"$target{index}"', f'"$tmp{index}"'
        mark_changed = "changed=1; unit_changed=1" if file.role == "unit" else "changed=1"
        body += [
            f"target{index}={_resolve(file.path)}",
            f'tmp{index}="$(dirname {target})/.{name}.sidekiq-fleet-new"',
        ]
        owner = _as_owner_of(file.path)
        if owner:
            problem = f'"could not stage $target{index} as "{q(file.owner)}", nothing installed"'
            body += [
                f"pending_home+=({tmp})",
                f"result=$({owner}bash -c {q(_STAGE_IN_HOME)} sidekiq-fleet {target} {tmp} "
                f"{q(file.mode)} {q(file.group)} <{copy}) || die {problem}",
                f'if [ "$result" = staged ]; then staged[{index}]=1; {mark_changed}; fi',
            ]
            continue
        body += [
            f"if ! cmp -s {copy} {target}; then",
            f'  dir="$(dirname {target})"',
            '  [ -d "$dir" ] || install -d -m 0755 -o root -g root "$dir"',
            f"  pending+=({tmp})",
            f"  install -o {q(file.owner)} -g {q(file.group)} -m {q(file.mode)} {copy} {tmp}",
            f"  staged[{index}]=1; {mark_changed}",
            "fi",
        ]
    # Every file validated and is staged beside its target: rename them all.
    for index, file in enumerate(files):
        body.append(
            f'if [ -n "${{staged[{index}]-}}" ]; then {_as_owner_of(file.path)}mv -f "$tmp{index}" '
            f'"$target{index}"; say "installed $target{index} ({file.mode} {file.owner}:{file.group})"; fi'
        )
    body.append("pending=() pending_home=()")
    keys_file = '"$work/authorized_keys"'
    body += [
        f"keys_result=$({_write_keys(stage, keys_file)}) || "
        f'die "could not write the authorized keys of {sidekiq.user}"',
        f'if [ "$keys_result" = changed ]; then '
        f'say "authorized keys of {sidekiq.user}: {len(keys)} key(s) of sidekiq.authorizedKeys"; fi',
    ]
    body += _adopt_sudoers(stage)
    rendered_roles = {f.role for f in files}
    for stale in _stale_paths(stage, rendered_roles):
        owner = _as_owner_of(stale)
        body.append(
            f'stale={_resolve(stale)}; if {owner}test -e "$stale"; then {owner}rm -f "$stale"; changed=1; '
            'say "removed $stale, no longer configured"; fi'
        )
    if sidekiq.scope == "user":
        body += [
            'loginctl enable-linger "$run_as"',
            'systemctl start "user@$uid.service"',
        ]
    body += [
        'if [ "$unit_changed" = 1 ]; then sctl daemon-reload; say "daemon-reload done"; fi',
        # The slots themselves are enabled by the control script: exactly one per process.
        f"sctl enable --quiet {q(layout.target_unit(stage.config.sidekiq.unit_name))}",
        'if [ "$changed" = 0 ]; then say "files unchanged"; fi',
    ]
    return as_root("\n".join(body))


def _refuse_foreign_units(stage: Stage, control: str) -> list[str]:
    """The staged control script's `foreign`: another tool's Sidekiq units of this app that
    sidekiq.adopt does not name stop the install before anything changes; broad sudoers lines warn,
    but for the files sidekiq.adoptSudoers is about to remove."""
    staged = f'"$work"/{q(posixpath.basename(control))}'
    removing = [f"warning {SUDOERS_DIR}/{name}: " for name in stage.config.sidekiq.adopt_sudoers]
    warnings = "sed -n 's/^warning //p' <<<\"$found\""
    if removing:
        patterns = " ".join(f"-e {q(prefix)}" for prefix in removing)
        warnings = f"grep -v -F {patterns} <<<\"$found\" | sed -n 's/^warning //p'"
    return [
        f'found=$(SIDEKIQ_FLEET_HOST="$host" bash {staged} foreign 2>&1) || '
        'die "could not look for other Sidekiq units, nothing installed: $found"',
        f'while IFS= read -r line; do say "WARNING: $line"; done < <({warnings})',
        "refused=$(sed -n 's/^refuse //p' <<<\"$found\")",
        '[ -z "$refused" ] || die "$refused; nothing installed"',
    ]


def _adopt_sudoers(stage: Stage) -> list[str]:
    """Move sidekiq.adoptSudoers' files (visudo -c passed without them) to root's state directory. The
    provisioning user must keep its passwordless sudo: if not, they go back, and the install fails."""
    names = stage.config.sidekiq.adopt_sudoers
    if not names:
        return []
    saved = adopted_sudoers_dir(stage)
    lines = ["moved=()"]  # pragma: no mutate - bash 5 takes an unset array as empty
    for name in names:
        path = f"{SUDOERS_DIR}/{name}"
        lines += [
            f"if [ -f {q(path)} ] && [ ! -L {q(path)} ]; then",
            f"  install -d -m 0700 {q(saved)}",
            f"  mv -f -- {q(path)} {q(saved + '/' + name)}",
            f"  moved+=({q(name)})",
            f'  say "removed {path} (sidekiq.adoptSudoers); a copy is in {saved}"',
            "fi",
        ]
    restore = f'for name in "${{moved[@]}}"; do mv -f -- {q(saved)}/"$name" {q(SUDOERS_DIR)}/"$name"; done'
    lines += [
        'if [ "${#moved[@]}" -gt 0 ] && [ -n "${SUDO_USER-}" ] && '
        '! runuser -u "$SUDO_USER" -- sudo -n true 2>/dev/null; then',
        f"  {restore}",
        '  die "sidekiq-fleet:sidekiq.adoptSudoers: without ${moved[*]}, $SUDO_USER has no passwordless '
        "sudo, which pulumi up needs; put them back; expected only files that the provisioning user does "
        'not need"',
        "fi",
    ]
    return lines


def _stale_paths(stage: Stage, rendered_roles: Collection[str]) -> list[str]:
    stale = []
    if "env" not in rendered_roles:
        stale.append(env_path(stage))
    if "sudoers" not in rendered_roles:
        stale.append(sudoers_path(stage))
    return stale


def restart(stage: Stage, host: str, app_version: str) -> str:
    """Run the control script's restart: the whole rollout logic lives on the host, in one place."""
    sidekiq = stage.config.sidekiq
    command = f"SIDEKIQ_FLEET_HOST={q(host)} {q(control_path(stage))} restart {q(app_version)}"
    if sidekiq.scope == "user":
        # deploy runs it against its own user manager; root never acts for it there.
        return as_root(
            f"uid=$(id -u {q(sidekiq.user)})\n"
            f'exec runuser -u {q(sidekiq.user)} -- env XDG_RUNTIME_DIR="/run/user/$uid" {command}'
        )
    return as_root(f"exec env {command}")


def uninstall(stage: Stage, files: Sequence[RenderedFile], host: str) -> str:
    """Stop and remove every unit of the group, then every other file install wrote.

    The units go through the control script's teardown, their one owner (it also prunes a removed
    process's units on restart). It runs from this render's copy, not the installed file, so that
    a host whose install never finished is uninstalled too.
    """
    sidekiq = stage.config.sidekiq
    (control,) = [file.content for file in files if file.role == "control"]
    teardown = 'SIDEKIQ_FLEET_HOST="$host" bash "$control" teardown'
    body = [_helpers(stage, host)]
    if sidekiq.scope == "user":
        body.append('systemctl start "user@$uid.service"  # its manager must run to stop the units')
        # deploy's own run: root never reads or deletes in its home.
        teardown = f'runuser -u "$run_as" -- env XDG_RUNTIME_DIR="/run/user/$uid" {teardown}'
    else:
        teardown = f"env {teardown}"
    body += [
        # Root's own file in /tmp (mktemp, O_EXCL): nobody else can replace it; deploy may read it.
        "control=$(mktemp /tmp/sidekiq-fleet-teardown.XXXXXX)",
        "trap 'rm -f \"$control\"' EXIT",  # pragma: no mutate - bash reads signal names in any case
        f"cat >\"$control\" <<'SIDEKIQ_FLEET_CONTROL_SCRIPT'\n{control}SIDEKIQ_FLEET_CONTROL_SCRIPT",
        'chmod 0644 "$control"',
        f'{teardown} || die "teardown failed: nothing else removed"',
    ]
    # The keys block goes; the user's other keys stay.
    remove_keys = _write_keys(stage, "/dev/null")
    body.append(f"if getent passwd {q(sidekiq.user)} >/dev/null; then {remove_keys} >/dev/null; fi")
    paths = {f.path for f in files if f.role != "unit"} | set(_stale_paths(stage, set()))
    for path in sorted(paths):
        body.append(f"{_as_owner_of(path)}rm -f {_resolve(path)}")
    owner = _as_owner_of(version_dir(stage))
    body += [
        # The sudoers copies are root's in both scopes; they and the directories above go once empty.
        f"sudoers_copies={q(adopted_sudoers_dir(stage))}",
        'rmdir "$sudoers_copies" "${sudoers_copies%/*}" "${sudoers_copies%/*/*}" 2>/dev/null || true',
        f"versions={_resolve(version_dir(stage))}",
        # In a home, the user deletes it; what their links point at is not theirs to delete.
        # Everything but what sidekiq.adopt took over: destroy does not bring it back, but keeps the copies.
        f'{owner}find "$versions" -mindepth 1 -maxdepth 1 ! -name adopted -exec rm -rf -- {{}} + '
        '2>/dev/null || [ ! -e "$versions" ] || say "note: $versions was left in place"',
        f'{owner}rmdir "$versions" 2>/dev/null || ! {owner}test -d "$versions/adopted" || say "kept '
        '$versions/adopted: the units sidekiq.adopt took over (README: Migrating from capistrano-sidekiq)"',
        f"rm -rf {q(staging_dir(stage))}",
        "# Shared parents go too once empty; other units' files keep them.",  # pragma: no mutate - shell comment  # noqa: E501
        f"rmdir --ignore-fail-on-non-empty {q(STAGING_DIR)} {q(STATE_DIR)} 2>/dev/null || true",
        f"{_as_owner_of(env_path(stage))}rmdir --ignore-fail-on-non-empty "
        f'"$(dirname {_resolve(env_path(stage))})" 2>/dev/null || true',
        'say "uninstalled"',
    ]
    return as_root("\n".join(body))
