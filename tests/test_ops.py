"""The ops command's pure parts: outputs, control-script commands, status lines, inventories, reports.

The SSH layer against real sshd is in tests/e2e/test_ops_ssh.py; here only what needs no host
(a refused port and a silent listener on loopback).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from components.__main__ import render_stage
from ops import cli, control, inventory, ssh
from ops.outputs import Fleet, Host, OpsError, fleet_from_outputs, read_outputs_file

KEY_1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHFRyfMJQgt0Y4TQt5156vbF2nZe1Ymd9V0dDD4+k30j"
KEY_2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJec+JKN0+LG/KBxFYTAQ1mEBOapWbz9bRnU09VQJMAa"


def outputs(**top) -> dict:
    """Stack outputs as components/fleet.py exports them (outputsVersion 3), written out here."""
    return {
        "outputsVersion": 3,
        "stage": "staging",
        "app": "example",
        "appVersion": "3f2c1e9",
        "scope": "system",
        "deployUser": "deploy",
        "units": ["sidekiq.target", "sidekiq-default@.service"],
        "control": "/usr/local/sbin/sidekiqctl",
        "batchSize": 2,
        "opsIdentityFile": None,
        "hosts": [
            {
                "name": "web1",
                "address": "198.51.100.7",
                "port": 22,
                "sshUser": "admin",
                "hostKey": KEY_1,
                "units": ["sidekiq.target", "sidekiq-default@.service"],
                "control": "/usr/local/sbin/sidekiqctl",
                "appVersion": "3f2c1e9",
                "instanceId": None,
            },
            {
                "name": "web2",
                "address": "198.51.100.8",
                "port": 2222,
                "sshUser": "admin",
                "hostKey": None,
                "units": ["sidekiq.target", "sidekiq-default@.service"],
                "control": "/usr/local/sbin/workersctl",
                "appVersion": None,
            },
        ],
        **top,
    }


@pytest.fixture
def fleet() -> Fleet:
    return fleet_from_outputs("staging", outputs())


# --- outputs -------------------------------------------------------------------------------------


def test_fleet_from_outputs(fleet):
    assert fleet == Fleet(
        stage="staging",
        deploy_user="deploy",
        scope="system",
        batch_size=2,
        hosts=(
            Host("web1", "198.51.100.7", 22, KEY_1, "/usr/local/sbin/sidekiqctl"),
            Host("web2", "198.51.100.8", 2222, None, "/usr/local/sbin/workersctl"),
        ),
    )


def test_outputs_as_the_engine_gives_them_with_numbers_as_floats_and_new_fields():
    values = outputs(outputsVersion=3.0, batchSize=2.0, addedLater="ignored")
    values["hosts"][0]["port"] = 22.0
    assert fleet_from_outputs("staging", values) == fleet_from_outputs("staging", outputs())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.pop("hosts"), "stack outputs of staging have no `hosts` (keys: app, appVersion, "),
        (lambda o: o.clear(), "stack outputs of staging have no `hosts` (keys: none)"),
        # A stack written before the contract had a version: it says what to do.
        (
            lambda o: o.pop("outputsVersion"),
            "stack outputs of staging were written by an earlier version; this sidekiq-fleet reads "
            "outputsVersion 3: run `pulumi up -s staging` once with it, then try again",
        ),
        (lambda o: o.update(outputsVersion=2), "were written by outputsVersion 2; this sidekiq-fleet reads"),
        (lambda o: o.update(outputsVersion=4), "were written by outputsVersion 4; this sidekiq-fleet reads"),
        (lambda o: o.pop("deployUser"), "stack outputs of staging: deployUser is missing"),
        (lambda o: o.pop("batchSize"), "stack outputs of staging: batchSize is missing"),
        (
            lambda o: o.update(scope="global"),
            "stack outputs of staging: scope is \"global\": Input should be 'system' or 'user'",
        ),
        (
            lambda o: o["hosts"].append("web3"),
            'stack outputs of staging: hosts[2] is "web3": Input should be a valid dictionary',
        ),
        (lambda o: o["hosts"][1].pop("address"), "staging: hosts[1].address is missing"),
        (lambda o: o["hosts"][0].update(port="x"), 'staging: hosts[0].port is "x": Input should be a valid'),
        (lambda o: o["hosts"][0].update(port=0), "staging: hosts[0].port is 0: Input should be greater than"),
        (lambda o: o["hosts"][0].update(hostKey=1), "hosts[0].hostKey is 1: Input should be a valid"),
        (
            lambda o: o["hosts"][0].update(hostKey="ssh-ed25519 AAAAnope"),
            'hosts[0].hostKey is "ssh-ed25519 AAAAnope": Value error, '
            "'ssh-ed25519 AAAAnope' has no ssh-ed25519",
        ),
        (lambda o: o.update(control=[]), "staging: control is []: Input should be a valid string"),
        (lambda o: o.update(batchSize=0), "batchSize is 0: Input should be greater than or equal to 1"),
    ],
)
def test_outputs_shape_errors(change, message):
    values = outputs()
    change(values)
    with pytest.raises(OpsError) as error:
        fleet_from_outputs("staging", values)
    assert message in str(error.value)


def test_select_hosts_keeps_the_outputs_order(fleet):
    assert [host.name for host in fleet.select(["web2", "web1"])] == ["web1", "web2"]
    assert [host.name for host in fleet.select(["web2"])] == ["web2"]
    assert fleet.select(None) == list(fleet.hosts)
    with pytest.raises(OpsError) as error:
        fleet.select(["web2", "web9", "db"])
    assert (
        str(error.value)
        == "--hosts: web9, db not in the stack outputs of staging; expected some of: web1, web2"
    )


def test_read_outputs_file(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs()))
    assert read_outputs_file(path) == outputs()
    path.write_text("[1]")
    with pytest.raises(OpsError, match=r"holds no JSON object; expected `pulumi stack output --json`"):
        read_outputs_file(path)
    path.write_text("Current stack outputs (3):")
    with pytest.raises(OpsError, match=r"is not JSON \(Expecting value: line 1 column 1"):
        read_outputs_file(path)
    with pytest.raises(OpsError, match=r"--outputs: cannot read .*/missing.json: No such file or directory"):
        read_outputs_file(tmp_path / "missing.json")


# --- control-script commands ---------------------------------------------------------------------


def test_control_commands_go_through_sudo_in_system_scope(fleet):
    web1, web2 = fleet.hosts
    assert control.control_command(fleet, web1, "status") == "sudo -n /usr/local/sbin/sidekiqctl status"
    assert control.control_command(fleet, web2, "restart") == "sudo -n /usr/local/sbin/workersctl restart"
    assert control.control_command(fleet, web1, "follow") == "sudo -n /usr/local/sbin/sidekiqctl follow"


def test_control_commands_run_the_script_directly_in_user_scope():
    fleet = fleet_from_outputs("staging", outputs(scope="user"))
    assert control.control_command(fleet, fleet.hosts[0], "quiet") == "/usr/local/sbin/sidekiqctl quiet"


def test_control_command_quotes_the_path(fleet):
    host = Host("web1", "192.0.2.1", 22, KEY_1, "/opt/my tools/$(reboot)ctl")
    assert control.control_command(fleet, host, "stop") == "sudo -n '/opt/my tools/$(reboot)ctl' stop"


def test_control_command_refuses_other_verbs(fleet):
    for verb in ("drain", "first-release", "status; reboot", "restart v2"):
        with pytest.raises(ValueError, match="is not a deploy verb of the control script"):
            control.control_command(fleet, fleet.hosts[0], verb)


def test_the_target_is_the_deploy_user_never_the_login_user(fleet):
    target = cli._target(fleet, fleet.hosts[1])
    assert target == ssh.Target("web2", "198.51.100.8", 2222, "deploy", None)


# --- status lines --------------------------------------------------------------------------------

# The example line of docs/architecture.md.
DOC_LINE = (
    "process=default slot=a enabled=yes state=active pid=1234 since=2026-11-28T10:00:00+00:00 busy=0 "
    "concurrency=5 quiet=no release=/var/www/example/local/releases/20261128100000 memory=123456789 "
    "version=local-1 sidekiq=6.4.1 limit=1073741824 recycle=805306368 recycled=2026-11-28T09:40:12+00:00"
)
# With no memoryMax, recycleAboveMiB or recycle: the line of a stage without them.
DRAINING = (
    "process=default slot=b enabled=no state=active pid=987 since=2026-11-28T09:00:00+00:00 busy=3 "
    "concurrency=5 quiet=yes release=/var/www/example/local/releases/20261127090000 memory=104857600 "
    "version=- sidekiq=7.3.2 limit=- recycle=- recycled=-"
)
# As a control script installed before the sidekiq, limit, recycle and recycled fields prints it.
STOPPED = (
    "process=critical slot=a enabled=yes state=inactive pid=- since=- busy=- concurrency=- quiet=- release=- "
    'memory=- version="a b"'
)


def test_parse_status_reads_every_field():
    stdout = f"sidekiq-fleet: sidekiq on host web1: 2 processes\n{DOC_LINE}\n{DRAINING}\n{STOPPED}\n"
    assert control.parse_status(stdout) == [
        {
            "process": "default",
            "slot": "a",
            "enabled": True,
            "state": "active",
            "pid": 1234,
            "since": "2026-11-28T10:00:00+00:00",
            "busy": 0,
            "concurrency": 5,
            "quiet": False,
            "release": "/var/www/example/local/releases/20261128100000",
            "memory": 123456789,
            "version": "local-1",
            "sidekiq": "6.4.1",
            "limit": 1073741824,
            "recycle": 805306368,
            "recycled": "2026-11-28T09:40:12+00:00",
        },
        {
            "process": "default",
            "slot": "b",
            "enabled": False,
            "state": "active",
            "pid": 987,
            "since": "2026-11-28T09:00:00+00:00",
            "busy": 3,
            "concurrency": 5,
            "quiet": True,
            "release": "/var/www/example/local/releases/20261127090000",
            "memory": 104857600,
            "version": None,
            "sidekiq": "7.3.2",
            "limit": None,
            "recycle": None,
            "recycled": None,
        },
        {
            "process": "critical",
            "slot": "a",
            "enabled": True,
            "state": "inactive",
            "pid": None,
            "since": None,
            "busy": None,
            "concurrency": None,
            "quiet": None,
            "release": None,
            "memory": None,
            "version": "a b",
            "sidekiq": None,
            "limit": None,
            "recycle": None,
            "recycled": None,
        },
    ]
    assert control.parse_status("") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (DOC_LINE.replace(" memory=123456789", ""), "missing memory"),
        (DOC_LINE.replace("slot=a enabled=yes ", ""), "missing slot, enabled"),
        (DOC_LINE.replace("pid=1234", "pid=12x"), "pid=12x: expected an integer or -"),
        (DOC_LINE.replace("limit=1073741824", "limit=1G"), "limit=1G: expected an integer or -"),
        (DOC_LINE.replace("recycle=805306368", "recycle=768M"), "recycle=768M: expected an integer or -"),
        (DOC_LINE.replace("busy=0", "busy="), "busy=: expected an integer or -"),
        (DOC_LINE.replace("quiet=no", "quiet=false"), "quiet=false: expected yes, no or -"),
        (DOC_LINE.replace("enabled=yes", "enabled=1"), "enabled=1: expected yes, no or -"),
        (DOC_LINE + " stray", "'stray' is not key=value"),
        (DOC_LINE + " =x", "'=x' is not key=value"),
        (DOC_LINE + ' version="open', "No closing quotation"),
    ],
)
def test_parse_status_refuses_broken_lines(line, message):
    with pytest.raises(control.StatusLineError) as error:
        control.parse_status(line)
    assert message in str(error.value)


def test_status_table():
    records = control.parse_status(f"{DOC_LINE}\n{STOPPED}")
    table = control.status_table([("web1", records[0]), ("web-two", records[1])])
    assert table.splitlines() == [
        "HOST     PROCESS   SLOT  ENABLED  STATE     PID   SINCE                      BUSY  QUIET  MEMORY  "
        "MAX    RECYCLE AT  RECYCLED                   SIDEKIQ  VERSION  RELEASE",
        "web1     default   a     yes      active    1234  2026-11-28T10:00:00+00:00  0/5   no     118M    "
        "1024M  768M        2026-11-28T09:40:12+00:00  6.4.1    local-1  "
        "/var/www/example/local/releases/20261128100000",
        "web-two  critical  a     yes      inactive  -     -                          -/-   -      -       "
        "-      -           -                          -        a b      -",
    ]


def test_status_table_of_a_slot_without_limits_or_recycles():
    (record,) = control.parse_status(DRAINING)
    assert control.status_table([("web1", record)]).splitlines() == [
        "HOST  PROCESS  SLOT  ENABLED  STATE   PID  SINCE                      BUSY  QUIET  MEMORY  MAX  "
        "RECYCLE AT  RECYCLED  SIDEKIQ  VERSION  RELEASE",
        "web1  default  b     no       active  987  2026-11-28T09:00:00+00:00  3/5   yes    100M    -    "
        "-           -         7.3.2    -        /var/www/example/local/releases/20261127090000",
    ]


def test_the_newer_fields_are_the_last_four_and_an_older_line_reads_them_as_unknown():
    assert control.STATUS_FIELDS[-4:] == ("sidekiq", "limit", "recycle", "recycled")
    older = DOC_LINE.partition(" sidekiq=")[0]
    (record,) = control.parse_status(older)
    assert (record["sidekiq"], record["limit"], record["recycle"], record["recycled"]) == (None,) * 4
    assert record["memory"] == 123456789
    # Keys in the order of the fields, as `status --json` prints them, for old and new lines alike.
    assert list(record) == list(control.STATUS_FIELDS)
    assert list(control.parse_status(DOC_LINE)[0]) == list(control.STATUS_FIELDS)


# --- inventories ---------------------------------------------------------------------------------


def test_capistrano_inventory(fleet):
    assert inventory.render_inventory(fleet, "capistrano") == (
        "# The staging stage's Sidekiq hosts, from its stack outputs (sidekiq-fleet inventory).\n"
        'server "198.51.100.7", user: "deploy", roles: %w[sidekiq]\n'
        'server "198.51.100.8", user: "deploy", port: 2222, roles: %w[sidekiq]\n'
    )


def test_ruby_string_escapes_what_ruby_would_interpret():
    assert inventory.ruby_string('a"b\\c#{`id`}\nd') == '"a\\"b\\\\c\\#{`id`}\\nd"'
    assert inventory.ruby_string("10.0.0.1") == '"10.0.0.1"'


def test_ansible_inventory(fleet):
    text = inventory.render_inventory(fleet, "ansible")
    assert yaml.safe_load(text) == {
        "all": {
            "children": {
                "sidekiq": {
                    "children": {
                        "sidekiq_staging": {
                            "hosts": {
                                "web1": {
                                    "ansible_host": "198.51.100.7",
                                    "ansible_port": 22,
                                    "ansible_user": "deploy",
                                },
                                "web2": {
                                    "ansible_host": "198.51.100.8",
                                    "ansible_port": 2222,
                                    "ansible_user": "deploy",
                                },
                            }
                        }
                    }
                }
            }
        }
    }
    other = Fleet("pre-prod.eu", "deploy", "system", 1, fleet.hosts)
    assert "sidekiq_pre_prod_eu:" in inventory.render_inventory(other, "ansible")


def test_ssh_config_inventory_pins_each_key(fleet):
    assert inventory.render_inventory(fleet, "ssh-config") == (
        "# The staging stage's Sidekiq hosts, from its stack outputs (sidekiq-fleet inventory).\n"
        "\n"
        "Host web1\n"
        "  HostName 198.51.100.7\n"
        "  Port 22\n"
        "  User deploy\n"
        f"  KnownHostsCommand /bin/echo %H {KEY_1}\n"
        "  UserKnownHostsFile /dev/null\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "\n"
        "Host web2\n"
        "  HostName 198.51.100.8\n"
        "  Port 2222\n"
        "  User deploy\n"
        "  # no hostKey in the stack outputs: not pinned\n"
    )


def test_ssh_config_refuses_what_it_cannot_quote():
    assert inventory._ssh_word("a b") == '"a b"'
    assert inventory._ssh_word("") == '""'
    assert inventory._ssh_word("web1") == "web1"
    for bad in ('we"b', "web\n1", "web\r"):
        with pytest.raises(ValueError, match="cannot be written into ssh_config"):
            inventory._ssh_word(bad)


def test_json_inventory(fleet):
    assert json.loads(inventory.render_inventory(fleet, "json")) == {
        "stage": "staging",
        "deployUser": "deploy",
        "hosts": [
            {"name": "web1", "address": "198.51.100.7", "port": 22, "hostKey": KEY_1},
            {"name": "web2", "address": "198.51.100.8", "port": 2222, "hostKey": None},
        ],
    }


# --- reports and the command line ----------------------------------------------------------------


def results() -> list[ssh.Result]:
    return [
        ssh.Result("web1", ok=True, exit_status=0, stdout="sidekiq-fleet: sidekiq on host web1: quiet\n\n"),
        ssh.Result("web-2", exit_status=1, stderr="boom\n", error="exit status 1: boom"),
        ssh.Result("web3", skipped=True, error="skipped: batch 2 failed on web-2"),
    ]


def test_report_lines_and_summary(fleet):
    out = io.StringIO()
    assert cli.report(fleet, "quiet", results(), 2.345, as_json=False, out=out) == 1
    assert out.getvalue().splitlines() == [
        "web1   ok       sidekiq-fleet: sidekiq on host web1: quiet",
        "web-2  FAILED   exit status 1: boom",
        "web3   SKIPPED  skipped: batch 2 failed on web-2",
        "quiet staging: 1 of 3 hosts ok; failed: web-2; skipped: web3 (2.3 s)",
    ]


def test_report_all_ok_exits_0(fleet):
    out = io.StringIO()
    done = [ssh.Result("web1", ok=True, exit_status=0), results()[0]]
    assert cli.report(fleet, "stop", done, 0.04, as_json=False, out=out) == 0
    assert out.getvalue().splitlines()[0] == "web1  ok       done"
    assert out.getvalue().splitlines()[-1] == "stop staging: 2 of 2 hosts ok (0.0 s)"
    skipped_only = [results()[0], results()[2]]
    assert cli.report(fleet, "restart", skipped_only, 1, as_json=False, out=io.StringIO()) == 1


def test_report_json(fleet):
    out = io.StringIO()
    assert cli.report(fleet, "quiet", results(), 2.3456, as_json=True, out=out) == 1
    document = json.loads(out.getvalue())
    assert document["verb"] == "quiet"
    assert document["stage"] == "staging"
    assert document["ok"] is False
    assert document["seconds"] == 2.346
    assert document["hosts"][1] == {
        "name": "web-2",
        "ok": False,
        "skipped": False,
        "error": "exit status 1: boom",
        "exitStatus": 1,
        "seconds": 0.0,
        "stdout": "",
        "stderr": "boom\n",
    }
    assert [host["skipped"] for host in document["hosts"]] == [False, False, True]


def test_report_status_table_and_json(fleet):
    good = ssh.Result("web1", ok=True, exit_status=0, stdout=f"{DOC_LINE}\n{DRAINING}\n")
    garbled = ssh.Result("web2", ok=True, exit_status=0, stdout="process=default slot\n")
    out = io.StringIO()
    assert cli.report(fleet, "status", [good, garbled], 1.0, as_json=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].split() == " ".join(control.STATUS_COLUMNS).split()
    assert lines[1].split()[:6] == ["web1", "default", "a", "yes", "active", "1234"]
    assert lines[2].split()[:6] == ["web1", "default", "b", "no", "active", "987"]
    # Each host once: web1 in the table only, web2 (no rows) on a line of its own.
    assert (
        lines[3] == "web2  FAILED   unreadable status line: 'process=default slot': 'slot' is not key=value"
    )
    assert lines[4].startswith("status staging: 1 of 2 hosts ok; failed: web2 (")
    assert len(lines) == 5
    good.ok, garbled.ok, garbled.error = True, True, None
    out = io.StringIO()
    cli.report(fleet, "status", [good], 1.0, as_json=True, out=out)
    assert json.loads(out.getvalue())["hosts"][0]["processes"] == control.parse_status(
        DOC_LINE + "\n" + DRAINING
    )


def test_cli_render_is_the_components_render(capsys):
    assert cli.main(["render", "staging"]) == 0
    assert capsys.readouterr().out == render_stage("staging")


def test_cli_errors_exit_2_before_any_host(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs()))
    assert cli.main(["status", "staging", "--outputs", str(path), "--hosts", "web1,nope"]) == 2
    assert capsys.readouterr().err == (
        "sidekiq-fleet: error: --hosts: nope not in the stack outputs of staging; "
        "expected some of: web1, web2\n"
    )
    assert cli.main(["render", "nope"]) == 2
    assert "no stack file Pulumi.nope.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["status", "staging", "--hosts", "web1,,web2"])
    assert "expected NAME[,NAME...]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["status", "staging", "--parallel", "0"])
    assert "'0': expected a positive number" in capsys.readouterr().err
    # Repairing needs the engine: refused before any host is contacted (web1 is not reachable here).
    assert cli.main(["check", "staging", "--outputs", str(path), "--repair", "--connect-timeout", "0.1"]) == 2
    assert capsys.readouterr() == (
        "",
        "sidekiq-fleet: error: --repair runs `pulumi up` on the stack: it cannot work from --outputs\n",
    )


def test_cli_inventory_from_a_saved_outputs_file(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs()))
    assert (
        cli.main(
            ["inventory", "staging", "--outputs", str(path), "--format", "capistrano", "--hosts", "web2"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[1:] == [
        'server "198.51.100.8", user: "deploy", port: 2222, roles: %w[sidekiq]'
    ]


# --- the SSH layer without a host: loopback only -------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_port_fails_at_once_and_batches_stop():
    targets = [ssh.Target(f"h{i}", "127.0.0.1", _closed_port(), "deploy", KEY_1) for i in (1, 2, 3)]
    started = time.monotonic()
    done = asyncio.run(ssh.run_in_batches(targets, 2, lambda t: "true", ssh.Options(), "restart test"))
    assert time.monotonic() - started < 2
    assert [(r.name, r.ok, r.skipped) for r in done] == [
        ("h1", False, False),
        ("h2", False, False),
        ("h3", False, True),
    ]
    assert done[0].error == f"connection refused by 127.0.0.1:{targets[0].port}: is sshd running?"
    assert done[2].error == "skipped: batch 1 failed on h1, h2"


def test_silent_server_fails_within_the_connect_timeout():
    """A listener that accepts and never speaks SSH: only the connect timeout ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        target = ssh.Target("silent", "127.0.0.1", listener.getsockname()[1], "deploy", KEY_1)
        started = time.monotonic()
        result = asyncio.run(ssh.run_command(target, "true", ssh.Options(connect_timeout=0.3)))
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5
    assert result.error == f"no SSH connection to 127.0.0.1:{target.port} within 0.3 s (connect timeout)"
    assert not result.ok
    assert result.exit_status is None


def test_no_connection_without_a_host_key():
    port = _closed_port()
    missing = asyncio.run(
        ssh.run_command(ssh.Target("a", "127.0.0.1", port, "deploy", None), "true", ssh.Options())
    )
    assert missing.error.startswith("hostKey is null in the stack outputs: refusing to connect")


def test_progress_line_only_after_the_delay():
    async def work(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    slow = ssh.Progress("quiet staging", stream=io.StringIO(), delay=0.05)
    slow.detail = "0/2 hosts done, waiting for web1, web2"
    assert asyncio.run(ssh.with_progress(slow, work(0.12))) == "done"
    assert slow.stream.getvalue() == "quiet staging: 0/2 hosts done, waiting for web1, web2 (0 s)\n"
    fast = ssh.Progress("quiet staging", stream=io.StringIO(), delay=0.5)
    asyncio.run(ssh.with_progress(fast, work(0.01)))
    assert fast.stream.getvalue() == ""


def test_project_dir_default_is_this_checkout():
    assert cli.build_parser().parse_args(["render", "x"]).project == Path(cli.__file__).resolve().parents[1]


def test_a_host_whose_command_cannot_be_built_fails_alone():
    """The command builder refuses one host: that host fails with the reason, the others still run."""
    port = _closed_port()
    loopback = [ssh.Target(name, "127.0.0.1", port, "deploy", KEY_1) for name in ("web1", "web2")]

    def command_for(target: ssh.Target) -> str:
        if target.name == "web2":
            raise ValueError("no command for web2")
        return "true"

    done = asyncio.run(ssh.run_many(loopback, command_for, ssh.Options()))
    assert [r.error for r in done] == [
        f"connection refused by 127.0.0.1:{port}: is sshd running?",
        "no command for web2",
    ]


# --- check: drift against the render ------------------------------------------------------------


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_expected_sums_are_the_renders_and_skip_encrypted_content(existing_values) -> None:
    from components.config import SECRET_PLACEHOLDER
    from components.render import render_files
    from ops import check
    from tests.conftest import stage_from

    existing_values["env"] = {"PLAIN": "1", "TOKEN": SECRET_PLACEHOLDER}
    files = render_files(stage_from(existing_values))
    sums = check.expected_sums(files)
    assert list(sums) == [f.path for f in files]
    unit = next(f for f in files if f.path == "/etc/systemd/system/sidekiq-default@.service")
    assert sums[unit.path] == _sha(unit.content)
    assert sums["/etc/sidekiq-fleet/sidekiq.env"] is None
    existing_values["env"] = {"PLAIN": "1"}
    assert check.expected_sums(render_files(stage_from(existing_values)))["/etc/sidekiq-fleet/sidekiq.env"]


def test_file_drift_names_changed_missing_and_extra_files() -> None:
    from ops import check

    expected = {"/u/a": "a" * 64, "/u/b": "b" * 64, "/e/env": None, "/u/c": "c" * 64}
    actual = {"/u/a": "a" * 64, "/u/b": "f" * 64, "/e/env": "0" * 64, "/u/old": "d" * 64}
    assert check.file_drift(expected, actual) == [
        f"/u/b: sha256 {'f' * 12}, the render has {'b' * 12}",
        "/u/c: missing",
        "/u/old: installed but not in the render",
    ]
    assert check.file_drift({"/u/a": "a" * 64}, {"/u/a": "a" * 64}) == []


def test_parse_sums_skips_status_lines_and_refuses_others() -> None:
    from ops import check

    digest = "0123456789abcdef" * 4
    stdout = (
        f"{digest} /etc/systemd/system/sidekiq.target\n{digest} ~deploy/.config/x y\nprocess=default slot=a\n"
    )
    assert check.parse_sums(stdout) == {
        "/etc/systemd/system/sidekiq.target": digest,
        "~deploy/.config/x y": digest,
    }
    for line in [f"{digest[:-1]} /x", f"{digest.upper()} /x", f"{digest}  ", "sudo: a password is required"]:
        with pytest.raises(check.SumsError, match="expected `<sha256> <path>`"):
            check.parse_sums(line)


def test_slot_drift_wants_one_enabled_active_slot_per_process(existing_values) -> None:
    from ops import check
    from tests.conftest import stage_from

    existing_values["sidekiq"] = {"processes": [{"name": "default"}, {"name": "low", "configFile": "l.yml"}]}
    stage = stage_from(existing_values)

    def record(process, slot, enabled, state):
        return {"process": process, "slot": slot, "enabled": enabled, "state": state}

    good = [record("default", "a", True, "active"), record("low", "b", True, "active")]
    # A draining old slot (running, not enabled) is no drift.
    assert check.slot_drift(stage, [*good, record("default", "b", False, "deactivating")]) == []
    assert check.slot_drift(
        stage, [record("default", "a", True, "failed"), record("low", "a", False, "active")]
    ) == [
        "process default: the enabled slot a is failed; expected active",
        "process low: enabled slots none; expected exactly one",
    ]
    both = [record("default", "a", True, "active"), record("default", "b", True, "active"), good[1]]
    assert check.slot_drift(stage, both) == ["process default: enabled slots a, b; expected exactly one"]
    assert check.slot_drift(stage, [record("default", "a", True, None), good[1]]) == [
        "process default: the enabled slot a is unknown; expected active"
    ]


def test_repair_urns_are_the_hosts_copies_and_install_and_restart_only_for_slots() -> None:
    from ops import check

    base = "urn:pulumi:local::sidekiq-fleet::sidekiq-fleet:service:SidekiqService$command:remote:"
    resources = [
        {"urn": f"{base}Command::web1-install", "type": "command:remote:Command"},
        {"urn": f"{base}Command::web1-restart", "type": "command:remote:Command"},
        {"urn": f"{base}Command::web1-uninstall", "type": "command:remote:Command"},
        {"urn": f"{base}Command::web1-prepare", "type": "command:remote:Command"},
        {"urn": f"{base}CopyToRemote::web1-copy-env", "type": "command:remote:CopyToRemote"},
        {"urn": f"{base}CopyToRemote::web12-copy-env", "type": "command:remote:CopyToRemote"},
        {"urn": f"{base}Command::web12-install", "type": "command:remote:Command"},
        {"urn": "urn:pulumi:local::sidekiq-fleet::x:y:Z::web1-install", "type": "x:y:Z"},
    ]
    assert check.repair_urns(resources, "web1", slots_too=False) == [
        f"{base}Command::web1-install",
        f"{base}CopyToRemote::web1-copy-env",
    ]
    assert check.repair_urns(resources, "web1", slots_too=True) == [
        f"{base}Command::web1-install",
        f"{base}Command::web1-restart",
        f"{base}CopyToRemote::web1-copy-env",
    ]


def test_report_prints_each_hosts_drift_under_its_line(fleet) -> None:
    done = [
        ssh.Result("web1", ok=True, exit_status=0),
        ssh.Result("web-2", exit_status=0, error="drift: 2 difference(s)"),
    ]
    drift = {"web-2": ["/etc/x: missing", "process default: enabled slots none; expected exactly one"]}
    out = io.StringIO()
    assert cli.report(fleet, "check", done, 1.0, as_json=False, out=out, drift=drift) == 1
    assert out.getvalue().splitlines() == [
        "web1   ok       no drift",
        "web-2  FAILED   drift: 2 difference(s)",
        "         /etc/x: missing",
        "         process default: enabled slots none; expected exactly one",
        "check staging: 1 of 2 hosts ok; failed: web-2 (1.0 s)",
    ]
    out = io.StringIO()
    cli.report(fleet, "check", done, 1.0, as_json=True, out=out, drift=drift)
    hosts = json.loads(out.getvalue())["hosts"]
    assert "drift" not in hosts[0]
    assert hosts[1]["drift"] == drift["web-2"]


def test_check_falls_back_to_the_stack_file_when_the_config_cannot_be_read(tmp_path, monkeypatch, capsys):
    import argparse

    from components.__main__ import load_stage

    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi CLI here
    args = argparse.Namespace(outputs=None, project=Path(cli.PROJECT_DIR))
    stage = asyncio.run(cli._stage_to_check(args, "staging"))
    assert stage == load_stage("staging")
    err = capsys.readouterr().err
    assert err.startswith("sidekiq-fleet: note: cannot run the Pulumi CLI (")
    assert err.endswith("; encrypted values are not compared\n")
    # With --outputs the engine is not asked at all.
    args = argparse.Namespace(outputs=tmp_path / "outputs.json", project=Path(cli.PROJECT_DIR))
    assert asyncio.run(cli._stage_to_check(args, "staging")) == load_stage("staging")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("from_host", "shown"),
    [
        ("plain text, é and 日本\ttab\n", "plain text, é and 日本\ttab\n"),
        ("\x1b]52;c;cHduZWQ=\x07", "\\x1b]52;c;cHduZWQ=\\x07"),  # OSC 52: writes the clipboard
        ("\x9b31mred", "\\x9b31mred"),  # C1 CSI
        ("over\rwrite", "over\\x0dwrite"),
        ("\x00\x08\x0b\x0c\x1f\x7f\x80\x9f", "\\x00\\x08\\x0b\\x0c\\x1f\\x7f\\x80\\x9f"),
        ("\x20\xa0", "\x20\xa0"),  # the first printable characters either side
    ],
)
def test_text_from_a_host_reaches_the_terminal_without_control_characters(from_host, shown):
    assert ssh.printable(from_host) == shown


@pytest.mark.parametrize(("batch_size", "skipped"), [(1, [False, True]), (2, [False, False])])
def test_restart_takes_its_batch_size_from_the_outputs_not_the_stage_file(
    tmp_path: Path, batch_size: int, skipped: list[bool]
) -> None:
    """No stage file in the project: everything restart needs is in the outputs."""
    values = outputs(batchSize=batch_size)
    for host in values["hosts"]:
        host.update(address="127.0.0.1", port=_closed_port())
    (tmp_path / "outputs.json").write_text(json.dumps(values))
    argv = ["--project", str(tmp_path), "restart", "staging", "--outputs", str(tmp_path / "outputs.json")]
    run = subprocess.run([sys.executable, "-m", "ops", *argv, "--json"], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert [host["skipped"] for host in document["hosts"]] == skipped


def test_report_status_of_a_host_with_no_slot_is_a_line_of_its_own(fleet):
    empty = ssh.Result("web1", ok=True, exit_status=0, stdout="")
    out = io.StringIO()
    assert cli.report(fleet, "status", [empty], 1.0, as_json=False, out=out) == 0
    assert out.getvalue().splitlines() == [
        "web1  ok       no slot enabled or active",
        "status staging: 1 of 1 hosts ok (1.0 s)",
    ]


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (None, None),
        ("/run/keys/deploy", [Path("/run/keys/deploy")]),
        ("keys/deploy", [Path("/srv/project/keys/deploy")]),
        ("~/.ssh/deploy", [Path.home() / ".ssh" / "deploy"]),
    ],
)
def test_the_stages_identity_file_comes_from_the_outputs(configured, expected):
    fleet = fleet_from_outputs("staging", outputs(opsIdentityFile=configured))
    assert fleet.identity_file == configured
    assert cli._stage_identity(fleet, Path("/srv/project")) == expected


WARNING_LINE = (
    "warning /etc/sudoers.d/deploy-systemctl: deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl gives deploy root"
)


def test_parse_sums_skips_the_warnings_that_host_warnings_reads() -> None:
    from ops import check

    digest = "0123456789abcdef" * 4
    stdout = f"{digest} /etc/x\n{WARNING_LINE}\nprocess=default slot=a\n"
    assert check.parse_sums(stdout) == {"/etc/x": digest}
    assert check.host_warnings(stdout) == [WARNING_LINE.replace("warning ", "warning: ", 1)]
    assert check.host_warnings(f"{digest} /etc/warning x\n") == []


def test_check_shows_warnings_without_failing_and_repairs_only_the_drifted_hosts(
    fleet, existing_values, monkeypatch
) -> None:
    import argparse

    from components.render import render_files
    from ops import check
    from tests.conftest import stage_from

    stage = stage_from(existing_values)
    installed = "".join(
        f"{digest} {path}\n" for path, digest in check.expected_sums(render_files(stage)).items()
    )
    status = DOC_LINE + "\n"
    answers = {
        "web1": f"{installed}{WARNING_LINE}\n{status}",
        "web2": f"{WARNING_LINE}\n{status}",  # nothing installed: drift
    }

    async def run_many(targets, command_for, options, progress=None):
        return [ssh.Result(t.name, ok=True, exit_status=0, stdout=answers[t.name]) for t in targets]

    repaired: list[dict[str, list[str]]] = []
    monkeypatch.setattr(cli.ssh, "run_many", run_many)
    monkeypatch.setattr(cli, "repair", lambda stage_name, project, drift: repaired.append(drift))

    async def stage_to_check(args, name):
        return stage

    monkeypatch.setattr(cli, "_stage_to_check", stage_to_check)
    reports: list[dict[str, list[str]]] = []
    monkeypatch.setattr(cli, "report", lambda *args, drift, **kwargs: reports.append(drift) or 1)
    targets = [cli._target(fleet, host) for host in fleet.hosts]
    args = argparse.Namespace(repair=True, outputs=None, json=False, project=Path(cli.PROJECT_DIR))
    assert asyncio.run(cli.run_check(args, fleet, targets, ssh.Options())) == 1
    (drift,) = repaired
    assert list(drift) == ["web2"], "a host with warnings only is not repaired"
    assert list(reports[-1]) == ["web1", "web2"], "both hosts' warnings are shown"
    assert drift["web2"][-1] == WARNING_LINE.replace("warning ", "warning: ", 1)
    results, shown = asyncio.run(cli._check_once(fleet, targets, ssh.Options(), stage, Path(cli.PROJECT_DIR)))
    assert [result.ok for result in results] == [True, False]
    assert shown["web1"] == [WARNING_LINE.replace("warning ", "warning: ", 1)]
