"""Label answers, example selection and calibration on the built-in model.

    python benchmarks/icl_sentiment.py            # the table in docs/in-context-learning.md
    python benchmarks/icl_sentiment.py --write DIR  # also write DIR/test.jsonl and DIR/pool.jsonl

A small sentiment set of askgpt's own making: 24 test sentences and a separate pool of
20 examples (balanced, mixed topics). Each setting goes through the same runtime calls as
`askgpt ask --labels positive,negative [--examples POOL --shots K --select S] [--calibrate]`
(runtime.icl.options.plan_request and label_answer), so the table is what the CLI answers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.icl.options import IclOptions, label_answer, plan_request
from askgpt.runtime.models.registry import builtin_model
from askgpt.runtime.prompting.request import Example, Request

# askgpt's built-in classify template's wording, with the two labels.
SYSTEM = "Classify the sentiment of the user's text. Reply with exactly one word: positive or negative."
LABELS = ("positive", "negative")

TEST = [
    ("The soup was warm, fresh and full of flavour.", "positive"),
    ("My new headphones broke after two days.", "negative"),
    ("The hotel staff went out of their way to help us.", "positive"),
    ("The train was late again and nobody told us why.", "negative"),
    ("This novel kept me reading until three in the morning.", "positive"),
    ("The app crashes every time I open the camera.", "negative"),
    ("Our guide was funny and knew everything about the old town.", "positive"),
    ("The customer service line kept me on hold for an hour.", "negative"),
    ("I am thrilled with how the garden turned out this spring.", "positive"),
    ("The paint started peeling a week after they finished.", "negative"),
    ("What a lovely surprise to find the bakery open on Sunday.", "positive"),
    ("The seats were cramped and the film was boring.", "negative"),
    ("The repair was quick, cheap and done right the first time.", "positive"),
    ("I regret buying this blender; it leaks everywhere.", "negative"),
    ("The concert was the best night out we have had in years.", "positive"),
    ("The room smelled of smoke and the sheets were stained.", "negative"),
    ("Her lecture made a hard topic feel simple and exciting.", "positive"),
    ("The package arrived crushed and half the parts were missing.", "negative"),
    ("This little laptop is fast, light and the battery lasts all day.", "positive"),
    ("The waiter was rude and the bill was wrong.", "negative"),
    ("The kids loved the museum and want to go back.", "positive"),
    ("I waited three weeks for a refund that never came.", "negative"),
    ("The new update made everything smoother and easier to use.", "positive"),
    ("The jacket fell apart in the first rain.", "negative"),
]

POOL = [
    ("I really enjoyed the pasta at that place.", "positive"),
    ("The battery died before lunch, what a waste of money.", "negative"),
    ("The teacher was patient and kind with every student.", "positive"),
    ("The bus driver shouted at an old man for no reason.", "negative"),
    ("This camera takes sharp, beautiful photos even at night.", "positive"),
    ("The show was dull and far too long.", "negative"),
    ("We had a wonderful week at the lake.", "positive"),
    ("The shoes hurt my feet from the very first step.", "negative"),
    ("The plumber arrived on time and fixed the leak in minutes.", "positive"),
    ("The website is confusing and checkout keeps failing.", "negative"),
    ("A charming little café with great coffee.", "positive"),
    ("The printer jams on every other page.", "negative"),
    ("The film's ending made me smile for days.", "positive"),
    ("Our flight was cancelled and the airline offered nothing.", "negative"),
    ("The new park is clean, green and full of happy families.", "positive"),
    ("The noise from the street kept us awake all night.", "negative"),
    ("Setting up the router took two minutes, brilliant.", "positive"),
    ("The salad was wilted and the bread was stale.", "negative"),
    ("My sister's band played a fantastic set on Friday.", "positive"),
    ("The course was a mess and the exercises were full of mistakes.", "negative"),
]


def accuracy(engine, options: IclOptions, system: str) -> int:
    pool = tuple(Example(i, o) for i, o in POOL)
    right = 0
    for sentence, label in TEST:
        examples = pool if options.shots is not None else ()
        chosen = plan_request(Request(sentence, system=system, examples=examples), options)
        answer = label_answer(engine, chosen.request, chosen.labels or (), calibrate=options.calibrate)
        right += answer.text() == label
    return right


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", type=Path, help="write test.jsonl and pool.jsonl into this folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--system", default=SYSTEM)
    args = parser.parse_args()
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, rows in (("test", TEST), ("pool", POOL)):
            (args.write / f"{name}.jsonl").write_text(
                "".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows))
    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048))
    labels = ",".join(LABELS)
    print(f"system: {args.system}")
    print(f"{'setting':44s} {'plain':>6s} {'calibrated':>10s}")
    settings = [("zero-shot", IclOptions.of(labels=labels))]
    for k in args.shots:
        for how in ("random", "similar", "diverse"):
            settings.append((f"--shots {k} --select {how}",
                             IclOptions.of(labels=labels, shots=k, select=how, seed=args.seed)))
    for name, options in settings:
        start = time.perf_counter()
        plain = accuracy(engine, options, args.system)
        cal = accuracy(engine, IclOptions.of(labels=labels, shots=options.shots, select=options.select,
                                             seed=options.seed, calibrate=True), args.system)
        print(f"{name:44s} {plain:>3d}/24 {cal:>7d}/24   ({time.perf_counter() - start:.1f}s)", flush=True)
    engine.close()


if __name__ == "__main__":
    main()
