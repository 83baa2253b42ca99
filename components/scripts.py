"""Remote scripts: pure functions returning shell text; every value is quoted.

Each privileged script is a bash body run as root through ``sudo -n``, because
the provisioning user has passwordless sudo and no TTY.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .config import Stage
from .render import STAGING_DIR, STATE_DIR, RenderedFile, env_path, staging_dir, sudoers_path

JOURNAL_LINES = 40
# Sidekiq refreshes its process title (and quiet state) on its ~5 s heartbeat.
QUIET_CONFIRM_SECONDS = 12


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
        f"unit={q(stage.unit)}",
        f"run_as={q(sidekiq.user)}",
        'say() { printf "sidekiq-fleet: %s on host %s: %s\\n" "$unit" "$host" "$*"; }',
    ]
    if sidekiq.scope == "user":
        lines += [
            'uid=$(id -u "$run_as")',
            'sctl() { runuser -u "$run_as" -- env XDG_RUNTIME_DIR="/run/user/$uid" systemctl --user "$@"; }',
            # `journalctl --user-unit` as root finds nothing here; match the fields instead.
            f'journal_tail() {{ journalctl _SYSTEMD_USER_UNIT="$unit" _UID="$uid" -n {JOURNAL_LINES} '
            '--no-pager -o short-iso "$@" 2>&1 || true; }',
        ]
    else:
        lines += [
            'sctl() { systemctl "$@"; }',
            f'journal_tail() {{ journalctl -u "$unit" -n {JOURNAL_LINES} '
            '--no-pager -o short-iso "$@" 2>&1 || true; }',
        ]
    # The unit has no start limit (StartLimitIntervalSec=0), so systemd never gives up.
    retry = f"systemd starts it again every {sidekiq.restart_sec} s, and it runs once Redis is back"
    lines += [
        'die() { say "FAILED: $*" >&2; exit 1; }',
        "started=$(date +%s)",
        "fail() {",
        f'  echo "last {JOURNAL_LINES} journal lines of $unit on host $host:" >&2',
        "  journal_tail | sed 's/^/    /' >&2",
        "  # Name the usual cause instead of leaving it in the journal lines.",  # pragma: no mutate - shell comment  # noqa: E501
        "  local redis",
        "  redis=$(journal_tail --since \"@$started\" | grep -E -o -m1 'Redis::[A-Za-z]+Error: .*' || true)",
        f'  [ -z "$redis" ] || die "$*: Sidekiq cannot reach Redis ($redis); {retry}"',
        '  die "$@"',
        "}",
    ]
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
            'echo "sidekiq-fleet: host $host is ready"',
        ]
    )


def _resolve(path: str) -> str:
    """Shell text for a target path; ``~user/rest`` becomes that user's home."""
    if path.startswith("~"):
        user, _, rest = path[1:].partition("/")
        return f'"$(getent passwd {q(user)} | cut -d: -f6)"/{q(rest)}'
    return q(path)


def install(stage: Stage, files: Sequence[RenderedFile], host: str) -> str:
    """Validate the staged files, then install them atomically as root.

    Nothing is installed unless every file validates; files are written under a
    hidden temporary name next to their target and renamed into place together.
    """
    sidekiq = stage.config.sidekiq
    body = [
        _helpers(stage, host),
        "work=$(mktemp -d /run/sidekiq-fleet-install.XXXXXX)",
        "pending=()",  # pragma: no mutate - bash 5 takes an unset array as empty
        'cleanup() { rm -rf "$work"; for p in "${pending[@]}"; do rm -f "$p"; done; }',
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
    names = [file.path.rsplit("/", 1)[1] for file in files]
    copies = [f'"$work"/{q(name)}' for name in names]
    unit_copy = None  # pragma: no mutate - render_files always has a unit, so "" is the same
    for file, copy in zip(files, copies, strict=True):  # pragma: no mutate - same lengths
        body.append(f"install -m 0600 {q(file.staged_path)} {copy}")
        if file.role == "sudoers":
            body.append(
                f'visudo -cf {copy} >/dev/null 2>"$work/visudo.err" || die "the sudoers drop-in '
                'failed visudo -cf, nothing installed: $(cat "$work/visudo.err")"'
            )
        if file.role == "unit":
            unit_copy = copy
    if unit_copy is not None:
        body += [
            f"verify_out=$(systemd-analyze verify {unit_copy} 2>&1) || "
            'die "systemd-analyze verify failed, nothing installed: $verify_out"',
            "# verify exits 0 on bad values such as Type=notfy: its warnings about this unit fail.",  # pragma: no mutate - shell comment  # noqa: E501
            'ours=$(printf "%s\\n" "$verify_out" | grep -F -e "$unit" || true)',
            '[ -z "$ours" ] || die "systemd-analyze verify warned, nothing installed: $ours"',
            '[ -z "$verify_out" ] || say "note: systemd-analyze verify reported other units: $verify_out"',
        ]
    body += ["unit_changed=0", "changed=0"]
    for index, (file, name, copy) in enumerate(
        zip(files, names, copies, strict=True)  # pragma: no mutate - same lengths
    ):
        target = f"target{index}"
        body += [
            f"{target}={_resolve(file.path)}",
            f'tmp{index}="$(dirname "${target}")/.{name}.sidekiq-fleet-new"',
            f'if ! cmp -s {copy} "${target}"; then',
            f'  dir="$(dirname "${target}")"',
            # In a user's home, the user creates the directories, so that ~/.config stays theirs.
            f'  [ -d "$dir" ] || runuser -u {q(file.owner)} -- mkdir -p -m 0755 "$dir"'
            if file.owner != "root"
            else '  [ -d "$dir" ] || install -d -m 0755 -o root -g root "$dir"',
            f'  pending+=("$tmp{index}")',
            f'  install -o {q(file.owner)} -g {q(file.group)} -m {q(file.mode)} {copy} "$tmp{index}"',
            "  changed=1; unit_changed=1" if file.role == "unit" else "  changed=1",
            "fi",
        ]
    # Every file validated and is staged beside its target: rename them all.
    for index, file in enumerate(files):
        body += [
            f'if [ -e "$tmp{index}" ]; then mv -f "$tmp{index}" "$target{index}"; '
            f'say "installed $target{index} ({file.mode} {file.owner}:{file.group})"; fi'
        ]
    body.append("pending=()")
    rendered_roles = {f.role for f in files}
    for stale in _stale_paths(stage, rendered_roles):
        body.append(
            f'stale={_resolve(stale)}; if [ -e "$stale" ]; then rm -f "$stale"; changed=1; '
            'say "removed $stale, no longer configured"; fi'
        )
    if sidekiq.scope == "user":
        body += [
            'loginctl enable-linger "$run_as"',
            'systemctl start "user@$uid.service"',
        ]
    body += [
        'if [ "$unit_changed" = 1 ]; then sctl daemon-reload; say "daemon-reload done"; fi',
        'sctl enable --quiet "$unit"',
        'if [ "$changed" = 0 ]; then say "files unchanged"; fi',
    ]
    return as_root("\n".join(body))


def _stale_paths(stage: Stage, rendered_roles: set[str]) -> list[str]:
    stale = []
    if "env" not in rendered_roles:
        stale.append(env_path(stage))
    if "sudoers" not in rendered_roles:
        stale.append(sudoers_path(stage))
    return stale


def _quiet(stage: Stage) -> str:
    """Send TSTP, then wait a bounded time until no worker thread is busy.

    Sidekiq's process title reads "sidekiq 6.4.1 app [3 of 5 busy] stopping";
    it is refreshed on each heartbeat, about every 5 s.
    """
    wait = stage.config.rollout.max_busy_wait
    return "\n".join(
        [
            'pid=$(sctl show -p MainPID --value "$unit")',
            'sctl kill -s TSTP "$unit"',
            'say "sent TSTP to MainPID $pid; waiting for the quiet flag"',
            'title() { ps -o args= -p "$pid" 2>/dev/null || true; }',
            f"confirm=$((SECONDS + {QUIET_CONFIRM_SECONDS}))",
            'until [[ "$(title)" == *stopping* ]]; do',
            "  (( SECONDS < confirm )) || break",
            "  sleep 1",
            "done",
            f"deadline=$((SECONDS + {wait}))",
            "while :; do",
            "  busy=$(title | sed -n 's/.*\\[\\([0-9]\\+\\) of [0-9]\\+ busy\\].*/\\1/p')",
            '  [ "${busy:-0}" -eq 0 ] && break',
            "  if (( SECONDS >= deadline )); then",
            f'    say "still $busy busy after {wait} s; going on: Sidekiq pushes unfinished jobs '
            'back to Redis within its -t timeout"',
            "    break",
            "  fi",
            "  sleep 1",
            "done",
            'say "quiet: ${busy:-0} busy"',
        ]
    )


def restart(stage: Stage, host: str, app_version: str) -> str:
    """Graceful restart: quiet, drain, restart, check; a host without it running gets a start."""
    quiet_first = stage.config.rollout.quiet_first
    body = [
        _helpers(stage, host),
        f"version={q(app_version)}",
        'if ! sctl is-active --quiet "$unit"; then',
        '  say "not running; starting it for $version"',
        "  # A unit that hit its start limit (say, a release that could not boot) refuses to start.",  # pragma: no mutate - shell comment  # noqa: E501
        '  sctl reset-failed "$unit" 2>/dev/null || true',
        '  sctl start "$unit" || fail "start failed"',
        "else",
        '  old_pid=$(sctl show -p MainPID --value "$unit")',
    ]
    if quiet_first:
        body.append(_quiet(stage))
    body += [
        '  say "restarting for $version"',
        '  sctl restart "$unit" || fail "restart failed"',
        "fi",
        "sleep 1",
        'sctl is-active --quiet "$unit" || fail "not active after the restart"',
        'say "active, MainPID ${old_pid:-none} -> $(sctl show -p MainPID --value "$unit"), version $version"',
    ]
    return as_root("\n".join(body))


def uninstall(stage: Stage, files: Sequence[RenderedFile], host: str) -> str:
    """Stop (gracefully), disable and remove everything install created."""
    body = [_helpers(stage, host)]
    if stage.config.sidekiq.scope == "user":
        body.append('systemctl start "user@$uid.service"  # its manager must run to stop the unit')
    body += [
        'if sctl is-active --quiet "$unit"; then',
        _quiet(stage) if stage.config.rollout.quiet_first else ":",
        '  sctl stop "$unit" || fail "stop failed"',
        "fi",
        'sctl disable --quiet "$unit" 2>/dev/null || true',
    ]
    paths = {f.path for f in files} | set(_stale_paths(stage, set()))
    for path in sorted(paths):
        body.append(f"rm -f {_resolve(path)}")
    body += [
        "sctl daemon-reload",
        'sctl reset-failed "$unit" 2>/dev/null || true',
        f"rm -rf {q(staging_dir(stage))}",
        "# Shared parents go too once empty; other units' files keep them.",  # pragma: no mutate - shell comment  # noqa: E501
        f"rmdir --ignore-fail-on-non-empty {q(STAGING_DIR)} {q(STATE_DIR)} 2>/dev/null || true",
        f'rmdir --ignore-fail-on-non-empty "$(dirname {_resolve(env_path(stage))})" 2>/dev/null || true',
        'say "uninstalled"',
    ]
    return as_root("\n".join(body))
