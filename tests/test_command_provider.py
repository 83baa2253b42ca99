"""The stand-in command provider's pure parts: diff paths, wire values, inputs, messages.

No network and no engine: the provider's RPC methods are called directly with a fake context.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import provider_pb2

from command_provider import COPY_TO_REMOTE, LOCAL_COMMAND, REMOTE_COMMAND, diff, output, remote, wire
from command_provider.provider import CommandProvider, check_inputs, command_environment, needs_copy

S = wire.SIG


def secret(value: Any) -> dict[str, Any]:
    return {S: wire.SECRET_SIG, "value": value}


def text_asset(text: str, digest: str | None = None) -> dict[str, Any]:
    asset: dict[str, Any] = {S: wire.ASSET_SIG, "text": text}
    if digest:
        asset["hash"] = digest
    return asset


CONNECTION = {
    "host": "192.0.2.10",
    "port": 22.0,
    "user": "admin",
    "privateKey": "KEY",
    "dialErrorLimit": 10.0,
}


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    json_format.ParseDict(value, result)
    return result


# -- wire values -------------------------------------------------------------------------------


def test_reveal_unwraps_secrets_at_any_depth_and_keeps_assets():
    value = {
        "connection": secret({"host": "h", "privateKey": secret("K")}),
        "triggers": [secret("abc"), "plain"],
        "source": secret(text_asset("hi")),
    }
    assert wire.reveal(value) == {
        "connection": {"host": "h", "privateKey": "K"},
        "triggers": ["abc", "plain"],
        "source": text_asset("hi"),
    }


def test_contains_secret_and_unknown():
    assert wire.contains_secret({"a": [1, secret("x")]})
    assert not wire.contains_secret({"a": [1, "x"]})
    assert wire.contains_unknown({"a": {"b": wire.UNKNOWN}})
    assert not wire.contains_unknown({"a": {"b": "known"}})


def test_same_asset_prefers_hashes_then_fields():
    assert wire.same_asset(text_asset("a", "h1"), text_asset("b", "h1"))
    assert not wire.same_asset(text_asset("a", "h1"), text_asset("a", "h2"))
    assert wire.same_asset(text_asset("a"), text_asset("a", "h1"))
    assert not wire.same_asset(text_asset("a"), text_asset("b"))


def test_struct_round_trip_numbers_become_floats():
    assert wire.to_python(struct({"port": 22, "x": True})) == {"port": 22.0, "x": True}
    assert wire.as_int(22.0, 1) == 22 and wire.as_int(None, 15) == 15
    with pytest.raises(ValueError):
        wire.as_int(True, 1)


# -- diff --------------------------------------------------------------------------------------


def test_no_change_is_empty_even_if_secretness_differs():
    old = {"create": "echo", "triggers": ["a"], "connection": CONNECTION}
    new = {"create": "echo", "triggers": [secret("a")], "connection": secret(CONNECTION)}
    assert diff.detailed_diff(old, new) == {}


def test_trigger_change_is_reported_at_the_element_path():
    old = {"create": "x", "triggers": ["v1", "digest"]}
    new = {"create": "x", "triggers": [secret("v2"), "digest"]}
    changes = diff.detailed_diff(old, new)
    assert changes == {"triggers[0]": diff.UPDATE}
    assert diff.changed_keys(changes) == ["triggers"]


def test_triggers_growing_shrinking_appearing():
    assert diff.detailed_diff({"triggers": ["a"]}, {"triggers": ["a", "b"]}) == {"triggers[1]": diff.ADD}
    assert diff.detailed_diff({"triggers": ["a", "b"]}, {"triggers": ["a"]}) == {"triggers[1]": diff.DELETE}
    assert diff.detailed_diff({}, {"triggers": ["a"]}) == {"triggers": diff.ADD}
    assert diff.detailed_diff({"triggers": ["a"]}, {}) == {"triggers": diff.DELETE}


def test_nested_objects_report_leaf_paths():
    old = {"connection": secret(CONNECTION), "environment": {"A": "1", "B": "2"}}
    new_connection = {**CONNECTION, "host": "192.0.2.11", "hostKey": "ssh-ed25519 AAAA"}
    del new_connection["dialErrorLimit"]
    new = {"connection": secret(new_connection), "environment": {"A": "1", "C": "3"}}
    assert diff.detailed_diff(old, new) == {
        "connection.host": diff.UPDATE,
        "connection.hostKey": diff.ADD,
        "connection.dialErrorLimit": diff.DELETE,
        "environment.B": diff.DELETE,
        "environment.C": diff.ADD,
    }


def test_top_level_scalars_and_nulls():
    assert diff.detailed_diff({"create": "a"}, {"create": "b"}) == {"create": diff.UPDATE}
    assert diff.detailed_diff({"delete": "rm x"}, {"delete": "rm y"}) == {"delete": diff.UPDATE}
    assert diff.detailed_diff({"create": None}, {}) == {}
    assert diff.detailed_diff({"stdin": None}, {"stdin": "in"}) == {"stdin": diff.ADD}
    # a bool and a number are different wire values even though True == 1.0 in Python
    assert diff.detailed_diff({"x": True}, {"x": 1.0}) == {"x": diff.UPDATE}


def test_unknown_new_value_is_an_update_at_its_path():
    assert diff.detailed_diff({"triggers": ["a"]}, {"triggers": [wire.UNKNOWN]}) == {
        "triggers[0]": diff.UPDATE
    }
    assert diff.detailed_diff({"triggers": ["a"]}, {"triggers": wire.UNKNOWN}) == {"triggers": diff.UPDATE}


def test_assets_are_leaves():
    old = {"source": text_asset("one"), "remotePath": "/tmp/a"}
    assert diff.detailed_diff(old, {"source": text_asset("two"), "remotePath": "/tmp/a"}) == {
        "source": diff.UPDATE
    }
    assert diff.detailed_diff(old, {"source": secret(text_asset("one")), "remotePath": "/tmp/a"}) == {}


def test_engine_bookkeeping_keys_are_ignored():
    assert diff.detailed_diff({"__defaults": ["a"]}, {"__defaults": []}) == {}


def test_awkward_keys_are_quoted_so_paths_stay_parseable():
    assert diff.key_path(None, "create") == "create"
    assert diff.key_path("environment", "MY_VAR") == "environment.MY_VAR"
    assert diff.key_path("environment", "a.b") == 'environment["a.b"]'
    assert diff.key_path("environment", 'say "hi"') == 'environment["say \\"hi\\""]'
    assert diff.key_path(None, "1x") == '["1x"]'
    changes = diff.detailed_diff({"environment": {"a.b": "1"}}, {"environment": {"a.b": "2"}})
    assert changes == {'environment["a.b"]': diff.UPDATE}
    assert diff.changed_keys({'["odd key"]': diff.ADD, "x.y": diff.ADD}) == ["odd key", "x"]


# -- the Diff and Create RPCs, called directly -------------------------------------------------


class FakeContext:
    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def call(method: Any, request: Any) -> Any:
    return asyncio.run(method(request, FakeContext()))


def test_diff_rpc_returns_detailed_paths_and_no_replaces():
    provider = CommandProvider(None)
    olds = {"connection": secret(CONNECTION), "create": "c", "triggers": ["v1"]}
    news = {"connection": secret(CONNECTION), "create": "c", "triggers": ["v2"]}
    request = provider_pb2.DiffRequest(
        urn="urn:pulumi:s::p::command:remote:Command::restart",
        type=REMOTE_COMMAND,
        olds=struct({**olds, "stdout": "out", "stderr": ""}),
        old_inputs=struct(olds),
        news=struct(news),
    )
    response = call(provider.Diff, request)
    assert response.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(response.diffs) == ["triggers"]
    assert dict(response.detailedDiff) == {
        "triggers[0]": provider_pb2.PropertyDiff(kind=provider_pb2.PropertyDiff.UPDATE)
    }
    assert response.hasDetailedDiff and not response.replaces and not response.deleteBeforeReplace


def test_diff_rpc_without_old_inputs_ignores_outputs():
    provider = CommandProvider(None)
    inputs = {"create": "c"}
    request = provider_pb2.DiffRequest(
        urn="urn:pulumi:s::p::command:local:Command::x",
        olds=struct({**inputs, "stdout": "out", "stderr": "err"}),
        news=struct(inputs),
    )
    response = call(provider.Diff, request)
    assert response.changes == provider_pb2.DiffResponse.DIFF_NONE


def test_create_preview_echoes_inputs_with_secrets_and_unknown_output():
    provider = CommandProvider(None)
    inputs = {"connection": secret(CONNECTION), "create": "echo hi", "triggers": [secret("t")]}
    request = provider_pb2.CreateRequest(
        urn="urn:pulumi:s::p::command:remote:Command::c",
        type=REMOTE_COMMAND,
        properties=struct(inputs),
        preview=True,
    )
    response = call(provider.Create, request)
    outputs = wire.to_python(response.properties)
    assert outputs == {**inputs, "stdout": wire.UNKNOWN, "stderr": wire.UNKNOWN}


def test_create_without_create_command_runs_nothing_and_wraps_connection():
    provider = CommandProvider(None)
    inputs = {"connection": CONNECTION, "delete": "rm -rf /tmp/x"}
    request = provider_pb2.CreateRequest(
        urn="urn:pulumi:s::p::command:remote:Command::uninstall", properties=struct(inputs)
    )
    response = call(provider.Create, request)
    assert response.id.startswith("uninstall") and len(response.id) == len("uninstall") + 8
    outputs = wire.to_python(response.properties)
    assert outputs == {
        "connection": secret(CONNECTION),
        "delete": "rm -rf /tmp/x",
        "stdout": "",
        "stderr": "",
    }


# -- inputs ------------------------------------------------------------------------------------


def test_command_environment_adds_previous_output_unless_disabled():
    inputs = {"environment": {"A": "1"}}
    previous = {"stdout": "old out", "stderr": ""}
    assert command_environment(inputs, previous) == {"A": "1", "PULUMI_COMMAND_STDOUT": "old out"}
    assert command_environment({**inputs, "addPreviousOutputInEnv": False}, previous) == {"A": "1"}
    assert command_environment({}, {}) == {}


def test_needs_copy_only_for_source_or_path_changes():
    old = {"source": text_asset("a"), "remotePath": "/x", "connection": CONNECTION}
    assert not needs_copy(old, {**old, "connection": {**CONNECTION, "host": "other"}})
    assert needs_copy(old, {**old, "remotePath": "/y"})
    assert needs_copy(old, {**old, "source": text_asset("b")})


def test_connection_parsing_defaults_and_unsupported_features():
    conn = remote.Connection.from_inputs({"host": "h"})
    assert (conn.port, conn.user, conn.dial_error_limit, conn.per_dial_timeout) == (22, "root", 10, 15)
    conn = remote.Connection.from_inputs(CONNECTION)
    assert "KEY" not in repr(conn) and repr(conn) == "Connection(admin@192.0.2.10:22)"
    with pytest.raises(remote.Unsupported):
        remote.Connection.from_inputs({"host": "h", "proxy": {"host": "bastion"}})
    with pytest.raises(remote.Unsupported):
        remote.Connection.from_inputs({"host": "h", "agentSocketPath": "/run/agent"})
    with pytest.raises(ValueError):
        remote.Connection.from_inputs({"port": 22.0})


def test_source_parsing():
    assert remote.Source.from_inputs(text_asset("hi")) == remote.Source(text="hi")
    assert remote.Source.from_inputs({S: wire.ASSET_SIG, "path": "f"}) == remote.Source(path="f")
    assert remote.Source.from_inputs({S: wire.ARCHIVE_SIG, "path": "d/"}) == remote.Source(path="d/")
    with pytest.raises(remote.Unsupported):
        remote.Source.from_inputs({S: wire.ASSET_SIG, "uri": "https://example.com/x"})
    with pytest.raises(remote.Unsupported):
        remote.Source.from_inputs({S: wire.ARCHIVE_SIG, "assets": {}})


def test_check_inputs_reports_problems_and_skips_unknowns():
    assert check_inputs(REMOTE_COMMAND, {"connection": CONNECTION, "create": "x"}) == []
    assert check_inputs(REMOTE_COMMAND, {"create": "x"}) == [
        ("connection", "missing required property 'connection'")
    ]
    assert check_inputs(REMOTE_COMMAND, {"connection": {"host": wire.UNKNOWN, "proxy": {}}}) == []
    assert [name for name, _ in check_inputs(COPY_TO_REMOTE, {"connection": CONNECTION})] == [
        "remotePath",
        "source",
    ]
    assert check_inputs(LOCAL_COMMAND, {"create": "x", "logging": "loud"})[0][0] == "logging"


# -- running: dial limits, output capture, failure messages ------------------------------------


def test_dial_limit_rule_matches_the_real_provider():
    assert not remote.reached_dial_limit(10, 10) and remote.reached_dial_limit(11, 10)
    assert remote.reached_dial_limit(1, 0)
    assert not remote.reached_dial_limit(10_000, -1)
    delays = remote.retry_delays()
    first = [round(next(delays), 3) for _ in range(3)]
    assert first == [0.1, 0.15, 0.225]
    assert max(next(delays) for _ in range(30)) == remote.RETRY_MAX_DELAY


def test_pump_splits_lines_across_chunks_and_keeps_text():
    chunks = [b"one\ntw", b"o\nthr", "\u00e9e".encode()[:1], "\u00e9e".encode()[1:], b""]

    async def read(_size: int) -> bytes:
        return chunks.pop(0)

    logged: list[str] = []

    async def log(line: str) -> None:
        logged.append(line)

    own: list[str] = []
    combined: list[str] = []
    asyncio.run(output.pump(read, own, combined, log))
    assert logged == ["one", "two", "thr\u00e9e"]
    assert "".join(own) == "one\ntwo\nthr\u00e9e" == "".join(combined)


def test_failure_message_shows_first_line_and_output_tail():
    captured = output.Captured(combined=["installing\n", "boom\n"])
    message = output.failure_message("Process exited with status 3", "set -e\nexit 3\n", False, captured)
    assert message == 'Process exited with status 3: running "set -e…":\ninstalling\nboom'
    secret_message = output.failure_message("exit status 1", "curl -H 'token: s3cr3t'", True, captured)
    assert "s3cr3t" not in secret_message and "[secret command]" in secret_message
    long = output.Captured(combined=[f"line {n}\n" for n in range(500)])
    tail = output.failure_message("x", "y", False, long)
    assert "line 499" in tail and "line 0\n" not in tail and "earlier output omitted" in tail


def test_captured_text_drops_one_final_newline_and_logging_values():
    captured = output.Captured(stdout=["a\n\n"], stderr=["b"])
    assert (captured.stdout_text, captured.stderr_text) == ("a\n", "b")
    assert output.logging_mode(None) == "stdoutAndStderr"
    with pytest.raises(ValueError):
        output.logging_mode("everything")
