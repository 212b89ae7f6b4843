"""`askgpt bench startup`: askgpt as whole processes against a bare llama-cpp-python script.

Each command runs as a fresh process, interleaved round by round so machine
noise falls on all alike; wall time and CPU time (user + system, from the
kernel's accounting of waited-for children) are the medians over the rounds.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessTime:
    label: str
    wall: float  # seconds, median
    cpu: float


@dataclass(frozen=True)
class StartupResult:
    times: tuple[ProcessTime, ...]
    rounds: int

    def get(self, label: str) -> ProcessTime:
        return next(t for t in self.times if t.label == label)

    @property
    def answer_overhead(self) -> float:
        """Wall seconds a one-token answer costs beyond the bare script (the issue's bar: 0.3)."""
        return self.get("askgpt one-token answer").wall - self.get("bare llama-cpp-python script").wall

    def lines(self) -> list[str]:
        out = [f"{t.label:30s} wall {t.wall * 1000:6.0f} ms   cpu {t.cpu * 1000:6.0f} ms" for t in self.times]
        out.append(f"{self.rounds} interleaved rounds (medians); a one-token answer costs "
                   f"{self.answer_overhead * 1000:+.0f} ms of wall time over the bare script")
        return out

    def to_json(self) -> dict[str, object]:
        return {"rounds": self.rounds, "answer_overhead_seconds": self.answer_overhead,
                "processes": [{"label": t.label, "wall_seconds": t.wall, "cpu_seconds": t.cpu} for t in self.times]}


def _timed(cmd: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   env=dict(env), check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_startup(commands: Sequence[tuple[str, Sequence[str]]], *, env: Mapping[str, str], rounds: int,
                progress: Callable[[int, int], None] | None = None) -> StartupResult:
    """Time each ``(label, argv)`` ``rounds`` times, interleaved, after one unmeasured warm-up
    round (the first run of anything reads its files from disk)."""
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in commands}
    for k in range(rounds + 1):
        if progress is not None:
            progress(k, rounds + 1)
        for label, cmd in commands:
            measured = _timed(cmd, env)
            if k:
                samples[label].append(measured)
    if progress is not None:
        progress(rounds + 1, rounds + 1)
    return StartupResult(tuple(
        ProcessTime(label, statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
        for label, s in samples.items()), rounds)
