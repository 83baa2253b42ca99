"""bench/mutation_score.py: the score it counts and the ratchet it enforces, on mutmut results made here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
SOURCE = "components/config.py"


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script, pointed at a project in tmp_path with one pure-layer file and no mutmut run."""
    spec = importlib.util.spec_from_file_location(
        "mutation_score", PROJECT_DIR / "bench" / "mutation_score.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # for its dataclass
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(module, "THRESHOLDS", tmp_path / "thresholds.json")
    monkeypatch.setattr(module, "FILES", {SOURCE: ["tests/test_config.py"]})
    monkeypatch.setattr(module, "SHARED_INPUTS", [])
    monkeypatch.setattr(module, "run_mutmut", lambda paths, children: None)
    (tmp_path / "components").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / SOURCE).write_text("a = 1  # pragma: no mutate - why\nb = 2  # pragma: no mutate - why\n")
    (tmp_path / "tests" / "test_config.py").write_text("")
    return module


def results(tmp_path: Path, killed: int, timeouts: int, survived: int, untested: int = 0) -> None:
    codes = [1] * killed + [36] * timeouts + [0] * survived + [33] * untested
    meta = tmp_path / "mutants" / f"{SOURCE}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": {f"m{i}": code for i, code in enumerate(codes)}}))


def test_timeouts_count_as_killed_and_untested_mutants_as_survived(bench: ModuleType, tmp_path: Path) -> None:
    results(tmp_path, killed=6, timeouts=2, survived=1, untested=1)
    score = bench.score(SOURCE)
    assert (score.killed, score.survived, score.equivalent) == (8, 2, 2)
    assert score.percent == 80.0
    assert score.survivors == ["m8", "m9"]


def test_the_ratchet_fails_below_the_threshold_and_passes_at_it(
    bench: ModuleType, tmp_path: Path, capsys
) -> None:
    bench.THRESHOLDS.write_text(json.dumps({SOURCE: {"threshold": 90.0}}))
    results(tmp_path, killed=9, timeouts=0, survived=1)
    assert bench.main([]) == 0
    results(tmp_path, killed=8, timeouts=0, survived=2)
    assert bench.main([]) == 1
    assert f"mutation ratchet: {SOURCE} scores 80.0%, below its threshold 90.0%" in capsys.readouterr().err


def test_record_raises_a_threshold_and_never_lowers_one(bench: ModuleType, tmp_path: Path) -> None:
    bench.THRESHOLDS.write_text(json.dumps({SOURCE: {"threshold": 90.0}}))
    results(tmp_path, killed=95, timeouts=0, survived=4)  # 95.96%
    assert bench.main(["--record"]) == 0
    recorded = json.loads(bench.THRESHOLDS.read_text())[SOURCE]
    assert recorded == {"threshold": 95.9, "score": 96.0, "digest": bench.digest(SOURCE)}
    results(tmp_path, killed=9, timeouts=0, survived=1)
    assert bench.main(["--record"]) == 1, "90% is below the recorded 95.9%"
    assert json.loads(bench.THRESHOLDS.read_text())[SOURCE]["threshold"] == 95.9


def test_changed_mutates_only_files_whose_code_or_tests_changed(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mutated: list[list[str]] = []
    monkeypatch.setattr(bench, "run_mutmut", lambda paths, children: mutated.append(paths))
    results(tmp_path, killed=9, timeouts=0, survived=1)
    bench.THRESHOLDS.write_text(json.dumps({SOURCE: {"threshold": 90.0, "digest": bench.digest(SOURCE)}}))
    assert bench.main(["--changed"]) == 0
    assert mutated == []
    (tmp_path / "tests" / "test_config.py").write_text("# a test changed\n")
    assert bench.main(["--changed"]) == 0
    assert mutated == [[SOURCE]]
