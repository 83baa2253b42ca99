"""bench/rollout.py's pure parts: reading jobs.log and the pusher's log, the switch gap, losses, doubles."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.pulumi_project import bench_rollout

PROJECT_DIR = Path(__file__).resolve().parent.parent
T = 1795860000.0  # 2026-11-28T10:00:00Z


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_rollout()


def line(job_id: str, pid: int, started: str, at: str) -> str:
    return json.dumps(
        {
            "id": job_id,
            "pid": pid,
            "version": "local-2",
            "release": "r",
            "jid": "j",
            "started": started,
            "at": at,
        }
    )


def job(bench: ModuleType, job_id: str, pid: int, started: float) -> object:
    return bench.Job(job_id, pid, T + started, T + started + 0.1)


def test_epoch_reads_utc_with_milliseconds(bench: ModuleType) -> None:
    assert bench.epoch("2026-11-28T10:00:00Z") == T
    assert bench.epoch("2026-11-28T10:00:01.234Z") == pytest.approx(T + 1.234, abs=1e-6)


def test_parse_jobs_keeps_the_trial_recording_jobs_only(bench: ModuleType) -> None:
    lines = [
        line("t2-0", 181, "2026-11-28T10:00:00.050Z", "2026-11-28T10:00:00.150Z"),
        line("t1-9", 181, "2026-11-28T10:00:00.000Z", "2026-11-28T10:00:00.100Z"),  # another trial
        json.dumps(
            {"id": "t2-w", "pid": 5, "path": "/x", "error": None, "jid": "j", "at": "2026-11-28T10:00:00Z"}
        ),
        '{"id":"t2-1","pid":1',  # torn: still being written
        line("t2-1", 245, "2026-11-28T10:00:02.000Z", "2026-11-28T10:00:03.500Z"),
    ]
    assert bench.parse_jobs(lines, "t2-") == [
        bench.Job("t2-0", 181, pytest.approx(T + 0.05), pytest.approx(T + 0.15)),
        bench.Job("t2-1", 245, T + 2, T + 3.5),
    ]


def test_parse_pushed(bench: ModuleType) -> None:
    lines = ["t1-0 2026-11-28T10:00:00.000Z", "t1-1 2026-11-28T10:00:00.050Z", "t1-2", ""]
    assert bench.parse_pushed(lines) == {"t1-0": T, "t1-1": pytest.approx(T + 0.05)}


def test_switch_measures_last_old_start_to_first_new_start(bench: ModuleType) -> None:
    jobs = [
        job(bench, "a", 100, 0.0),
        job(bench, "b", 100, 1.0),
        job(bench, "c", 100, 5.2),  # the old process still took work after the restart began
        job(bench, "d", 200, 9.0),
        job(bench, "e", 200, 7.7),
        job(bench, "f", 300, 8.0),  # a second new process
    ]
    moved = bench.switch(jobs, T + 5.0)
    assert moved.old_pids == (100,)
    assert moved.new_pids == (200, 300)
    assert moved.last_old_start == T + 5.2
    assert moved.first_new_start == T + 7.7
    assert moved.gap == pytest.approx(2.5)


def test_switch_gap_is_zero_when_both_processes_take_jobs_at_once(bench: ModuleType) -> None:
    jobs = [job(bench, "a", 100, 0.0), job(bench, "b", 200, 1.0), job(bench, "c", 100, 1.3)]
    moved = bench.switch(jobs, T + 0.5)
    assert moved.first_new_start - moved.last_old_start == pytest.approx(-0.3)
    assert moved.gap == 0.0


def test_switch_needs_an_old_and_a_new_process(bench: ModuleType) -> None:
    assert bench.switch([job(bench, "a", 100, 0.0), job(bench, "b", 100, 9.0)], T + 5) is None
    assert bench.switch([job(bench, "a", 200, 6.0)], T + 5) is None
    assert bench.switch([], T + 5) is None


def test_ambient_gap_is_the_median_interval_before_the_restart(bench: ModuleType) -> None:
    starts = [0.0, 0.05, 0.1, 0.3, 0.35, 9.0]  # 9.0 is after the restart and does not count
    jobs = [job(bench, str(i), 100, s) for i, s in enumerate(starts)]
    assert bench.ambient_gap(jobs, T + 5) == pytest.approx(0.05)
    assert bench.ambient_gap(jobs[:1], T + 5) is None


def test_lost_and_run_twice(bench: ModuleType) -> None:
    jobs = [job(bench, "a", 1, 0), job(bench, "b", 1, 0), job(bench, "b", 2, 1), job(bench, "c", 2, 1)]
    jobs += [job(bench, "c", 2, 2), job(bench, "c", 3, 3)]
    assert bench.lost(["a", "b", "x", "c", "y"], jobs) == ["x", "y"]
    assert bench.lost(["a"], jobs) == []
    assert bench.run_twice(jobs) == {"b": 2, "c": 3}
    assert bench.run_twice(jobs[:2]) == {}


def test_spread_and_table(bench: ModuleType) -> None:
    assert bench.spread([0.3, 0.0554, 2.0]) == "0.055 / 0.300 / 2.000"
    assert bench.spread([1.0, 2.0]) == "1.000 / 1.500 / 2.000"
    assert bench.spread([]) == "-"
    assert bench.table([["case", "gap"], ["restart", "1"]]) == (
        "| case    | gap |\n|---------|-----|\n| restart | 1   |"
    )


def host_run(bench: ModuleType, gap: float | None, pushed: int = 400, lost: tuple[str, ...] = ()) -> object:
    return bench.HostRun("h", pushed, list(lost), {}, gap, 0.05, [1], [2], 60.0)


def verdicts(bench: ModuleType, trials: list, noop: dict | None = None, evaluate: float = 2.0) -> list[str]:
    noop = noop or {"noop": [2.0, 2.4, 9.0], "empty": [2.0], "ssh": 0}
    rows = bench.goal_rows(trials, noop, {"hosts": 50, "evaluate": [evaluate]})
    return [row[1] for row in rows]


def test_goals_are_judged_on_the_overlap_runs(bench: ModuleType) -> None:
    long_ok = [{"host": "h", "finished": 1, "on": ["old"], "after_up_s": [4.0]}]
    steady = bench.Trial("overlap", 1, 20.0, [host_run(bench, g) for g in (0.05, 0.1, 0.3)])
    long_trial = bench.Trial("overlap", 3, 9.0, [host_run(bench, 0.0)], long_ok)
    assert verdicts(bench, [steady, long_trial]) == ["met", "met", "met", "met"]
    # The restart strategy's runs do not count for the goals.
    slow = bench.Trial("restart", 1, 20.0, [host_run(bench, 5.0, lost=("x",))])
    assert verdicts(bench, [steady, long_trial, slow])[:2] == ["met", "met"]
    assert verdicts(bench, [slow])[:2] == ["not measured", "not measured"]


def test_each_goal_fails_on_its_own_measure(bench: ModuleType) -> None:
    long_ok = [{"host": "h", "finished": 1, "on": ["old"], "after_up_s": [4.0]}]
    long_trial = bench.Trial("overlap", 3, 9.0, [host_run(bench, 0.0)], long_ok)

    def steady(*gaps: float | None, pushed: int = 400, lost: tuple[str, ...] = ()) -> object:
        return bench.Trial("overlap", 1, 20.0, [host_run(bench, g, pushed, lost) for g in gaps])

    assert verdicts(bench, [steady(0.05, 0.11, 0.12), long_trial])[0] == "NOT met"  # median
    assert verdicts(bench, [steady(0.0, 0.0, 0.31), long_trial])[0] == "NOT met"  # max
    assert verdicts(bench, [steady(0.0, None), long_trial])[0] == "not measured"  # a host did not restart
    assert verdicts(bench, [steady(0.0, lost=("a",)), long_trial])[1] == "NOT met"
    assert (
        verdicts(bench, [steady(0.0, pushed=999), bench.Trial("overlap", 3, 9, [], long_trial.long_jobs)])[1]
        == "NOT met"
    )
    on_new = [{"host": "h", "finished": 1, "on": ["new"], "after_up_s": [4.0]}]
    assert verdicts(bench, [steady(0.0), bench.Trial("overlap", 3, 9, [], on_new)])[1] == "NOT met"
    twice = [{"host": "h", "finished": 2, "on": ["old", "new"], "after_up_s": [4.0, 9.0]}]
    assert verdicts(bench, [steady(0.0), bench.Trial("overlap", 3, 9, [], twice)])[1] == "NOT met"
    doubled = steady(0.0)
    doubled.hosts[0].twice["a"] = 2
    assert verdicts(bench, [doubled, long_trial])[1] == "NOT met"
    assert verdicts(bench, [], {"noop": [2.5], "empty": [2.0], "ssh": 0})[2] == "NOT met"
    assert verdicts(bench, [], {"noop": [2.0], "empty": [2.0], "ssh": 1})[2] == "NOT met"
    assert verdicts(bench, [], evaluate=3.0)[3] == "NOT met"


def entry(at: float, message: str, **fields: str) -> dict:
    """A `journalctl -o json` entry: every field a string, the time in microseconds."""
    return {"__REALTIME_TIMESTAMP": str(int(at * 1e6)), "MESSAGE": message, **fields}


def test_drain_is_the_old_process_tstp_to_its_units_stop(bench: ModuleType) -> None:
    old_unit = "sidekiq-default@a.service"
    entries = [
        entry(T, "Started sidekiq-default@b.service.", _PID="1", UNIT="sidekiq-default@b.service"),
        entry(T + 1, "Received TSTP, no longer accepting new work", _PID="4242", _SYSTEMD_UNIT=old_unit),
        entry(
            T + 2, "Received TSTP, no longer accepting new work", _PID="5000", _SYSTEMD_UNIT="other.service"
        ),
        entry(T + 3, "Stopped other.service.", _PID="1", UNIT="other.service"),
        entry(T + 12.5, "Stopping sidekiq-default@a.service...", _PID="1", UNIT=old_unit),
        entry(T + 13.25, "Stopped sidekiq-default@a.service.", _PID="1", UNIT=old_unit),
        entry(T + 60, "Stopped sidekiq-default@a.service.", _PID="1", UNIT=old_unit),
        entry(T + 14, "a line without a message field of text", MESSAGE=[1, 2]),
    ]
    assert bench.drain_seconds(entries, [4242]) == pytest.approx(12.25)


def test_drain_in_user_scope_ends_at_the_user_managers_stop(bench: ModuleType) -> None:
    old_unit = "sidekiq-default@a.service"
    in_deploys_manager = {"_PID": "900", "_COMM": "systemd", "_SYSTEMD_UNIT": "user@1000.service"}
    entries = [
        entry(
            T + 1,
            "Received TSTP, no longer accepting new work",
            _PID="4242",
            _SYSTEMD_UNIT="user@1000.service",
            _SYSTEMD_USER_UNIT=old_unit,
        ),
        entry(
            T + 5,
            "Stopped sidekiq-default@b.service.",
            **in_deploys_manager,
            USER_UNIT="sidekiq-default@b.service",
        ),
        entry(T + 8, "Stopped sidekiq-default@a.service.", _PID="901", _COMM="logger", USER_UNIT=old_unit),
        entry(T + 9.5, "Stopped sidekiq-default@a.service.", **in_deploys_manager, USER_UNIT=old_unit),
    ]
    assert bench.drain_seconds(entries, [4242]) == pytest.approx(8.5)


def test_drain_is_unknown_without_a_quieted_and_stopped_old_process(bench: ModuleType) -> None:
    unit = "sidekiq-default@a.service"
    quieted = entry(T + 1, "Received TSTP, no longer accepting new work", _PID="4242", _SYSTEMD_UNIT=unit)
    stopped = entry(T + 9, "Stopped sidekiq-default@a.service.", _PID="1", UNIT=unit)
    stopped_before = entry(T, "Stopped sidekiq-default@a.service.", _PID="1", UNIT=unit)
    assert bench.drain_seconds([quieted], [4242]) is None
    assert bench.drain_seconds([stopped], [4242]) is None
    assert bench.drain_seconds([quieted, stopped], []) is None
    assert bench.drain_seconds([stopped_before, quieted], [4242]) is None
    # The deploying user's "Stopped" is not systemd's.
    assert bench.drain_seconds([quieted, {**stopped, "_PID": "77"}], [4242]) is None


def test_report_rows_for_the_health_window_and_recycling_and_no_noop_table(bench: ModuleType) -> None:
    healthy0 = bench.Trial(bench.HEALTHY_0, 1, 11.0, [host_run(bench, 0.0)])
    recycle = bench.Trial("recycle", None, 42.0, [host_run(bench, 0.02, pushed=900)])
    text = bench.report([healthy0, recycle], ["overlap", "restart"], None, {}, "settings")
    rows = {
        cells[0]: cells
        for row in text.splitlines()
        if row.startswith("| ")
        for cells in [[cell.strip() for cell in row.strip("|").split("|")]]
    }
    assert rows["overlap, healthySeconds 0, batch 1"][1:3] == ["1 (1 restarted)", "0.000 / 0.000 / 0.000"]
    assert rows["recycle"][2] == "0.020 / 0.020 / 0.020"
    assert rows["recycle"][4] == "0 / 900"
    assert rows["recycle"][-1] == "42.0"
    # Built but not chosen: no row at all; no no-op table without a no-op measurement.
    assert "overlap, batch 1" not in rows
    assert "No-op" not in text
