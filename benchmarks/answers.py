"""Answer quality and speed of the built-in model under askgpt's default prompt.

    python benchmarks/answers.py

Greedy answers to short factual questions, scored by whether the expected
word appears, for: no system prompt (the model template's own default) and
askgpt's default system prompt. This is why askgpt sends a default system
prompt (see DEFAULT_SYSTEM in cli/ask.py). Also prints load time and
generation speed, measured in this one run.
"""

from __future__ import annotations

import re
import time

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.models.registry import builtin_model
from askgpt.runtime.prompting.generate import GenerationConfig, ask
from askgpt.runtime.prompting.request import DEFAULT_SYSTEM, Request

QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"),
    ("How many days are in a week?", "seven|7"),
    ("What color is the sky on a clear day?", "blue"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("What is the chemical symbol for water?", "H2O"),
]


def main() -> None:
    start = time.perf_counter()
    engine = load_llama_engine(builtin_model(), EngineConfig())
    print(f"load: {time.perf_counter() - start:.2f} s (n_ctx {engine.info.n_ctx})")
    config = GenerationConfig(max_tokens=48, sampling=SamplingConfig(temperature=0))
    for label, system in [("template default (no -s)", None), ("askgpt default system", DEFAULT_SYSTEM)]:
        score, speeds = 0, []
        for question, expected in QUESTIONS:
            answer = ask(engine, Request(question, system=system), config)
            text = answer.text()
            score += bool(re.search(expected, text, re.I))
            if answer.stats and answer.stats.tokens_per_second:
                speeds.append(answer.stats.tokens_per_second)
        print(f"{label:28s} correct {score}/{len(QUESTIONS)}   "
              f"generation {sum(speeds) / max(len(speeds), 1):.0f} tokens/s")
    engine.close()


if __name__ == "__main__":
    main()
