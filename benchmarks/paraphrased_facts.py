"""Paraphrased single facts in long prose, asked through the CLI as a user would, with and
without the copy bias (docs/long-documents.md, item 6 of evidence-first reading).

    python benchmarks/paraphrased_facts.py                 # 8 facts x 27k, 100k x stdin, -f x on, off
    python benchmarks/paraphrased_facts.py --sizes 27000   # one size

Each fact is planted once in prose filler (the needle benchmark's) and asked with a question
that shares no rare word with it; an answer counts when it names the value as a whole word.
The facts were written for this, not drawn from the needle benchmark's templates; the last
four after the copy bias's value was chosen. "off" runs askgpt with `copy_bias = false` in a
config file of its own. Every run starts with an empty vector cache.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from askgpt.runtime.bench.needle import plant
from askgpt.runtime.retrieval.model import shipped_embedder
from askgpt.runtime.store.settings import resolve_paths

# (fact, question, value, depth in the input, filler seed)
FACTS = [
    ("The lighthouse on Skellig Rock was repainted red and white in 1962 by a crew from Dingle.",
     "In what year did workers give the coastal tower its new colours?", "1962", 0.125, 100),
    ("Professor Adaeze Nwosu translated the old Portuguese sea charts into Swahili during her sabbatical.",
     "Into which language did the academic render the ancient maritime maps?", "Swahili", 0.375, 101),
    ("The village pharmacist breeds racing pigeons in a loft above the chemist's shop.",
     "What birds does the man who sells medicine raise?", "pigeons", 0.625, 102),
    ("Uncle Tobias lost his wedding ring while fishing for trout in Lough Corrib.",
     "Where did my relative misplace the band from his marriage?", "Corrib", 0.875, 103),
    ("The beekeeper's daughter, Saoirse Ní Bhriain, restored a harpsichord for the cathedral in Limerick.",
     "Which keyboard instrument did the girl whose father keeps bees repair?", "harpsichord", 0.075, 500),
    ("Every spring the retired astronomer Ignatius Volkov plants tulips along the railway embankment in Pskov.",
     "What flowers does the former stargazer put in the ground each year?", "tulips", 0.325, 501),
    ("The ferry company's founder was born in the fishing village of Kilkieran in 1911.",
     "Where did the man who started the boat business come into the world?", "Kilkieran", 0.575, 502),
    ("A rare Przewalski's horse foal was delivered at the zoo by a vet named Odile Marchetti.",
     "Who helped bring the young animal into the world?", "Marchetti", 0.825, 503),
]


def answer(question: str, path: Path, *, stdin: bool, copy_bias: bool, home: Path) -> str:
    env = {**os.environ, "ASKGPT_HOME": str(home)}
    config = resolve_paths(env).config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("" if copy_bias else "copy_bias = false\n")
    cmd = ["askgpt", "--no-log", question]
    with path.open("rb") as fh:
        done = subprocess.run(cmd if stdin else [*cmd, "-f", str(path)], stdin=fh if stdin else subprocess.DEVNULL,
                              capture_output=True, env=env, check=True)
    return done.stdout.decode("utf-8", errors="replace").strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="27000,100000")
    args = parser.parse_args()
    embedder = shipped_embedder()

    def count(text: str) -> int:
        return len(embedder.tokenize(text))

    named = {True: 0, False: 0}
    total = 0
    with tempfile.TemporaryDirectory() as work:
        for size in (int(s) for s in args.sizes.split(",")):
            for i, (fact, question, value, depth, seed) in enumerate(FACTS):
                path = Path(work) / f"{size}-{i}.txt"
                path.write_text(plant(size, [(depth, fact)], "prose", seed, count)[0])
                for stdin in (True, False):
                    total += 1
                    for copy_bias in (True, False):
                        home = Path(work) / f"home-{size}-{i}-{stdin}-{copy_bias}"  # an empty vector cache
                        text = answer(question, path, stdin=stdin, copy_bias=copy_bias, home=home)
                        hit = re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.I) is not None
                        named[copy_bias] += hit
                        print(f"{size:>7} #{i} {'stdin' if stdin else '-f':5s} copy bias "
                              f"{'on ' if copy_bias else 'off'} {'named' if hit else 'MISSED'}: {text[:110]!r}",
                              flush=True)
    print(f"named: {named[True]}/{total} with the copy bias, {named[False]}/{total} without", file=sys.stderr)


if __name__ == "__main__":
    main()
