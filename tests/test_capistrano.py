"""The Capistrano migration helpers with Debian's real `cap` (3.17): `sidekiq-fleet import
--capistrano` on the fixture projects in tests/fixtures/capistrano, and contrib/capistrano/sidekiq_fleet.rake
in dry runs and with SSHKit's local backend. Nothing connects anywhere: doctor tasks and dry runs
never open ssh, and the local backend runs on this machine."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.__main__ import load_stage
from ops import capistrano, cli
from ops.capistrano import NotLiteral, Server, Symbol, parse_doctor, parse_literal

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "capistrano"
RAKE_FILE = ROOT / "contrib" / "capistrano" / "sidekiq_fleet.rake"
CAP = shutil.which("cap")

# Two host keys made with ssh-keygen for these tests; jobs1's line in KNOWN_HOSTS is hashed (ssh-keygen -H).
JOBS1_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMmEjPQDvPggkNNvl6ewwYig+b5WW+f0FDC3IMIGHilA"
JOBS2_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFFJGoAAT28bgsj/f+ipneTV+B+pCw4QvTU2RKF1bSSU"
KNOWN_HOSTS = (
    f"|1|NWK1H76NQHiPKYNc0BbBqgXcEWc=|X2yXkXzWEj2nvlTm+2do5kXEFhI= {JOBS1_KEY}\n"
    f"[jobs2.shop.example.test]:2222 {JOBS2_KEY}\n"
)


@pytest.fixture
def cap() -> str:
    """Debian's cap; bin/test installs it (bin/_common.sh), so under CI its absence is a failure."""
    if CAP is None:
        reason = "no `cap` on PATH: apt-get install capistrano ruby-ed25519 ruby-bcrypt-pbkdf"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CAP


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    """A copy of the fixture projects: cap writes log/capistrano.log into the project it runs in."""
    shutil.copytree(FIXTURES, tmp_path / "capistrano")
    return tmp_path / "capistrano"


def run_import(*args: str, project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`sidekiq-fleet --project PROJECT import ARGS`: its exit status, stdout and stderr."""
    code = cli.main(["--project", str(project), "import", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- reading doctor's output ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"shop"', "shop"),
        (r'"a\nb \"q\" \\ \#{x} é \u00e9 \u{1F600}"', 'a\nb "q" \\ #{x} é é \U0001f600'),
        (":worker", Symbol("worker")),
        (':"a b"', Symbol("a b")),
        ("nil", None),
        ("true", True),
        ("false", False),
        ("-3", -3),
        ("2.5", 2.5),
        ("1.0e+20", 1.0e20),
        ("[]", []),
        ("{}", {}),
        ('["sidekiq.yml", "sidekiq_low.yml"]', ["sidekiq.yml", "sidekiq_low.yml"]),
        # Ruby 3.1 and older:
        ('{:user=>"deploy", :forward_agent=>true}', {"user": "deploy", "forward_agent": True}),
        ('{:a=>[1, 2.5, nil], "b"=>{:c=>:d}, :"x-y"=>-3}', {"a": [1, 2.5, None], "b": {"c": "d"}, "x-y": -3}),
        # doctor:servers' own padding:
        ('{ :primary => true, :sidekiq_user => "app" }', {"primary": True, "sidekiq_user": "app"}),
        # Ruby 3.4:
        ('{user: "deploy", "b" => {c: :d}, "x-y": -3}', {"user": "deploy", "b": {"c": "d"}, "x-y": -3}),
    ],
)
def test_parse_literal_reads_rubys_inspect(text, expected) -> None:
    value = parse_literal(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_literal_keeps_symbols_apart_from_strings() -> None:
    value = parse_literal('{:user=>"deploy"}')
    assert [type(key) for key in value] == [Symbol]
    assert type(value["user"]) is str
    assert capistrano.ruby(value) == '{:user=>"deploy"}'


@pytest.mark.parametrize(
    "text",
    [
        "#<Proc:0x00007f78c04cd110 config/deploy/edge.rb:1 (lambda)>",
        "#<Object:0x00007f78c0521a30>",
        "<ask>",
        "#<Pathname:/srv/shop>",
        ":+",
        r'"\xFF"',
        '"open',
        '"a" "b"',
        "[1, 2",
        "{:a 1}",
        "{[1]=>2}",
        "",
    ],
)
def test_parse_literal_refuses_what_is_not_a_plain_literal(text) -> None:
    with pytest.raises(NotLiteral):
        parse_literal(text)


# What Capistrano 3.17's doctor prints, with the colors of a terminal, a value whose inspect spans two
# lines, the warnings after each table, and a role with whitespace (its row is yellow).
DOCTOR_OUTPUT = (
    "\n\x1b[0;34;49mVariables\n\x1b[0m"
    '    :application                    "shop"\n'
    '    :deploy_to                      "/srv/shop"\n'
    "    :sidekiq_env                    nil\n"
    "    :sidekiq_user                   #<Proc:0x00007f78c04cd110 config/deploy/edge.rb:1 (lambda)>\n"
    "    :weird                          #<Thing first line\n"
    "    second line>\n"
    "    :sidekiq_password               <ask>\n"
    "    \n"
    "    \x1b[0;33;49m:weird is not a recognized Capistrano setting (config/deploy.rb:5)\x1b[0m\n"
    "\n\x1b[0;34;49mServers (3)\n\x1b[0m"
    "    deploy@jobs1.example.test:2222 [:worker]         { :primary => true }\n"
    '    \x1b[0;33;49m10.0.0.5                       [:worker, :"a b"]\x1b[0m\n'
    "    web1.example.test              [:web, :app, :db]\n"
    "    \n"
    '    \x1b[0;33;49m\nWhitespace detected in role(s) :"a b".\x1b[0m\n'
)


def test_parse_doctor_reads_both_tables_and_stops_at_their_warnings() -> None:
    doctor = parse_doctor(DOCTOR_OUTPUT)
    assert doctor.variables == {
        "application": '"shop"',
        "deploy_to": '"/srv/shop"',
        "sidekiq_env": "nil",
        "sidekiq_user": "#<Proc:0x00007f78c04cd110 config/deploy/edge.rb:1 (lambda)>",
        "weird": "#<Thing first line\nsecond line>",
        "sidekiq_password": "<ask>",
    }
    assert doctor.servers == [
        Server("jobs1.example.test", "deploy", 2222, ("worker",), {"primary": True}),
        Server("10.0.0.5", None, None, ("worker", "a b"), {}),
        Server("web1.example.test", None, None, ("web", "app", "db"), {}),
    ]


def test_parse_doctor_refuses_output_without_its_tables() -> None:
    with pytest.raises(capistrano.CapistranoError, match="no `Variables` or `Servers"):
        parse_doctor("Stage not set\n")
    with pytest.raises(capistrano.CapistranoError, match="announced 2 servers and listed 1"):
        parse_doctor('Variables\n    :application "a"\n\nServers (2)\n    a.example [:worker]\n')
    with pytest.raises(capistrano.CapistranoError, match="cannot read doctor:servers' line"):
        parse_doctor('Variables\n    :application "a"\n\nServers (1)\n    deploy@[2001:0 [:jobs]\n')


def server(hostname: str, port: int | None = None) -> Server:
    return Server(hostname, "deploy", port, ("worker",), {})


@pytest.mark.parametrize(
    ("servers", "names"),
    [
        ([server("jobs1.example.test"), server("jobs2.example.test")], ["jobs1", "jobs2"]),
        ([server("jobs1.a.test"), server("jobs1.b.test")], ["jobs1-a-test", "jobs1-b-test"]),
        ([server("10.0.0.5"), server("jobs_1.example.test")], ["10-0-0-5", "jobs-1"]),
        ([server("jobs1.example.test"), server("jobs1.example.test", 2222)],
         ["jobs1-example-test-22", "jobs1-example-test-2222"]),
    ],
)  # fmt: skip
def test_host_names_are_short_and_unique(servers, names) -> None:
    assert capistrano._host_names(servers) == names


@pytest.mark.parametrize(
    ("config_file", "process", "unit"),
    [
        ("sidekiq.yml", "default", "app_sidekiq_production.service"),
        ("sidekiq_low.yml", "low", "app_sidekiq_production.sidekiq_low.service"),
        ("critical.yml", "critical", "app_sidekiq_production.critical.service"),
        ("Sidekiq.Bulk.yml", "bulk", "app_sidekiq_production.Sidekiq.Bulk.service"),
    ],
)
def test_a_config_files_process_name_and_capistrano_sidekiq_unit(config_file, process, unit) -> None:
    assert capistrano._process_name(config_file) == process
    assert capistrano._unit("app_sidekiq_production", config_file) == unit


def doctor_of(*servers: str) -> capistrano.Doctor:
    """doctor's output for an app `shop` with these rows of doctor:servers."""
    rows = "".join(f"    {row}\n" for row in servers)
    return parse_doctor(
        f'Variables\n    :application "shop"\n    :stage       :production\n    \n'
        f"Servers ({len(servers)})\n{rows}    \n"
    )


def test_servers_that_disagree_are_listed_and_the_first_one_is_written() -> None:
    doctor = doctor_of(
        'deploy@a.example [:worker] { :sidekiq_user => "app" }',
        "ops@b.example    [:worker] { :filter => #<Proc:0x01 (lambda)> }",
    )
    imported = capistrano.map_stage(doctor, "production", None, "known_hosts")
    assert imported.values["ssh"] == {"user": "deploy", "knownHostsFile": "production.known_hosts"}
    assert imported.values["sidekiq"]["user"] == "app"
    assert imported.unmapped == [
        "server b.example: properties { :filter => #<Proc:0x01 (lambda)> }: not plain values; its "
        "sidekiq_user and run_as are not read",
        "the servers' SSH users differ (a.example: deploy, b.example: ops); the stage has one, deploy is "
        "written",
        "the servers' Sidekiq users differ (a.example: app, b.example: ops); the stage has one, app is "
        "written",
    ]


def test_a_server_without_an_ssh_user_is_an_error() -> None:
    with pytest.raises(capistrano.CapistranoError, match="Capistrano names no SSH user for b.example:"):
        capistrano.map_stage(doctor_of("deploy@a.example [:worker]", "b.example [:worker]"), "qa", None, "")


def test_bundled_projects_run_bundle_exec_cap(tmp_path) -> None:
    assert capistrano.cap_command(tmp_path, None) == ["cap"]
    (tmp_path / "Gemfile.lock").write_text("")
    assert capistrano.cap_command(tmp_path, None) == ["bundle", "exec", "cap"]
    assert capistrano.cap_command(tmp_path, "bin/cap --trace") == ["bin/cap", "--trace"]


# ---- import, with the real cap ------------------------------------------------------------------

LEGACY_STACK = {
    "config": {
        "sidekiq-fleet:app": "shop",
        "sidekiq-fleet:appVersion": "imported",
        "sidekiq-fleet:hosts": {
            "provider": "existing",
            "existing": [
                {"name": "jobs1", "address": "jobs1.shop.example.test", "hostKey": JOBS1_KEY},
                {"name": "jobs2", "address": "jobs2.shop.example.test", "port": 2222, "hostKey": JOBS2_KEY},
            ],
        },
        "sidekiq-fleet:ssh": {"user": "deploy"},
        "sidekiq-fleet:sidekiq": {
            "user": "deploy",
            "appDir": "/srv/shop/current",
            "environment": "production",
            "processes": [
                {"name": "default", "configFile": "config/sidekiq.yml"},
                {"name": "low", "configFile": "config/sidekiq_low.yml"},
            ],
            "adopt": ["shop_jobs.service", "shop_jobs.sidekiq_low.service"],
        },
    }
}

LEGACY_UNMAPPED = [
    "Not mapped (set these by hand where you need them):",
    "  - :ssh_options[:forward_agent] = true: not mapped; the key is ssh.privateKey, host keys are pinned "
    "in the stage",
    "  - server jobs1.shop.example.test: property :primary = true: not mapped",
    '  - :sidekiq_log = "/srv/shop/shared/log/sidekiq.log": Sidekiq logs to the journal: sidekiq-fleet logs',
    '  - :sidekiq_service_unit_env_vars = ["MALLOC_ARENA_MAX=2"]: put the variables in env (pulumi config '
    "set --secret --path env.NAME)",
    "  - :sidekiq_use_login_shell = true: see sidekiq.loginShell (default true: /bin/bash -lc)",
    "Notes:",
]


def test_import_of_a_capistrano_sidekiq_project(cap, projects, tmp_path, capsys) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(KNOWN_HOSTS)
    project = tmp_path / "fleet"
    project.mkdir()
    code, out, err = run_import(
        "--capistrano", str(projects / "legacy"), "--stage", "production", "--known-hosts", str(known_hosts),
        project=project, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    written = project / "Pulumi.production.yaml"
    assert out == f"wrote {written}\n"
    text = written.read_text()
    assert text.splitlines()[:5] == [
        f"# Imported by `sidekiq-fleet import` from the Capistrano project {projects / 'legacy'}, "
        "stage production",
        "# (cap production doctor:variables doctor:servers). appVersion imported is a placeholder for",
        "# your deploy to set. Secrets are not in this file until you set them:",
        "#   pulumi stack select production",
        "#   pulumi config set --secret --path ssh.privateKey < KEY_FILE",
    ]  # fmt: skip
    assert yaml.safe_load(text) == LEGACY_STACK
    assert "encryptionsalt" not in text
    stage = load_stage("production", project)
    assert [p.config_file for p in stage.processes] == ["config/sidekiq.yml", "config/sidekiq_low.yml"]
    lines = err.splitlines()
    assert lines[: len(LEGACY_UNMAPPED)] == LEGACY_UNMAPPED
    assert (
        "  - left out web1.shop.example.test [:web, :app, :db]: not in the role worker "
        "(set by :sidekiq_roles)" in lines
    )
    assert f"  - pinned the host key of 2 of 2 hosts from {known_hosts}" in lines
    assert any("needs passwordless sudo" in line and "deploy" in line for line in lines)
    assert any("ssh.privateKey" in line for line in lines if line.startswith("  1. "))
    assert any("appVersion is 'imported'" in line for line in lines)


BASIC_STACK = {
    "config": {
        "sidekiq-fleet:app": "example",
        "sidekiq-fleet:appVersion": "imported",
        "sidekiq-fleet:hosts": {
            "provider": "existing",
            "existing": [
                {"name": "worker1", "address": "worker1.example.test"},
                {"name": "worker2", "address": "worker2.example.test", "port": 2222},
            ],
        },
        "sidekiq-fleet:ssh": {"user": "deploy", "knownHostsFile": "staging.known_hosts"},
        "sidekiq-fleet:sidekiq": {
            "user": "deploy",
            "appDir": "/var/www/example/staging/current",
            "environment": "staging",
            "adopt": ["example_sidekiq_staging.service"],
        },
    }
}


def test_import_of_a_sidekiq_role_with_capistrano_sidekiqs_defaults(cap, projects, tmp_path, capsys) -> None:
    """No known key: the hosts are pinned through a known_hosts file the notes ask for."""
    code, out, err = run_import(
        "--capistrano", str(projects / "basic"), "--stage", "staging",
        "--known-hosts", str(tmp_path / "none"), project=tmp_path, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "Pulumi.staging.yaml").read_text()) == BASIC_STACK
    load_stage("staging", tmp_path)
    lines = err.splitlines()
    assert lines[:4] == [
        "Notes:",
        "  - left out deploy@web1.example.test [:web, :app]: not in the role sidekiq",
        f"  - {tmp_path / 'none'} has no key for worker1.example.test, worker2.example.test: add their "
        "lines to staging.known_hosts in the project (ssh.knownHostsFile), e.g. from `ssh-keyscan -t ed25519 "
        "[-p PORT] ADDRESS` once compared with the host's /etc/ssh/ssh_host_ed25519_key.pub",
        "  - doctor:servers does not show a server's own ssh_options: if a server line sets a user there, "
        "check ssh.user",
    ]  # fmt: skip


def test_import_lists_values_doctor_cannot_show_as_literals(cap, projects, tmp_path, capsys) -> None:
    """A lambda with an argument stays unevaluated and an ask shows as <ask>: not mapped, and the keys
    they would have set keep the program's defaults."""
    directory = projects / "basic"
    with (directory / "config" / "deploy" / "staging.rb").open("a") as stage:
        stage.write('set :sidekiq_env, ->(env) { env }\nask :sidekiq_user, "deploy"\n')
    code, _, err = run_import(
        "--capistrano", str(directory), "--stage", "staging", "--known-hosts", str(tmp_path / "none"),
        project=tmp_path, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    sidekiq = yaml.safe_load((tmp_path / "Pulumi.staging.yaml").read_text())["config"][
        "sidekiq-fleet:sidekiq"
    ]
    assert sidekiq == {
        "user": "deploy",
        "appDir": "/var/www/example/staging/current",
        "adopt": ["example_sidekiq_staging.service"],
    }
    unmapped = [line for line in err.splitlines() if "not a plain value" in line]
    assert len(unmapped) == 2, err
    assert unmapped[0].startswith("  - :sidekiq_user = <ask>: not a plain value; sidekiq.user is read from")
    assert unmapped[1].startswith("  - :sidekiq_env = #<Proc:0x")
    assert unmapped[1].endswith("(lambda)>: not a plain value; sidekiq.environment is left to the stage name")


def test_import_never_overwrites_without_force(cap, projects, tmp_path, capsys) -> None:
    args = [
        "--capistrano",
        str(projects / "basic"),
        "--stage",
        "staging",
        "--known-hosts",
        str(tmp_path / "none"),
    ]
    written = tmp_path / "Pulumi.staging.yaml"
    written.write_text("# the team's own\n")
    code, _, err = run_import(*args, project=tmp_path, capsys=capsys)
    assert code == 2
    assert (
        err == f"sidekiq-fleet: error: {written} exists; --force overwrites it, --output writes elsewhere\n"
    )
    assert written.read_text() == "# the team's own\n"
    elsewhere = tmp_path / "out" / "qa.yaml"
    elsewhere.parent.mkdir()
    assert run_import(*args, "--output", str(elsewhere), project=tmp_path, capsys=capsys)[0] == 0
    assert yaml.safe_load(elsewhere.read_text()) == BASIC_STACK
    assert run_import(*args, "--force", project=tmp_path, capsys=capsys)[0] == 0
    assert yaml.safe_load(written.read_text()) == BASIC_STACK


def error_case(tmp_path: Path, projects: Path, case: str) -> list[str]:
    """The import arguments of each error case."""
    if case == "no Capfile":
        return ["--capistrano", str(tmp_path), "--stage", "staging"]
    if case == "no cap":
        return [
            "--capistrano",
            str(projects / "basic"),
            "--stage",
            "staging",
            "--cap-command",
            "/nonexistent/cap",
        ]
    if case == "unknown stage":
        return ["--capistrano", str(projects / "basic"), "--stage", "nosuch"]
    if case == "missing plugin":
        return ["--capistrano", str(projects / "missing_plugin"), "--stage", "production"]
    if case == "no Sidekiq server":
        return ["--capistrano", str(projects / "basic"), "--stage", "web"]
    directory = projects / "basic"
    with (directory / "config" / "deploy" / "staging.rb").open("a") as stage:
        stage.write('set :application, "Shop.App"\n')
    return ["--capistrano", str(directory), "--stage", "staging"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no Capfile", "--capistrano {tmp}: no Capfile there; expected a Capistrano 3 project"),
        ("no cap", '/nonexistent/cap: command not found; --cap-command names how to run Capistrano in the '
            'project, e.g. --cap-command "bundle exec cap"'),
        ("unknown stage", "Capistrano does not know the stage 'nosuch' in {fixtures}/basic "
            "(config/deploy/ has: staging, web)"),
        ("missing plugin", "`cap production doctor:variables doctor:servers` failed: the project requires "
            "the Ruby library capistrano/rails, which this Ruby cannot load (a plugin gem, probably "
            "capistrano-rails, is not installed here). Install the project's gems (`bundle install` in "
            '{fixtures}/missing_plugin) and import with --cap-command "bundle exec cap", or install that gem '
            "where this cap finds it"),
        ("no Sidekiq server", "no server of the stage has the role worker (capistrano-sidekiq's default, "
            "as no server has the role sidekiq); its servers: deploy@web1.example.test [:web, :app]. Give "
            "the Sidekiq servers that role, or set :sidekiq_roles"),
        ("invalid application", "the settings Capistrano gave do not make a valid stage; fix them in the "
            "Capistrano project and import again:\n  - sidekiq-fleet:app: String should match pattern "
            "'^[a-z0-9][a-z0-9_-]{{0,62}}$'; expected the application name, lowercase letters, digits, "
            '- and _ (from :application = "Shop.App")'),
    ],
)  # fmt: skip
def test_import_errors_exit_2_and_say_what_to_do(cap, projects, tmp_path, capsys, case, message) -> None:
    project = tmp_path / "fleet"
    project.mkdir()
    code, out, err = run_import(*error_case(tmp_path, projects, case), project=project, capsys=capsys)
    assert (code, out) == (2, "")
    assert err == f"sidekiq-fleet: error: {message.format(tmp=tmp_path, fixtures=projects)}\n"
    assert list(project.iterdir()) == []


# ---- the rake file ------------------------------------------------------------------------------


def rake_project(tmp_path: Path, *settings: str) -> Path:
    """The basic fixture with the rake file installed as its header says (lib/capistrano/tasks/),
    SSHKit's pretty format (it names each command's host) and the settings in the stage file."""
    directory = tmp_path / "basic"
    shutil.copytree(FIXTURES / "basic", directory)
    tasks = directory / "lib" / "capistrano" / "tasks"
    tasks.mkdir(parents=True)
    shutil.copy(RAKE_FILE, tasks)
    with (directory / "config" / "deploy" / "staging.rb").open("a") as stage:
        stage.write("".join(f"{line}\n" for line in ("set :format, :pretty", *settings)))
    return directory


def run_cap(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "SSHKIT_COLOR"}
    return subprocess.run(
        ["cap", "staging", *args], cwd=directory, env=env, capture_output=True, text=True, timeout=60
    )


def commands(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(command, user@host) of each `INFO [id] Running COMMAND as USER@HOST` of the pretty format."""
    assert result.returncode == 0, result.stdout + result.stderr
    found = []
    for line in result.stdout.splitlines():
        if " Running " in line and " as " in line:
            command, _, host = line.partition(" Running ")[2].rpartition(" as ")
            found.append((command, host))
    return found


VERBS = ("quiet", "stop", "start", "restart", "status")
SIDEKIQ_SERVERS = ("deploy@worker1.example.test", "deploy@worker2.example.test")


def test_rake_tasks_run_the_control_script_with_sudo_on_the_sidekiq_servers(cap, tmp_path) -> None:
    result = run_cap(rake_project(tmp_path), *(f"sidekiq:{verb}" for verb in VERBS), "--dry-run")
    assert sorted(commands(result)) == sorted(
        (f"sudo -n /usr/local/sbin/sidekiqctl {verb}", host) for verb in VERBS for host in SIDEKIQ_SERVERS
    )


def test_rake_tasks_in_user_scope_with_other_roles_and_script(cap, tmp_path) -> None:
    directory = rake_project(
        tmp_path,
        "set :sidekiq_fleet_scope, :user",
        "set :sidekiq_fleet_roles, %w[app]",
        'set :sidekiq_fleet_control, "/usr/local/sbin/jobsctl"',
    )
    result = run_cap(directory, "sidekiq:restart", "--dry-run")
    # Restart goes host by host, in the stage's order.
    assert commands(result) == [
        ("/usr/local/sbin/jobsctl restart", "deploy@worker2.example.test"),
        ("/usr/local/sbin/jobsctl restart", "deploy@web1.example.test"),
    ]


def test_a_deploy_restarts_sidekiq_once_published(cap, tmp_path) -> None:
    result = run_cap(rake_project(tmp_path), "deploy", "--dry-run", "--trace")
    trace = [line for line in result.stderr.splitlines() if line.startswith("** ")]
    published = trace.index("** Execute deploy:published")
    assert trace[published + 1 : published + 4] == [
        "** Invoke sidekiq:restart (first_time)",
        "** Execute sidekiq:restart",
        "** Invoke deploy:finishing (first_time)",
    ]
    restarts = [entry for entry in commands(result) if entry[0].endswith("sidekiqctl restart")]
    assert restarts == [("sudo -n /usr/local/sbin/sidekiqctl restart", host) for host in SIDEKIQ_SERVERS]


def test_the_deploy_hook_can_be_turned_off(cap, tmp_path) -> None:
    directory = rake_project(tmp_path, "set :sidekiq_fleet_default_hooks, false")
    result = run_cap(directory, "deploy", "--dry-run", "--trace")
    assert "** Execute deploy:published" in result.stderr
    assert "sidekiq:restart" not in result.stderr
    assert not [entry for entry in commands(result) if "sidekiqctl" in entry[0]]


def test_settings_never_reach_a_shell_unquoted(cap, tmp_path) -> None:
    """SSHKit joins execute's words into one shell line; with SSHKit's local backend the line really
    runs here, and a control path full of shell syntax stays one word."""
    control_dir = tmp_path / "ctl dir; touch PWNED $(touch PWNED2) `touch PWNED3`"
    control_dir.mkdir()
    control = control_dir / "sidekiqctl"
    control.write_text('#!/bin/sh\nprintf "process=default slot=a words=%s:%s\\n" "$#" "$*"\n')
    control.chmod(0o755)
    settings = [f"set :sidekiq_fleet_control, '{control}'", "set :sidekiq_fleet_scope, :user"]
    directory = rake_project(tmp_path, *settings)
    printed = commands(run_cap(directory, "sidekiq:status", "--dry-run"))
    assert {host for _, host in printed} == set(SIDEKIQ_SERVERS)
    for command, _ in printed:
        assert shlex.split(command) == [str(control), "status"]
    with (directory / "config" / "deploy" / "staging.rb").open("a") as stage:
        stage.write("set :sshkit_backend, SSHKit::Backend::Local\n")
    result = run_cap(directory, "sidekiq:status")
    assert result.returncode == 0, result.stdout + result.stderr
    # status prints the script's lines, prefixed with the host (the local backend's is localhost).
    shown = [line for line in result.stdout.splitlines() if line.startswith("localhost ")]
    assert shown == ["localhost process=default slot=a words=1:status"] * 2
    assert not [path for path in (*tmp_path.rglob("PWNED*"), *Path.cwd().glob("PWNED*"))]


def test_a_relative_control_script_is_refused(cap, tmp_path) -> None:
    result = run_cap(
        rake_project(tmp_path, 'set :sidekiq_fleet_control, "sidekiqctl"'), "sidekiq:stop", "--dry-run"
    )
    assert result.returncode != 0
    assert 'sidekiq_fleet_control: "sidekiqctl" is not an absolute path' in result.stderr


def test_the_rake_file_refuses_to_run_beside_capistrano_sidekiq(cap, tmp_path) -> None:
    """capistrano-sidekiq defines the same tasks; both would run on every call."""
    directory = rake_project(tmp_path)
    with (directory / "Capfile").open("a") as capfile:
        capfile.write("namespace :sidekiq do\n  task :restart do\n  end\nend\n")
    result = run_cap(directory, "sidekiq:status", "--dry-run")
    assert result.returncode != 0
    assert "sidekiq:restart is defined already (by capistrano-sidekiq?); remove that plugin" in result.stderr
