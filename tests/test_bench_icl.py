"""`askgpt bench icl`: the built-in suite, the interval, the lists, the command's logic on the
scripted engine, and one small run of the real model."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from fakes import ScriptedEngine, ScriptedFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from askgpt.cli.app import create_app
from askgpt.cli.commands.bench import parse_shots
from askgpt.runtime.bench.icl import (
    DEFAULT_SHOTS,
    TaskKind,
    bootstrap_interval,
    builtin_tasks,
    normalize,
    task_from_file,
)
from askgpt.runtime.errors import UsageError
from conftest import run_askgpt

SUITE = builtin_tasks()


# --- the built-in suite --------------------------------------------------------------------

def test_the_suite_has_the_six_families() -> None:
    assert list(SUITE) == ["sentiment", "topic", "translate", "arithmetic", "unscramble", "antonyms"]
    assert {n for n, t in SUITE.items() if t.kind is TaskKind.LABELS} == {"sentiment", "topic"}
    assert len(SUITE["topic"].labels) >= 4


@pytest.mark.parametrize("name", list(SUITE))
def test_each_task_is_well_formed(name: str) -> None:
    task = SUITE[name]
    assert task.system and len(task.test) == 24 and len(task.pool) >= max(DEFAULT_SHOTS)
    inputs = [e.input for e in (*task.pool, *task.test)]
    assert len(set(inputs)) == len(inputs)  # no input twice, none both in the pool and the test set
    for e in (*task.pool, *task.test):
        assert e.input.strip() == e.input and e.output.strip() == e.output and e.input and e.output
        assert "\n" not in e.output and normalize(e.output) == e.output.casefold()
    if task.kind is TaskKind.LABELS:
        for part in (task.pool, task.test):  # every label equally often in both
            counts = Counter(e.output for e in part)
            assert set(counts) == set(task.labels) and len(set(counts.values())) == 1, counts


def test_the_generation_tasks_answers_are_right() -> None:
    for e in (*SUITE["arithmetic"].pool, *SUITE["arithmetic"].test):
        a, op, b = e.input.split()
        assert 10 <= int(a) <= 999 and 10 <= int(b) <= 999
        assert int(e.output) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
    for e in (*SUITE["unscramble"].pool, *SUITE["unscramble"].test):
        assert sorted(e.input) == sorted(e.output) and e.input != e.output
    pairs = {(e.input, e.output) for e in (*SUITE["antonyms"].pool, *SUITE["antonyms"].test)}
    assert not {(b, a) for a, b in pairs} & pairs  # no pair given both ways


def test_the_suite_ships_in_the_package_data() -> None:
    import fnmatch

    import tomllib

    repo = Path(__file__).resolve().parent.parent
    globs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    folder = repo / "runtime" / "bench"
    files = [str(p.relative_to(folder)) for p in (folder / "icl_tasks").iterdir()]
    assert len(files) >= 10
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs["askgpt.runtime.bench"])] == []


# --- the interval --------------------------------------------------------------------------

def test_interval_of_a_constant_result_is_that_value() -> None:
    assert bootstrap_interval([[[True] * 24] * 3]) == (1.0, 1.0)
    assert bootstrap_interval([[[False] * 24]]) == (0.0, 0.0)


def test_interval_matches_the_normal_approximation_for_many_items() -> None:
    items = [True, False] * 200  # p = 0.5, n = 400: 1.96 * sqrt(.25 / 400) = 0.049
    low, high = bootstrap_interval([[items]])
    assert low == pytest.approx(0.5 - 0.049, abs=0.01) and high == pytest.approx(0.5 + 0.049, abs=0.01)


def test_interval_counts_the_spread_between_draws() -> None:
    same = [[True] * 12 + [False] * 12] * 3
    spread = [[True] * 24, [False] * 24, [True] * 12 + [False] * 12]  # same mean, draws disagree
    w_same = bootstrap_interval([same])
    w_spread = bootstrap_interval([spread])
    assert w_spread[1] - w_spread[0] > 1.5 * (w_same[1] - w_same[0])


def test_interval_of_an_average_lies_between_its_tasks() -> None:
    easy, hard = [[True] * 20 + [False] * 4] * 2, [[True] * 4 + [False] * 20] * 2
    low, high = bootstrap_interval([easy, hard])
    assert low < 0.5 < high and high - low < bootstrap_interval([hard])[1] - bootstrap_interval([hard])[0] + 0.1
    assert bootstrap_interval([easy, hard]) == bootstrap_interval([easy, hard])  # a fixed seed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=4))
def test_interval_holds_the_accuracy(matrix: list[list[bool]]) -> None:
    mean = sum(map(sum, matrix)) / (5 * len(matrix))
    low, high = bootstrap_interval([matrix])
    assert 0 <= low <= mean + 1e-9 and mean - 1e-9 <= high <= 1


# --- lists and scoring ---------------------------------------------------------------------

@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=12), st.sampled_from([",", ", ", " ,"]))
def test_shots_parse_as_sorted_distinct_counts(shots: list[int], sep: str) -> None:
    assert parse_shots(sep.join(map(str, shots))) == sorted(set(shots))


@given(st.text(alphabet="0123456789,-x. ", max_size=12))
def test_bad_shots_are_refused(text: str) -> None:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts and all(re.fullmatch(r"\d+", p) for p in parts):
        return  # a good list
    with pytest.raises(UsageError):
        parse_shots(text)


def test_normalize_reads_the_first_line_without_case_or_final_period() -> None:
    assert normalize("\n  Fromage.\nmore") == "fromage"
    assert normalize("85") == "85" and normalize("") == ""
    assert normalize("Über") == "über"


def test_a_task_file_is_split_deterministically(tmp_path: Path) -> None:
    lines = [{"input": f"text {i}", "output": "yes" if i % 3 else "no"} for i in range(30)]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    task = task_from_file(path)
    assert task.kind is TaskKind.LABELS and set(task.labels) == {"yes", "no"}
    assert task_from_file(path) == task and task_from_file(path, seed=1) != task
    assert sorted(e.input for e in (*task.pool, *task.test)) == sorted(x["input"] for x in lines)
    assert Counter(e.output for e in task.test) == Counter({"yes": 10, "no": 5})  # stratified halves
    words = tmp_path / "words.jsonl"
    words.write_text("\n".join(json.dumps({"input": f"w{i}", "output": f"m{i}"}) for i in range(10)))
    gen = task_from_file(words)
    assert gen.kind is TaskKind.GENERATE and not gen.labels and len(gen.test) == len(gen.pool) == 5


# --- the command on the scripted engine ----------------------------------------------------

def invoke(args: list[str], engine: ScriptedEngine | None = None):
    factory = ScriptedFactory(engine or ScriptedEngine())
    result = CliRunner().invoke(create_app(factory), ["bench", "icl", *args], catch_exceptions=False)
    return result, factory


def test_a_generation_task_is_scored_by_the_first_line(tmp_path: Path) -> None:
    # Half the outputs are "Fromage", the rest all different: too many distinct outputs
    # for a label set, so a generation task.
    rows = [{"input": f"cheese {i}", "output": "Fromage" if i % 2 else f"pain {i}"} for i in range(20)]
    path = tmp_path / "cheese.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = task_from_file(path)
    expected = sum(e.output == "Fromage" for e in task.test) / len(task.test)
    engine = ScriptedEngine(answer=" fromage.\nand more")  # right, once its first line is normalized
    result, factory = invoke(["--task-file", str(path), "--shots", "0,2", "--seeds", "2", "--json"], engine)
    assert result.exit_code == 0, result.output
    (model,) = json.loads(result.stdout)["models"]
    assert model["tasks"] == [{"task": "cheese", "kind": "generate", "labels": [], "pool": 10, "test": 10}]
    assert [s["shots"] for s in model["scores"]] == [0, 2]
    for s in model["scores"]:
        assert s["draws"] == [expected, expected] and s["accuracy"] == expected
        assert s["low"] <= s["accuracy"] <= s["high"]
    assert [c.n_threads for _, c in factory.calls] == [1]  # one engine, loaded once
    # k=0 is asked once (the same prompt in every draw); k=2 once per test input and draw.
    user_turns = Counter(p.count("<|im_start|>user") for p in engine.prompts)
    assert user_turns == {1: 10, 3: 20}, user_turns


def test_label_tasks_and_the_average_and_best_setting() -> None:
    # The scripted engine's log-probabilities are uniform: every label ties, and a tie goes
    # to the first label, so each label task scores exactly its first label's share.
    result, _ = invoke(["--tasks", "sentiment,topic", "--shots", "0,1,4", "--seeds", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"shots", "seeds", "settings", "interval", "models"}
    assert data["shots"] == [0, 1, 4] and data["seeds"] == 2 and "bootstrap" in data["interval"]
    (model,) = data["models"]
    assert set(model) == {"model", "seconds", "tasks", "scores", "average", "best", "skipped"}
    acc = {(s["task"], s["shots"]): s["accuracy"] for s in model["scores"]}
    assert all(acc[("sentiment", k)] == 0.5 for k in (0, 1, 4))
    assert all(acc[("topic", k)] == 0.25 for k in (0, 1, 4))
    assert [a["accuracy"] for a in model["average"]] == [0.375] * 3
    # Every k ties: the best setting is the cheapest, no examples.
    best = {b["task"]: (b["shots"], b["select"], b["calibrate"], b["accuracy"]) for b in model["best"]}
    assert best == {"sentiment": (0, "random", False, 0.5), "topic": (0, "random", False, 0.25)}


def test_the_table_names_the_best_setting(tmp_path: Path) -> None:
    result, _ = invoke(["--tasks", "sentiment", "--shots", "0,2", "--seeds", "1", "--select", "random,similar",
                        "--calibrate", "--plot", str(tmp_path / "curve.png")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for setting in ("random", "random, calibrated", "similar", "similar, calibrated"):
        assert f"examples {setting}:" in out
    assert re.search(r"^sentiment\s+50 \(\d+-\d+\)\s+50 \(\d+-\d+\)$", out, re.M), out
    assert "sentiment: k=0, select random, not calibrated: 50" in out
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class LearnsFromExamples(ScriptedEngine):
    """Answers "fromage" only when the prompt holds at least one worked example."""

    def generate(self, prompt, sampling):
        text = bytes(t for p in prompt for t in p.ids).decode("utf-8")
        self.answer = "fromage" if text.count("<|im_start|>assistant") > 1 else "cheese"
        return super().generate(prompt, sampling)


def test_the_best_setting_is_kept_as_a_template(tmp_path: Path, isolated_home: Path) -> None:
    path = tmp_path / "cheese.jsonl"
    path.write_text("\n".join(json.dumps({"input": f"cheese {i}", "output": "fromage" if i % 2 else f"x{i}"})
                              for i in range(24)))
    result, _ = invoke(["--task-file", str(path), "-s", "Translate.", "--shots", "0,2,4", "--seeds", "1",
                        "--save-template", "cheese"], LearnsFromExamples())
    assert result.exit_code == 0, result.output
    assert "cheese: k=2, select random, not calibrated" in result.stdout  # k=2 and k=4 tie: the fewer
    assert "saved template cheese" in result.stderr
    saved = json.loads(next(isolated_home.rglob("cheese.json")).read_text())
    assert saved["system"] == "Translate." and saved["shots"] == 2 and saved["select"] == "random"
    assert len(saved["examples"]) == 12 and "labels" not in saved  # the pool; a generation task


def test_a_zero_shot_best_is_kept_with_its_labels(isolated_home: Path) -> None:
    # Uniform scores: every k ties, so no examples is the best (cheapest) setting.
    result, _ = invoke(["--tasks", "sentiment", "--shots", "0,1", "--seeds", "1", "--calibrate",
                        "--save-template", "moods"])
    assert result.exit_code == 0, result.output
    assert "saved template moods" in result.stderr
    saved = json.loads(next(isolated_home.rglob("moods.json")).read_text())
    assert saved["system"] == SUITE["sentiment"].system and saved["labels"] == ["positive", "negative"]
    assert "shots" not in saved and saved["examples"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "sentiment,poetry"], "no built-in task poetry"),
    (["--shots", "0,two"], "--shots must be whole numbers"),
    (["--shots", "-1,2"], "--shots must be whole numbers"),
    (["--shots", ","], "--shots must list numbers"),
    (["--select", "best"], "--select must be one of"),
    (["--tasks", "sentiment,topic", "--save-template", "x"], "--save-template keeps the best setting of one task"),
    (["--tasks", "sentiment", "--save-template", "Bad Name"], "bad template name"),
    (["--task-file", "/nonexistent/task.jsonl"], "no task file"),
])
def test_bad_arguments_are_one_clear_line(args: list[str], message: str) -> None:
    result, factory = invoke(args)
    assert result.exit_code != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not factory.calls  # refused before loading a model


def test_two_tasks_of_one_name_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sentiment.jsonl"
    path.write_text("\n".join(json.dumps({"input": f"t{i}", "output": "a" if i % 2 else "b"}) for i in range(8)))
    result, factory = invoke(["--tasks", "sentiment", "--task-file", str(path)])
    assert result.exit_code == 2 and "two tasks are named sentiment" in result.stderr and not factory.calls


def test_a_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result, _ = invoke(["--tasks", "sentiment", "--shots", "0", "--seeds", "1", "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "--plot needs matplotlib" in result.stderr
    assert 'pip install "askgpt[plot]"' in result.stderr


# --- the real model ------------------------------------------------------------------------

@pytest.mark.model
def test_bench_icl_on_the_built_in_model() -> None:
    result = run_askgpt(["bench", "icl", "--tasks", "sentiment", "--shots", "0,1", "--seeds", "1", "--json", "-q"],
                        timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (model,) = data["models"]
    assert model["tasks"][0]["task"] == "sentiment" and model["tasks"][0]["test"] == 24
    scores = model["scores"]
    assert [(s["task"], s["shots"]) for s in scores] == [("sentiment", 0), ("sentiment", 1)]
    for s in scores:
        assert 0 <= s["low"] <= s["accuracy"] <= s["high"] <= 1 and len(s["draws"]) == 1
    assert model["best"][0]["shots"] in (0, 1)
