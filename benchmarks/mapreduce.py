"""Map-reduce on the built-in model: are facts from every part of a long document kept?

    python benchmarks/mapreduce.py [--tokens 50000]

Ten distinct facts, one planted in each tenth of a document of real prose (the
standard library's docstrings), about 50k tokens; askgpt's map-reduce
strategy summarises it; a fact counts as kept when its distinctive value
appears in the final summary as the user sees it (the model's answer, then the
key sentences quoted from the input). The bar: at least 8 of 10. The part the
model wrote is counted separately.
"""

from __future__ import annotations

import argparse
import random
import time

from askgpt.cli.terminal.render import format_citations
from askgpt.runtime.bench.needle import haystack
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, Strategy
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.models.registry import builtin_model
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Document, Request

FACTS = [
    ("The lighthouse on Kestrel Point was painted red in 1911.", "1911"),
    ("The ferry to Marrow Island costs 14 crowns.", "14 crowns"),
    ("Doctor Alvarez keeps the spare key in the green teapot.", "teapot"),
    ("The annual kite festival is held on the 3rd of May.", "3rd of May"),
    ("The old mill produces 600 sacks of flour a week.", "600 sacks"),
    ("Captain Ilse Brandt commands the ship Northern Wren.", "Northern Wren"),
    ("The village well is 42 metres deep.", "42 metres"),
    ("The bakery's secret ingredient is cardamom.", "cardamom"),
    ("The observatory telescope weighs 9 tonnes.", "9 tonnes"),
    ("The choir has exactly 27 members.", "27 members"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args()
    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=args.ctx))
    lc = LongContext(engine, LongContextConfig(strategy=Strategy.MAP_REDUCE))
    part = args.tokens // len(FACTS)
    parts = []
    for k, (fact, _) in enumerate(FACTS):
        text, _ = haystack(part, random.Random(k).random(), fact, "prose", seed=k, count=lc.count)
        parts.append(text)
    document = "\n\n".join(parts)
    request = Request("Summarize the document. List every specific fact it states: names, numbers and dates.",
                      documents=(Document("town.txt", document),))
    start = time.perf_counter()
    answer, report = lc.answer(request, GenerationConfig(400, SamplingConfig(temperature=0)))
    written = answer.text()
    seconds = time.perf_counter() - start
    assert report is not None
    # What the user sees: the model's answer, then the key sentences quoted from the input.
    summary = written + format_citations(report.quotes)
    kept = [value for _, value in FACTS if value.lower() in summary.lower()]
    by_model = [value for _, value in FACTS if value.lower() in written.lower()]
    print(report.line())
    print(report.stats_line())
    print(f"{seconds:.1f} s for {report.doc_tokens:,} tokens ({100_000 * seconds / report.doc_tokens:.1f} s per 100k)")
    print(f"facts in the final summary: {len(kept)}/10 {kept} (bar: 8/10)")
    print(f"  of which in the part the model wrote: {len(by_model)}/10 {by_model}")
    print("--- summary ---")
    print(summary)
    engine.close()


if __name__ == "__main__":
    main()
