"""In-context learning, measured (``askgpt bench icl``): k-shot curves on small tasks.

Each task has a pool of worked examples and a held-out test set. For every number of
examples k, k pool examples are placed before each test input (as earlier chat turns,
exactly as ``askgpt --examples`` does) and the answer is scored:

- label tasks (sentiment, topic; a user's file whose outputs form a small set) by the
  labels' log-probabilities as the whole answer (`score_labels`, optionally calibrated);
- generation tasks (word translation, arithmetic, unscrambling, antonyms) by exact match
  of the first line of a greedy answer, stripped, case-folded, a final period dropped.

Random examples are drawn afresh for each of ``seeds`` draws, so a k's accuracy is the
mean over test items and draws; its 95% interval is a percentile bootstrap over both (the
items and the draws are resampled together), so it covers the spread between example
choices as well as between inputs. The same examples for every input of a draw keep the
prompt's prefix shared, so the engine evaluates it once per draw.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from importlib import resources
from pathlib import Path

from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import InputNotFoundError, UsageError
from askgpt.runtime.icl.calibration import calibrated
from askgpt.runtime.icl.labels import score_labels
from askgpt.runtime.icl.selection import Select, label_set, select_examples
from askgpt.runtime.prompting.generate import GenerationConfig, prepare
from askgpt.runtime.prompting.request import Example, Request, parse_examples
from askgpt.runtime.store.templates import Template

DEFAULT_SHOTS = (0, 1, 2, 4, 8, 16)
# A generation task's answer is one short line: stopping early keeps the run short.
GENERATE_TOKENS = 10
# Pure greedy decoding: no repeat penalty (a translation may repeat its input, "table").
GREEDY = GenerationConfig(GENERATE_TOKENS, SamplingConfig(temperature=0, repeat_penalty=1.0, loop_guard=None))
RESAMPLES = 2000
LEVEL = 0.95
INTERVAL_METHOD = (f"{round(LEVEL * 100)}% percentile bootstrap over test items and draws "
                   f"({RESAMPLES} resamples, fixed seed)")
# A user's task file: this share of its lines (up to MAX_TEST) is held out as the test set.
TEST_SHARE = 0.5
MAX_TEST = 100


class TaskKind(str, Enum):
    LABELS = "labels"  # scored by the labels' log-probabilities
    GENERATE = "generate"  # scored by exact match of a greedy answer's first line


@dataclass(frozen=True)
class Task:
    name: str
    kind: TaskKind
    pool: tuple[Example, ...]
    test: tuple[Example, ...]
    system: str | None = None
    labels: tuple[str, ...] = ()  # a label task's answers


@dataclass(frozen=True)
class Setting:
    select: Select
    calibrate: bool  # has an effect on label tasks only

    @property
    def name(self) -> str:
        return self.select.value + (", calibrated" if self.calibrate else "")


@dataclass(frozen=True)
class Score:
    """One task at one k and setting: ``correct[d][i]`` for draw d and test item i."""

    task: str
    shots: int
    setting: Setting
    correct: tuple[tuple[bool, ...], ...]
    low: float
    high: float

    @property
    def accuracy(self) -> float:
        return accuracy(self.correct)

    def to_json(self) -> dict[str, object]:
        return {"task": self.task, "shots": self.shots, "select": self.setting.select.value,
                "calibrate": self.setting.calibrate, "accuracy": round(self.accuracy, 4),
                "low": round(self.low, 4), "high": round(self.high, 4),
                "draws": [round(accuracy((row,)), 4) for row in self.correct]}


@dataclass(frozen=True)
class Average:
    shots: int
    setting: Setting
    accuracy: float
    low: float
    high: float

    def to_json(self) -> dict[str, object]:
        return {"shots": self.shots, "select": self.setting.select.value, "calibrate": self.setting.calibrate,
                "accuracy": round(self.accuracy, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


@dataclass
class ModelResult:
    model: str
    tasks: list[Task]
    scores: list[Score] = field(default_factory=list)
    averages: list[Average] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # (task, k) pairs the pool is too small for
    seconds: float = 0.0

    def score(self, task: str, shots: int, setting: Setting) -> Score | None:
        for s in self.scores:
            if (s.task, s.shots, s.setting) == (task, shots, setting):
                return s
        return None

    def best(self, task: str) -> Score:
        """The setting with the highest accuracy; on a tie the cheaper one: fewer examples,
        then no calibration, then the order of the settings asked for."""
        scores = [s for s in self.scores if s.task == task]
        order = {s.setting: i for i, s in enumerate(scores)}
        return max(scores, key=lambda s: (round(s.accuracy, 9), -s.shots, not s.setting.calibrate,
                                          -order[s.setting]))

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "seconds": round(self.seconds, 1),
            "tasks": [{"task": t.name, "kind": t.kind.value, "labels": list(t.labels), "pool": len(t.pool),
                       "test": len(t.test)} for t in self.tasks],
            "scores": [s.to_json() for s in self.scores],
            "average": [a.to_json() for a in self.averages],
            "best": [{"task": t.name, **{k: v for k, v in self.best(t.name).to_json().items()
                                         if k not in ("task", "draws")}} for t in self.tasks],
            "skipped": self.skipped,
        }


# --- the tasks -----------------------------------------------------------------------------

def builtin_tasks() -> dict[str, Task]:
    """The built-in suite (runtime/bench/icl_tasks: suite.json and NAME.pool/.test.jsonl)."""
    folder = resources.files("askgpt.runtime.bench") / "icl_tasks"
    suite = json.loads((folder / "suite.json").read_text(encoding="utf-8"))
    tasks = {}
    for name, meta in suite.items():
        pool, test = (parse_examples((folder / f"{name}.{part}.jsonl").read_text(encoding="utf-8"),
                                     f"{name}.{part}.jsonl") for part in ("pool", "test"))
        labels = tuple(meta.get("labels", ()))
        tasks[name] = Task(name, TaskKind.LABELS if labels else TaskKind.GENERATE, pool, test,
                           meta.get("system"), labels)
    return tasks


def pick_tasks(names: Sequence[str] | None) -> list[Task]:
    suite = builtin_tasks()
    if not names:
        return list(suite.values())
    unknown = [n for n in names if n not in suite]
    if unknown:
        raise UsageError(f"no built-in task {', '.join(unknown)}", hint=f"tasks: {', '.join(suite)}")
    return [suite[n] for n in dict.fromkeys(names)]


def task_from_file(path: Path, *, system: str | None = None, seed: int = 0) -> Task:
    """A user's task: JSONL lines of {"input", "output"}, shuffled with ``seed`` and split
    into a test set (half, up to MAX_TEST) and a pool (the rest). A label task when the
    outputs form a small set (`label_set`), else a generation task."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputNotFoundError(f"no task file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read task file {path}: {exc}") from None
    examples = [Example(e.input, e.output.strip()) for e in parse_examples(raw, str(path))]
    if len(examples) < 4:
        raise UsageError(f"{path} has {len(examples)} examples; a task needs at least 4 (a pool and a test set)")
    labels = label_set([e.output for e in examples])
    rng = random.Random(seed)
    if labels is None:
        order = list(examples)
        rng.shuffle(order)
        n_test = min(MAX_TEST, round(len(order) * TEST_SHARE))
        test, pool = order[:n_test], order[n_test:]
    else:  # stratified, so the test set and the pool hold every label in the file's proportions
        test, pool = [], []
        for label in labels:
            group = [e for e in examples if e.output == label]
            rng.shuffle(group)
            n_test = round(len(group) * TEST_SHARE)
            test += group[:n_test]
            pool += group[n_test:]
        rng.shuffle(test)
        test = test[:MAX_TEST]
    return Task(path.stem, TaskKind.LABELS if labels else TaskKind.GENERATE, tuple(pool), tuple(test),
                system, labels or ())


# --- scoring -------------------------------------------------------------------------------

def normalize(text: str) -> str:
    """The first non-empty line, stripped and case-folded, a final period dropped."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return line.strip().removesuffix(".").strip().casefold()


def control_ids(engine: Engine) -> frozenset[int]:
    """The engine's control tokens (``<|im_start|>``...): any of them ends an answer's text."""
    ids = (engine.tokenize(text, special=True) for text in engine.control_texts if text)
    return frozenset(t[0] for t in ids if len(t) == 1)


def first_line(engine: Engine, request: Request, stop_ids: frozenset[int] = frozenset()) -> str:
    """The greedy answer up to its first line break or control token (generation stops
    there), at most GENERATE_TOKENS tokens. A small model may end its turn with the wrong
    control token (``<|im_start|>`` and a new turn), which would otherwise run on into
    the answer's text."""
    prompt = prepare(engine, request, GREEDY)
    out = bytearray()
    tokens = engine.generate(prompt.parts, GREEDY.sampling)
    try:
        for n, token in enumerate(tokens, start=1):
            if token in stop_ids:
                break
            out += engine.token_bytes(token)
            if b"\n" in out.lstrip() or n >= GENERATE_TOKENS:
                break
    finally:
        tokens.close()
    return out.decode("utf-8", errors="replace")


def is_right(engine: Engine, task: Task, request: Request, expected: str, *, calibrate: bool = False,
             stop_ids: frozenset[int] = frozenset()) -> bool:
    if task.kind is TaskKind.LABELS:
        scores = calibrated(engine, request, task.labels) if calibrate else score_labels(engine, request, task.labels)
        return scores.best == expected.strip()
    return normalize(first_line(engine, request, stop_ids)) == normalize(expected)


def accuracy(correct: Sequence[Sequence[bool]]) -> float:
    cells = [c for row in correct for c in row]
    return sum(cells) / len(cells) if cells else float("nan")


def bootstrap_interval(matrices: Sequence[Sequence[Sequence[bool]]], *, level: float = LEVEL,
                       resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean accuracy over one or more tasks.

    ``matrices[t][d][i]``: task t, draw d, test item i. Each resample draws, per task, the
    draws and the items with replacement (independently), takes that task's accuracy, and
    averages over the tasks; the interval is the middle ``level`` of those averages.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for matrix in matrices:
        m = np.asarray(matrix, dtype=float)
        if m.ndim != 2 or m.size == 0:
            raise ValueError("each task needs a draws x items matrix of results")
        d = rng.integers(0, m.shape[0], size=(resamples, m.shape[0]))
        i = rng.integers(0, m.shape[1], size=(resamples, m.shape[1]))
        # m[d][:, i] per resample, without a Python loop: pick rows, then columns.
        picked = np.take_along_axis(m[d], np.broadcast_to(i[:, None, :], (resamples, m.shape[0], m.shape[1])),
                                    axis=2)
        means += picked.mean(axis=(1, 2))
    means /= len(matrices)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


# --- the run -------------------------------------------------------------------------------

def settings_for(selects: Sequence[Select], calibrate: bool) -> list[Setting]:
    out = []
    for how in dict.fromkeys(selects):
        out.append(Setting(how, False))
        if calibrate:
            out.append(Setting(how, True))
    return out


def check_names(tasks: Sequence[Task]) -> None:
    names = [t.name for t in tasks]
    if len(set(names)) < len(names):
        raise UsageError(f"two tasks are named {', '.join(sorted({n for n in names if names.count(n) > 1}))}",
                         hint="a task file is named by its file name: rename it")


def run_icl(engine: Engine, tasks: Sequence[Task], *, shots: Sequence[int], seeds: int,
            settings: Sequence[Setting], progress: Callable[[int, int], None] | None = None) -> ModelResult:
    """Every task at every k and setting, ``seeds`` draws each, on one loaded engine."""
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    check_names(tasks)
    start = time.perf_counter()
    result = ModelResult(engine.info.name, list(tasks))
    plan = [(t, k) for t in tasks for k in shots if k <= len(t.pool)]
    result.skipped = [f"{t.name} k={k} (pool of {len(t.pool)})" for t in tasks for k in shots if k > len(t.pool)]
    total = sum(len(t.test) for t, _ in plan) * seeds * len(settings)
    done = 0
    # The same prompt gives the same answer (greedy, label scores): k=0 is run once, not per
    # draw, and a setting that changes nothing for a task (calibration of generated answers,
    # or an order that selects the same examples) reuses the earlier answer.
    memo: dict[tuple[object, ...], bool] = {}
    stop_ids = control_ids(engine)
    for task, k in plan:
        for setting in settings:
            calibrate = setting.calibrate and task.kind is TaskKind.LABELS
            rows = []
            for draw in range(seeds):
                row = []
                fixed = select_examples(task.pool, "", k, setting.select, draw) if setting.select is Select.RANDOM \
                    else None  # random examples do not depend on the input: one prefix per draw
                for item in task.test:
                    examples = fixed if fixed is not None else \
                        select_examples(task.pool, item.input, k, setting.select, draw)
                    key = (task.name, calibrate, examples, item.input)
                    if key not in memo:
                        request = Request(item.input, system=task.system, examples=examples)
                        memo[key] = is_right(engine, task, request, item.output, calibrate=calibrate,
                                             stop_ids=stop_ids)
                    row.append(memo[key])
                    done += 1
                    if progress is not None:
                        progress(done, total)
                rows.append(tuple(row))
            low, high = bootstrap_interval([rows])
            result.scores.append(Score(task.name, k, setting, tuple(rows), low, high))
    for k in shots:
        for setting in settings:
            cells = [s for t in tasks if (s := result.score(t.name, k, setting)) is not None]
            if len(cells) == len(tasks):  # an average over every task, or none
                low, high = bootstrap_interval([s.correct for s in cells])
                result.averages.append(Average(k, setting, sum(s.accuracy for s in cells) / len(cells), low, high))
    result.seconds = time.perf_counter() - start
    return result


# --- showing it ----------------------------------------------------------------------------

def _cell(accuracy: float, low: float, high: float) -> str:
    return f"{round(100 * accuracy):>3} ({round(100 * low)}-{round(100 * high)})"


def format_results(results: Sequence[ModelResult], shots: Sequence[int], settings: Sequence[Setting],
                   seeds: int) -> str:
    lines = [f"accuracy % ({INTERVAL_METHOD}); {seeds} draw(s) of examples per k"]
    for result in results:
        width = max([len("average"), *(len(t.name) for t in result.tasks)]) + 2
        for setting in settings:
            lines += ["", f"model {result.model}, examples {setting.name}:",
                      ("task".ljust(width) + "".join(f"{'k=' + str(k):<13}" for k in shots)).rstrip()]
            for task in result.tasks:
                row = task.name.ljust(width)
                for k in shots:
                    s = result.score(task.name, k, setting)
                    row += f"{_cell(s.accuracy, s.low, s.high) if s else '  -':<13}"
                lines.append(row.rstrip())
            averages = {a.shots: a for a in result.averages if a.setting == setting}
            if len(result.tasks) > 1:
                row = "average".ljust(width)
                for k in shots:
                    a = averages.get(k)
                    row += f"{_cell(a.accuracy, a.low, a.high) if a else '  -':<13}"
                lines.append(row.rstrip())
        lines += ["", f"best setting for {result.model}:"]
        for task in result.tasks:
            b = result.best(task.name)
            calib = "calibrated" if b.setting.calibrate else "not calibrated"
            lines.append(f"  {task.name}: k={b.shots}, select {b.setting.select.value}, {calib}: "
                         f"{round(100 * b.accuracy)}% ({round(100 * b.low)}-{round(100 * b.high)})")
        if result.skipped:
            lines.append(f"  skipped, pool too small: {'; '.join(result.skipped)}")
        lines.append(f"  time: {result.seconds:.0f} s")
    return "\n".join(lines)


def results_json(results: Sequence[ModelResult], shots: Sequence[int], settings: Sequence[Setting],
                 seeds: int) -> dict[str, object]:
    return {"shots": list(shots), "seeds": seeds,
            "settings": [{"select": s.select.value, "calibrate": s.calibrate} for s in settings],
            "interval": INTERVAL_METHOD, "models": [r.to_json() for r in results]}


def plot_curves(results: Sequence[ModelResult], shots: Sequence[int], settings: Sequence[Setting],
                path: str) -> None:
    """Accuracy against the number of examples, one line per model and setting: one panel
    for the average over the tasks (with its interval shaded) and one per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results[0].tasks
    panels = (["average"] if len(tasks) > 1 else []) + [t.name for t in tasks]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    xs = list(shots)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for result in results:
            for setting in settings:
                label = f"{result.model}, {setting.name}" if len(results) > 1 or len(settings) > 1 else result.model
                if panel == "average":
                    got = {a.shots: a for a in result.averages if a.setting == setting}
                else:
                    got = {k: s for k in xs if (s := result.score(panel, k, setting)) is not None}
                ks = [k for k in xs if k in got]
                line, = ax.plot(ks, [100 * got[k].accuracy for k in ks], marker="o", label=label)
                ax.fill_between(ks, [100 * got[k].low for k in ks], [100 * got[k].high for k in ks],
                                color=line.get_color(), alpha=0.15)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(xs, [str(k) for k in xs])
        ax.set_ylim(0, 100)
        ax.set_title(panel)
        ax.set_xlabel("examples in context (k)")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_template(name: str, result: ModelResult, task: Task) -> tuple[Template, str]:
    """A template that keeps the best setting found for ``task``: its description and labels,
    and with examples the pool, the number drawn per input and how; and a line saying what
    it holds."""
    best = result.best(task.name)
    calibrate = best.setting.calibrate and task.kind is TaskKind.LABELS
    kept = "calibrate" in {f.name for f in fields(Template)}
    extra: dict[str, object] = {"calibrate": True} if calibrate and kept else {}
    if best.shots == 0:
        template = Template(name, system=task.system, labels=task.labels, **extra)  # type: ignore[arg-type]
        held = "no examples"
    else:
        template = Template(name, system=task.system, examples=task.pool, labels=task.labels,  # type: ignore[arg-type]
                            shots=best.shots, select=best.setting.select, **extra)
        held = f"a pool of {len(task.pool)}, {best.shots} drawn per input ({best.setting.select.value})"
    if task.labels:
        held += f", labels {','.join(task.labels)}"
    if calibrate:
        held += ", calibrated" if kept else "; a template does not keep calibration: add --calibrate when asking"
    return template, f"{held}; best for {result.model}: {round(100 * best.accuracy)}%"
