"""The attention cache: what --kv-type q8_0 does to answers, and peak memory by context.

    python benchmarks/kv_memory.py

1. Effect of a q8_0 cache on the built-in model, against f16, in one process:
   next-token agreement and KL divergence over a 3,000-token text of real prose
   (teacher-forced, so every position is compared), and greedy answers to the
   factual questions of benchmarks/answers.py and to a question about a planted
   fact deep in a 3,000-token document.
2. Peak resident memory of a whole `askgpt` process at --ctx 2048, 4096 and 8192
   with a document filling 3/4 of the window, for f16 and q8_0 (the kernel's
   ru_maxrss of each child).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answers import QUESTIONS  # noqa: E402

from askgpt.cli.ask import DEFAULT_SYSTEM  # noqa: E402
from askgpt.runtime.ask import GenerationConfig, ask  # noqa: E402
from askgpt.runtime.engine import EngineConfig  # noqa: E402
from askgpt.runtime.llama_engine import load_llama_engine, sequence_logits  # noqa: E402
from askgpt.runtime.models import builtin_model  # noqa: E402
from askgpt.runtime.needle import haystack  # noqa: E402
from askgpt.runtime.prompt import Document, Request  # noqa: E402
from askgpt.runtime.sampling import SamplingConfig  # noqa: E402

NEEDLE = "The harbour master of Port Ellery is called Wendell Okafor."


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def answer_effect() -> None:
    with load_llama_engine(builtin_model(), EngineConfig(n_ctx=512)) as probe:
        count = lambda s: len(probe.tokenize(s))  # noqa: E731
        prose, _ = haystack(3000, 0.5, NEEDLE, "prose", 1, count)
        doc, n_doc = haystack(3000, 0.7, NEEDLE, "prose", 2, count)
        tokens = probe.tokenize(prose, add_bos=False)[:3500]
    logits, answers = {}, {}
    for kv in ("f16", "q8_0"):
        with load_llama_engine(builtin_model(), EngineConfig(n_ctx=4096, kv_type=kv, all_logits=True)) as engine:
            logits[kv] = log_softmax(sequence_logits(engine, tokens))
        with load_llama_engine(builtin_model(), EngineConfig(n_ctx=4096, kv_type=kv)) as engine:
            greedy = GenerationConfig(48, SamplingConfig(temperature=0))
            answers[kv] = [ask(engine, Request(q, system=DEFAULT_SYSTEM), greedy).text() for q, _ in QUESTIONS]
            answers[kv].append(ask(engine, Request("Who is the harbour master of Port Ellery?", system=DEFAULT_SYSTEM,
                                                   documents=(Document("doc.txt", doc),)), greedy).text())
    p, q = logits["f16"], logits["q8_0"]
    kl = (np.exp(p) * (p - q)).sum(axis=-1)
    top1 = (p.argmax(-1) == q.argmax(-1)).mean()
    print(f"## q8_0 against f16 over {len(tokens):,} tokens of prose (teacher-forced)")
    print(f"next-token top-1 agreement {top1:.4f}; KL mean {kl.mean():.5f}, 99th percentile "
          f"{np.percentile(kl, 99):.5f}, max {kl.max():.4f} nats")
    same = sum(a == b for a, b in zip(answers["f16"], answers["q8_0"], strict=True))
    print(f"greedy answers identical: {same}/{len(answers['f16'])} "
          f"({len(QUESTIONS)} factual questions and one question about a {n_doc:,}-token document)")
    for name, ans in (("f16", answers["f16"][-1]), ("q8_0", answers["q8_0"][-1])):
        print(f"  document answer, {name}: {ans.strip()[:100]!r} (names Okafor: {'Okafor' in ans})")


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd[:6])}...")
    return usage.ru_maxrss / 1024  # KiB on Linux


def memory_table() -> None:
    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or sys.exit("install askgpt first")
    with load_llama_engine(builtin_model(), EngineConfig(n_ctx=512)) as probe:
        count = lambda s: len(probe.tokenize(s))  # noqa: E731
        docs = {ctx: haystack(ctx * 3 // 4, 0.5, NEEDLE, "prose", 3, count)[0] for ctx in (2048, 4096, 8192)}
    print("\n## Peak RSS of a whole askgpt process, document filling 3/4 of the window (-n 32, --strategy stuff)")
    print("| --ctx | f16 cache | q8_0 cache |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "ASKGPT_HOME": str(Path(work) / "home")}
        for ctx, text in docs.items():
            path = Path(work) / f"doc{ctx}.txt"
            path.write_text(text)
            row = []
            for kv in ("f16", "q8_0"):
                cmd = [askgpt, "--ctx", str(ctx), "--kv-type", kv, "--no-cache", "-t", "0", "-n", "32",
                       "--strategy", "stuff", "--read-tokens", str(ctx), "-f", str(path),
                       "Who is the harbour master of Port Ellery?"]
                row.append(f"{peak_rss_mb(cmd, env):,.0f} MB")
            print(f"| {ctx} | {row[0]} | {row[1]} |")


if __name__ == "__main__":
    answer_effect()
    memory_table()
