"""Needle in a haystack, built locally: how well long inputs are used, measured.

A fact ("The passphrase for the Oslo archive is 4417.") is planted at a depth
of 0-100% in filler of a given size in tokens; the model is asked for it
through the long-context manager, exactly as ``askgpt -f`` would; an answer
counts when it contains the planted value. Two fillers: synthetic sentences,
and real prose (the docstrings of Python's own standard library, which ships
with every Python), since repeated synthetic text makes retrieval easier than
real documents do.
"""

from __future__ import annotations

import importlib
import inspect
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from askgpt.runtime.documents.strategies import LongContext, LongContextConfig
from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document, Request
from askgpt.runtime.system import peak_rss_mb

CITIES = ["Oslo", "Lima", "Cairo", "Perth", "Quito", "Riga", "Hanoi", "Dakar", "Sofia", "Tunis", "Accra", "Minsk"]
PLACES = ["archive", "vault", "observatory", "harbour office", "library", "greenhouse"]
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
    depth: float  # 0..1
    seed: int
    found: bool  # the answer contains the planted value
    in_context: bool  # the needle was in what the model read (the long-context manager's part)
    tokens: int  # input tokens actually built
    seconds: float
    strategy: str


@dataclass
class NeedleResult:
    model: str
    n_ctx: int
    cells: list[Cell] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def recall(self, filler: str, size: int, depth: float) -> float:
        hits = [c.found for c in self.cells if (c.filler, c.size, c.depth) == (filler, size, depth)]
        return sum(hits) / len(hits) if hits else float("nan")

    def seconds_per_100k(self, filler: str, size: int) -> float:
        cells = [c for c in self.cells if (c.filler, c.size) == (filler, size)]
        tokens = sum(c.tokens for c in cells)
        return 100_000 * sum(c.seconds for c in cells) / tokens if tokens else float("nan")

    def to_json(self) -> dict[str, object]:
        return {"model": self.model, "n_ctx": self.n_ctx, "peak_rss_mb": self.peak_rss_mb,
                "cells": [asdict(c) for c in self.cells]}


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
    rng = random.Random(seed)
    paras: list[str] = []
    total = 0
    for para in _paragraphs(filler, rng):
        if total >= size:
            break
        paras.append(para)
        total += count(para) + 1
    paras.insert(round(depth * len(paras)), needle)
    return "\n\n".join(paras), total + count(needle)


def run_needle(engine: Engine, *, sizes: Sequence[int], depths: Sequence[float], seeds: int,
               fillers: Sequence[str], config: LongContextConfig,
               progress: Callable[[int, int], None] | None = None) -> NeedleResult:
    result = NeedleResult(engine.info.name, engine.info.n_ctx)
    lc = LongContext(engine, config)
    gen = GenerationConfig(48, SamplingConfig(temperature=0))
    total = len(sizes) * len(depths) * seeds * len(fillers)
    done = 0
    for filler in fillers:
        for size in sizes:
            for depth in depths:
                for seed in range(seeds):
                    rng = random.Random(f"{filler}-{size}-{depth}-{seed}")
                    city, place, value = rng.choice(CITIES), rng.choice(PLACES), str(rng.randint(1000, 9999))
                    needle = f"The passphrase for the {city} {place} is {value}."
                    text, tokens = haystack(size, depth, needle, filler, seed, lc.count)
                    request = Request(f"What is the passphrase for the {city} {place}?",
                                      documents=(Document("haystack.txt", text),))
                    start = time.perf_counter()
                    answer, report = lc.answer(request, gen)
                    found = value in answer.text()
                    read = lc.last_request.documents if lc.last_request is not None else ()
                    in_context = any(needle in d.text for d in read)
                    result.cells.append(Cell(filler, size, depth, seed, found, in_context, tokens,
                                             time.perf_counter() - start,
                                             report.strategy.value if report else "stuff"))
                    done += 1
                    if progress is not None:
                        progress(done, total)
    result.peak_rss_mb = peak_rss_mb()
    return result


def format_grid(result: NeedleResult, sizes: Sequence[int], depths: Sequence[float],
                fillers: Sequence[str]) -> str:
    lines = []
    for filler in fillers:
        lines.append(f"filler: {filler} (recall %, rows: input tokens, columns: depth %)")
        lines.append("tokens  " + " ".join(f"{round(d * 100):>4}" for d in depths) + "   s/100k tokens")
        for size in sizes:
            row = " ".join(f"{round(100 * result.recall(filler, size, d)):>4}" for d in depths)
            lines.append(f"{size:>6}  {row}   {result.seconds_per_100k(filler, size):8.1f}")
        lines.append("")
    cells = result.cells
    lines.append(f"answers right: {sum(c.found for c in cells)}/{len(cells)}; needle in what the model read: "
                 f"{sum(c.in_context for c in cells)}/{len(cells)}")
    lines.append(f"peak RSS {result.peak_rss_mb:.0f} MB; model {result.model}, window {result.n_ctx}")
    return "\n".join(lines)


def plot_grid(result: NeedleResult, sizes: Sequence[int], depths: Sequence[float], fillers: Sequence[str],
              path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fillers), figsize=(6 * len(fillers), 4), squeeze=False)
    for ax, filler in zip(axes[0], fillers, strict=True):
        grid = [[result.recall(filler, s, d) for d in depths] for s in sizes]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(depths)), [f"{round(d * 100)}" for d in depths])
        ax.set_yticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_xlabel("needle depth (%)")
        ax.set_ylabel("input tokens")
        ax.set_title(f"recall, {filler} filler")
    fig.colorbar(im, ax=axes[0].tolist())
    fig.savefig(path, dpi=120, bbox_inches="tight")
