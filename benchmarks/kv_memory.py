"""The attention cache: what --kv-type q8_0 does to answers, and peak memory by context.

    python benchmarks/kv_memory.py

askgpt turns flash attention on only for q8_0 (llama.cpp stores a quantized V cache only
with it), so comparing askgpt's f16 with its q8_0 would mix two changes. Every comparison
here is like for like: q8_0 against f16 *with flash attention on as well*, so only the
cache type differs; askgpt's default f16 (flash attention off) is shown beside it.

1. Effect of a q8_0 cache on the built-in model, against f16, in one process:
   next-token agreement and KL divergence over a 3,000-token text of real prose
   (teacher-forced, so every position is compared), and greedy answers to the
   factual questions of benchmarks/answers.py and to a question about a planted
   fact deep in a 3,000-token document.
2. Peak resident memory of a whole askgpt process at --ctx 2048, 4096 and 8192
   with a document filling 3/4 of the window, for f16 (flash attention off and on)
   and q8_0 (the kernel's ru_maxrss of each child).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answers import QUESTIONS  # noqa: E402

from askgpt.runtime.bench.needle import haystack  # noqa: E402
from askgpt.runtime.engine.base import EngineConfig  # noqa: E402
from askgpt.runtime.engine.llama.engine import load_llama_engine  # noqa: E402
from askgpt.runtime.engine.llama.tools import forced_flash_attention, sequence_logits  # noqa: E402
from askgpt.runtime.engine.sampling import SamplingConfig  # noqa: E402
from askgpt.runtime.models.registry import builtin_model  # noqa: E402
from askgpt.runtime.prompting.generate import GenerationConfig, ask  # noqa: E402
from askgpt.runtime.prompting.request import (  # noqa: E402
    DEFAULT_SYSTEM,  # noqa: E402
    Document,
    Request,
)

NEEDLE = "The harbour master of Port Ellery is called Wendell Okafor."
# (label, --kv-type, flash attention): askgpt's two settings and the like-for-like f16.
SETUPS = (("f16", "f16", False), ("f16+fa", "f16", True), ("q8_0", "q8_0", True))

# A whole askgpt process with llama.cpp's flash attention forced on or off (argv[1]).
FLASH_CHILD = """
import sys
from askgpt.runtime.engine.llama.tools import forced_flash_attention
flash = sys.argv[1] == "on"  # read now: argv is replaced below
sys.argv = ["askgpt", *sys.argv[2:]]
from askgpt.cli.entry import main
with forced_flash_attention(flash):
    main()
"""


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
    for label, kv, flash in SETUPS:
        with forced_flash_attention(flash):
            with load_llama_engine(builtin_model(), EngineConfig(n_ctx=4096, kv_type=kv, all_logits=True)) as engine:
                logits[label] = log_softmax(sequence_logits(engine, tokens))
            with load_llama_engine(builtin_model(), EngineConfig(n_ctx=4096, kv_type=kv)) as engine:
                greedy = GenerationConfig(48, SamplingConfig(temperature=0))
                answers[label] = [ask(engine, Request(q, system=DEFAULT_SYSTEM), greedy).text() for q, _ in QUESTIONS]
                answers[label].append(ask(engine, Request("Who is the harbour master of Port Ellery?",
                                                          system=DEFAULT_SYSTEM, documents=(Document("doc.txt", doc),)),
                                          greedy).text())
    for base, other, what in (("f16+fa", "q8_0", "q8_0 against f16, both with flash attention (like for like)"),
                              ("f16", "f16+fa", "f16 with flash attention against f16 without (askgpt's default)")):
        p, q = logits[base], logits[other]
        kl = (np.exp(p) * (p - q)).sum(axis=-1)
        top1 = (p.argmax(-1) == q.argmax(-1)).mean()
        print(f"## {what}, over {len(tokens):,} tokens of prose (teacher-forced)")
        print(f"next-token top-1 agreement {top1:.4f}; KL mean {kl.mean():.5f}, 99th percentile "
              f"{np.percentile(kl, 99):.5f}, max {kl.max():.4f} nats")
        same = sum(a == b for a, b in zip(answers[base], answers[other], strict=True))
        print(f"greedy answers identical: {same}/{len(answers[base])} "
              f"({len(QUESTIONS)} factual questions and one question about a {n_doc:,}-token document)\n")
    for label, _, _ in SETUPS:
        ans = answers[label][-1]
        print(f"  document answer, {label}: {ans.strip()[:100]!r} (names Okafor: {'Okafor' in ans})")


def peak_rss_mb(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            err.seek(0)
            sys.exit(f"failed: {' '.join(cmd[3:])}: {err.read().decode(errors='replace').strip()[-500:]}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def memory_table() -> None:
    with load_llama_engine(builtin_model(), EngineConfig(n_ctx=512)) as probe:
        count = lambda s: len(probe.tokenize(s))  # noqa: E731
        docs = {ctx: haystack(ctx * 3 // 4, 0.5, NEEDLE, "prose", 3, count)[0] for ctx in (2048, 4096, 8192)}
    print("\n## Peak RSS of a whole askgpt process, document filling 3/4 of the window (-n 32, --strategy stuff)")
    print("| --ctx | f16 cache (askgpt's default: no flash attention) | f16 cache, flash attention | q8_0 cache "
          "(flash attention) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "ASKGPT_HOME": str(Path(work) / "home")}
        for ctx, text in docs.items():
            path = Path(work) / f"doc{ctx}.txt"
            path.write_text(text)
            row = []
            for _, kv, flash in SETUPS:
                # Run from an empty folder: the checkout's root would shadow the installed askgpt.
                cmd = [sys.executable, "-c", FLASH_CHILD, "on" if flash else "off", "--ctx", str(ctx), "--kv-type",
                       kv, "--no-cache", "-t", "0", "-n", "32", "--strategy", "stuff", "--read-tokens", str(ctx),
                       "-f", str(path), "Who is the harbour master of Port Ellery?"]
                row.append(f"{peak_rss_mb(cmd, env, cwd=work):,.0f} MB")
            print(f"| {ctx} | {' | '.join(row)} |")


if __name__ == "__main__":
    if "--memory-only" not in sys.argv:
        answer_effect()
    memory_table()
