"""Needle in a haystack, built locally: how well long inputs are used, measured.

The ``exact`` kind (the classic grid): a fact ("The passphrase for the Oslo archive is 4417.") is planted at a depth
of 0-100% in filler of a given size in tokens; the model is asked for it
through the long-context manager, exactly as ``askgpt -f`` would; an answer
counts when it contains the planted value. Two fillers: synthetic sentences,
and real prose (the docstrings of Python's own standard library, which ships
with every Python), since repeated synthetic text makes retrieval easier than
real documents do.

The other kinds (needle_kinds.py) ask in words of their own, with look-alike facts, several
values, two facts at once or a count; they run in prose filler, ``trials`` haystacks per size,
and are scored per value by whole words.
"""

from __future__ import annotations

import importlib
import inspect
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from askgpt.runtime.bench.needle_kinds import CITIES, PLACES, NeedleKind, Probe, make_probe, needed, score
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig
from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document, Request
from askgpt.runtime.system import peak_rss_mb

__all__ = ["CITIES", "PLACES", "Cell", "NeedleResult", "format_grid", "haystack", "plant", "plot_grid", "run_needle"]
_STDLIB = ["os", "re", "json", "collections", "itertools", "functools", "pathlib", "subprocess", "threading",
           "typing", "dataclasses", "argparse", "logging", "csv", "sqlite3", "decimal", "fractions", "statistics",
           "random", "datetime", "calendar", "textwrap", "difflib", "inspect", "ast", "tokenize", "pickle", "shutil",
           "tempfile", "zipfile", "tarfile", "socket", "heapq", "bisect", "struct", "codecs", "string", "enum",
           "contextlib", "abc", "io", "time", "math", "operator", "copy", "pprint", "unittest", "email.message",
           "http.client", "urllib.parse", "xml.dom.minidom", "configparser", "glob", "fnmatch", "hashlib", "hmac",
           "secrets", "uuid", "base64", "binascii", "zlib", "gzip", "bz2", "lzma", "queue", "sched", "signal",
           "platform", "locale", "gettext", "warnings", "weakref", "types", "traceback", "linecache", "pdb"]
_WORDS = ("river town market morning people walked slowly along old stone bridge while merchants called out "
          "prices for bread fish cloth spices children ran past the fountain and a bell rang from the tower "
          "above the square where farmers unloaded carts of apples and grain").split()


@dataclass(frozen=True)
class Cell:
    filler: str
    size: int  # input tokens asked for
    depth: float  # 0..1 (the first planted fact's, for kinds that plant several)
    seed: int
    found: bool  # the answer names every value asked for (and no look-alike's)
    in_context: bool  # every fact the answer needs was in what the model read (the long-context manager's part)
    tokens: int  # input tokens actually built
    seconds: float
    strategy: str
    kind: str = NeedleKind.EXACT.value
    hits: int = 0  # values the answer names (0 if it names a look-alike's value)
    expected: int = 1  # values asked for
    question: str = ""
    answer: str = ""  # the model's answer, to read why a cell failed (in --json)


@dataclass
class NeedleResult:
    model: str
    n_ctx: int
    cells: list[Cell] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def recall(self, filler: str, size: int, depth: float) -> float:
        """The exact kind's grid cell."""
        hits = [c.found for c in self.cells
                if (c.kind, c.filler, c.size, c.depth) == (NeedleKind.EXACT.value, filler, size, depth)]
        return sum(hits) / len(hits) if hits else float("nan")

    def seconds_per_100k(self, filler: str, size: int) -> float:
        cells = [c for c in self.cells if (c.kind, c.filler, c.size) == (NeedleKind.EXACT.value, filler, size)]
        return _per_100k(cells)

    def kind_cells(self, kind: str, size: int) -> list[Cell]:
        return [c for c in self.cells if (c.kind, c.size) == (kind, size)]

    def kind_recall(self, kind: str, size: int) -> float:
        """Values named over values asked, over every haystack of ``kind`` at ``size``."""
        cells = self.kind_cells(kind, size)
        expected = sum(c.expected for c in cells)
        return sum(c.hits for c in cells) / expected if expected else float("nan")

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(c.kind for c in self.cells))

    def sizes(self) -> list[int]:
        return list(dict.fromkeys(c.size for c in self.cells))

    def to_json(self) -> dict[str, object]:
        kinds = {kind: {str(size): {"recall": self.kind_recall(kind, size),
                                    "hits": sum(c.hits for c in self.kind_cells(kind, size)),
                                    "expected": sum(c.expected for c in self.kind_cells(kind, size)),
                                    "runs": len(self.kind_cells(kind, size)),
                                    "seconds_per_100k": _per_100k(self.kind_cells(kind, size))}
                            for size in self.sizes() if self.kind_cells(kind, size)}
                 for kind in self.kinds()}
        return {"model": self.model, "n_ctx": self.n_ctx, "peak_rss_mb": self.peak_rss_mb, "kinds": kinds,
                "cells": [asdict(c) for c in self.cells]}


def _per_100k(cells: Sequence[Cell]) -> float:
    tokens = sum(c.tokens for c in cells)
    return 100_000 * sum(c.seconds for c in cells) / tokens if tokens else float("nan")


@lru_cache(maxsize=1)
def _prose() -> tuple[str, ...]:
    """Paragraphs of real English prose from the standard library's docstrings."""
    paragraphs: list[str] = []
    for name in _STDLIB:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(module) or ""]
        for attr in sorted(vars(module)):
            if not attr.startswith("_"):
                docs.append(inspect.getdoc(getattr(module, attr, None)) or "")
        for doc in docs:
            for para in doc.split("\n\n"):
                text = " ".join(para.split())
                if len(text) > 80 and ">>>" not in text:
                    paragraphs.append(text)
    return tuple(dict.fromkeys(paragraphs))  # unique, in a stable order


def _paragraphs(filler: str, rng: random.Random) -> Iterator[str]:
    if filler == "prose":
        prose = list(_prose())
        rng.shuffle(prose)
        while True:
            yield from prose
    while True:
        yield " ".join(rng.choice(_WORDS) for _ in range(rng.randint(30, 60))).capitalize() + "."


def haystack(size: int, depth: float, needle: str, filler: str, seed: int,
             count: Callable[[str], int]) -> tuple[str, int]:
    """About ``size`` tokens of filler with ``needle`` as a paragraph at ``depth``."""
    return plant(size, [(depth, needle)], filler, seed, count)


def plant(size: int, facts: Sequence[tuple[float, str]], filler: str, seed: int,
          count: Callable[[str], int]) -> tuple[str, int]:
    """About ``size`` tokens of filler with each fact as a paragraph of its own at its depth (0..1)."""
    rng = random.Random(seed)
    paras: list[str] = []
    total = 0
    for para in _paragraphs(filler, rng):
        if total >= size:
            break
        paras.append(para)
        total += count(para) + 1
    # Positions on the filler alone, inserted from the last so earlier positions stay put.
    places = sorted(((round(d * len(paras)), i) for i, (d, _) in enumerate(facts)), reverse=True)
    for position, i in places:
        paras.insert(position, facts[i][1])
    return "\n\n".join(paras), total + sum(count(f) for _, f in facts)


@dataclass(frozen=True)
class _Trial:
    """One haystack to answer: where its facts came from and what it asks."""

    filler: str
    size: int
    depth: float
    seed: int
    probe: Probe


def _trials(kinds: Sequence[NeedleKind], sizes: Sequence[int], depths: Sequence[float], seeds: int,
            fillers: Sequence[str], trials: int) -> Iterator[_Trial]:
    if NeedleKind.EXACT in kinds:  # the grid, as it always was (same seeds, same facts)
        for filler in fillers:
            for size in sizes:
                for depth in depths:
                    for seed in range(seeds):
                        rng = random.Random(f"{filler}-{size}-{depth}-{seed}")
                        yield _Trial(filler, size, depth, seed, make_probe(NeedleKind.EXACT, rng, depth))
    for kind in kinds:
        if kind is NeedleKind.EXACT:
            continue
        for size in sizes:
            for seed in range(trials):  # real prose: repeated synthetic sentences would make it easy
                probe = make_probe(kind, random.Random(f"{kind.value}-{size}-{seed}"), (seed + 0.5) / trials)
                yield _Trial("prose", size, probe.depths[0], seed, probe)


def run_needle(engine: Engine, *, sizes: Sequence[int], depths: Sequence[float], seeds: int,
               fillers: Sequence[str], config: LongContextConfig,
               kinds: Sequence[NeedleKind] = (NeedleKind.EXACT,), trials: int = 4,
               progress: Callable[[int, int], None] | None = None) -> NeedleResult:
    result = NeedleResult(engine.info.name, engine.info.n_ctx)
    lc = LongContext(engine, config)
    # Lists and pairs of values need room to be written out; a single value does not.
    greedy = SamplingConfig(temperature=0)
    short, long = GenerationConfig(48, greedy), GenerationConfig(96, greedy)
    todo = list(_trials(kinds, sizes, depths, seeds, fillers, trials))
    for done, trial in enumerate(todo, 1):
        probe = trial.probe
        text, tokens = plant(trial.size, list(zip(probe.depths, probe.facts, strict=True)), trial.filler,
                             trial.seed, lc.count)
        request = Request(probe.question, documents=(Document("haystack.txt", text),))
        start = time.perf_counter()
        answer, report = lc.answer(request, short if len(probe.answers) == 1 else long)
        hits = score(probe, answer.text())
        read = lc.last_request.documents if lc.last_request is not None else ()
        in_context = all(any(f in d.text for d in read) for f in needed(probe))
        result.cells.append(Cell(trial.filler, trial.size, trial.depth, trial.seed, hits == len(probe.answers),
                                 in_context, tokens, time.perf_counter() - start,
                                 report.strategy.value if report else "stuff", kind=probe.kind.value, hits=hits,
                                 expected=len(probe.answers), question=probe.question,
                                 answer=answer.text().strip()))
        if progress is not None:
            progress(done, len(todo))
    result.peak_rss_mb = peak_rss_mb()
    return result


def format_grid(result: NeedleResult, sizes: Sequence[int], depths: Sequence[float],
                fillers: Sequence[str]) -> str:
    lines = []
    if NeedleKind.EXACT.value in result.kinds():
        for filler in fillers:
            lines.append(f"kind exact, filler: {filler} (recall %, rows: input tokens, columns: depth %)")
            lines.append("tokens  " + " ".join(f"{round(d * 100):>4}" for d in depths) + "   s/100k tokens")
            for size in sizes:
                row = " ".join(f"{round(100 * result.recall(filler, size, d)):>4}" for d in depths)
                lines.append(f"{size:>6}  {row}   {result.seconds_per_100k(filler, size):8.1f}")
            lines.append("")
    lines.extend(_kind_table(result, sizes))
    cells = result.cells
    lines.append(f"answers right: {sum(c.found for c in cells)}/{len(cells)}; facts needed in what the model read: "
                 f"{sum(c.in_context for c in cells)}/{len(cells)}")
    lines.append(f"peak RSS {result.peak_rss_mb:.0f} MB; model {result.model}, window {result.n_ctx}")
    return "\n".join(lines)


def _kind_table(result: NeedleResult, sizes: Sequence[int]) -> list[str]:
    """Per kind and size: values named / values asked (recall %), seconds per 100k input tokens."""
    lines = ["recall by kind (values named / values asked, all fillers), s per 100k tokens",
             f"{'kind':<12}" + "".join(f"{size:>22}" for size in sizes)]
    for kind in result.kinds():
        row = []
        for size in sizes:
            cells = result.kind_cells(kind, size)
            hits, expected = sum(c.hits for c in cells), sum(c.expected for c in cells)
            recall = f"{hits}/{expected} ({round(100 * hits / expected) if expected else 0}%)"
            row.append(f"{recall:>13} {_per_100k(cells):6.1f}s")
        lines.append(f"{kind:<12}" + "".join(f"{r:>22}" for r in row))
    return [*lines, ""]


def plot_grid(result: NeedleResult, sizes: Sequence[int], depths: Sequence[float], fillers: Sequence[str],
              path: str) -> None:
    """The exact kind's heatmap per filler, then recall against input size, one line per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = fillers if NeedleKind.EXACT.value in result.kinds() else []
    fig, axes = plt.subplots(1, len(grids) + 1, figsize=(6 * (len(grids) + 1), 4), squeeze=False)
    for ax, filler in zip(axes[0], grids, strict=False):
        grid = [[result.recall(filler, s, d) for d in depths] for s in sizes]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(depths)), [f"{round(d * 100)}" for d in depths])
        ax.set_yticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_xlabel("needle depth (%)")
        ax.set_ylabel("input tokens")
        ax.set_title(f"recall, exact, {filler} filler")
        fig.colorbar(im, ax=ax)
    lines = axes[0][-1]
    for kind in result.kinds():
        lines.plot(sizes, [result.kind_recall(kind, s) for s in sizes], marker="o", label=kind)
    lines.set_xscale("log")
    lines.minorticks_off()
    lines.set_xticks(sizes, [f"{s:,}" for s in sizes])
    lines.set_ylim(-0.05, 1.05)
    lines.set_xlabel("input tokens")
    lines.set_ylabel("recall (values named / asked)")
    lines.set_title("recall by kind")
    lines.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
