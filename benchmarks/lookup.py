"""Prompt-lookup decoding on the built-in model: speed and sameness, by task.

    python benchmarks/lookup.py [--rounds 3] [--tokens 200]

Greedy answers (what --lookup affects) to tasks whose answers copy the input
(extraction from a document, repeating a list, editing code) and to tasks that
do not (a poem, an explanation). For each draft length, decode tokens/s (median
over interleaved rounds) against plain decoding, and whether the answer is the
same text as plain decoding's. The issue's bar: >= 1.5x decode tokens/s on
extraction with the same output.
"""

from __future__ import annotations

import argparse
import statistics

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.models.registry import builtin_model
from askgpt.runtime.prompting.generate import GenerationConfig, ask
from askgpt.runtime.prompting.request import Document, Request

REPORT = "\n".join(f"{day}: the {depot} depot shipped {n} crates of {goods}." for day, depot, n, goods in [
    ("Monday", "north", 120, "apples"), ("Monday", "river", 45, "salt"), ("Tuesday", "north", 80, "flour"),
    ("Tuesday", "hill", 64, "wool"), ("Wednesday", "river", 99, "apples"), ("Wednesday", "north", 31, "salt"),
    ("Thursday", "hill", 12, "flour"), ("Thursday", "north", 140, "wool"), ("Friday", "river", 77, "flour"),
    ("Friday", "north", 58, "apples"), ("Saturday", "hill", 23, "salt"), ("Saturday", "north", 66, "flour"),
])
CODE = '''def total_price(items, tax_rate):
    subtotal = 0
    for item in items:
        subtotal += item.price * item.quantity
    tax = subtotal * tax_rate
    return subtotal + tax


def cheapest(items):
    best = None
    for item in items:
        if best is None or item.price < best.price:
            best = item
    return best
'''

TASKS = {
    "extract: lines about the north depot": (
        "copy", Request("Copy, word for word, every line of the report about the north depot.",
                        documents=(Document("report.txt", REPORT),))),
    "extract: repeat the report": (
        "copy", Request("Repeat the report line by line.", documents=(Document("report.txt", REPORT),))),
    "code edit: rename items to products": (
        "copy", Request("Rewrite this code with the variable items renamed to products.",
                        documents=(Document("shop.py", CODE),))),
    "no copying: poem": ("free", Request("Write a poem about autumn.")),
    "no copying: explanation": ("free", Request("Explain how a bicycle works.")),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--drafts", default="0,4,8,16")
    args = parser.parse_args()
    drafts = [int(x) for x in args.drafts.split(",")]
    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=4096))
    speed: dict[tuple[str, int], list[float]] = {}
    text: dict[tuple[str, int], str] = {}
    for _ in range(args.rounds):
        for name, (_, request) in TASKS.items():
            for k in drafts:
                answer = ask(engine, request, GenerationConfig(args.tokens, SamplingConfig(temperature=0,
                                                                                          lookup_tokens=k)))
                text[name, k] = answer.text()
                assert answer.stats is not None
                speed.setdefault((name, k), []).append(answer.stats.tokens_per_second)
    print(f"{args.rounds} interleaved rounds, decode tokens/s medians; ratio to plain; same text as plain")
    header = "| task | plain | " + " | ".join(f"draft {k}" for k in drafts if k) + " |"
    print(header)
    print("|---" * (1 + len(drafts)) + "|")
    for name in TASKS:
        plain = statistics.median(speed[name, 0])
        cells = [f"{plain:.1f}"]
        for k in drafts:
            if k:
                s = statistics.median(speed[name, k])
                cells.append(f"{s:.1f} ({s / plain:.2f}x, {'same' if text[name, k] == text[name, 0] else 'differs'})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    engine.close()


if __name__ == "__main__":
    main()
