"""Why prompt-lookup decoding is neither byte-identical nor 1.5x here (docs/performance-and-benchmarks.md).

    python benchmarks/batch_numerics.py

1. Logits of the same 8 tokens read one at a time (as plain decoding does) and in one
   batch (as a speculative step checks its guesses), after prefixes of several lengths:
   the largest difference per position.
2. Time of one decoding step by how many tokens it reads (median of 15).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from askgpt.runtime.bench.needle import haystack
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.models.registry import builtin_model


def main() -> None:
    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048))
    native = engine.native
    llm = native.llm
    text, _ = haystack(1200, 0.5, "The harbour master is Wendell Okafor.", "prose", 0,
                       lambda s: len(engine.tokenize(s)))
    ids = engine.tokenize(text, add_bos=False)

    def logits(i: int) -> np.ndarray:
        return native.logits(i).copy()

    def restart(prefix: int) -> None:
        llm.reset()
        llm.eval([])
        llm.eval(ids[:prefix])

    print("## 1. Largest logit difference, one token at a time vs one batch of 8")
    worst = 0.0
    for prefix in (10, 12, 16, 31, 32, 33, 100, 256, 300):
        restart(prefix)
        single = []
        for token in ids[prefix:prefix + 8]:
            llm.eval([token])
            single.append(logits(-1))
        restart(prefix)
        native.decode_tokens(ids[prefix:prefix + 8])
        diffs = [float(np.abs(single[i] - logits(i)).max()) for i in range(8)]
        worst = max(worst, *diffs)
        print(f"prefix {prefix:4d}: " + " ".join(f"{d:.2f}" for d in diffs))
    print(f"largest: {worst:.2f}")

    print("\n## 2. One decoding step by tokens read (median of 15)")
    restart(500)
    for n in (1, 2, 4, 8, 16):
        times = []
        for _ in range(15):
            start = time.perf_counter()
            native.decode_tokens(ids[500:500 + n])
            times.append(time.perf_counter() - start)
            llm.n_tokens = 500
            llm.eval([])
        med = statistics.median(times) * 1000
        print(f"{n:2d} tokens: {med:6.2f} ms per step, {med / n:5.2f} ms per token")
    engine.close()


if __name__ == "__main__":
    main()
