"""Answers about photos, right or wrong: the built-in model on a labelled set (tests/labelled_photos.py).

    python benchmarks/image_answers.py [--json out.json] [--model NAME]

Needs the test extra (scikit-image, matplotlib). Each photo gets a neutral file name; each
question is asked through the Python API (``Assistant.ask(question, images=[photo])``,
greedy, 48 tokens) and scored by whole words. Also reported: whether any answer to
"Describe this picture." carries the block's machinery (a percentage, a pixel size, an
image format's name), and the image time to first token (from the call to the first
piece of the answer: loading and reading the image, encoding, the prompt), median over the
set. The model loads once, before the first timed question.

To compare with an older checkout, run this file with that checkout first on PYTHONPATH
(the API it uses, ``Assistant.ask(..., images=..., temperature=..., max_tokens=...)``, is
the same since the Python API exists).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from labelled_photos import DESCRIBE, MACHINERY, build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the per-question results here")
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="askgpt-photos-"))
    os.environ["ASKGPT_HOME"] = str(work / "home")  # no user log, a fresh cache: first-use costs are counted
    from askgpt import Assistant

    rows = []
    with Assistant(args.model) as assistant:
        assistant.ask("Say hi.", max_tokens=1, temperature=0).text()  # load the model before timing
        for case, path in build(work / "photos"):
            started = time.perf_counter()
            response = assistant.ask(case.question, images=[str(path)], temperature=0, max_tokens=args.tokens)
            first = None
            pieces = []
            for piece in response:
                if first is None:
                    first = time.perf_counter() - started
                pieces.append(piece)
            answer = "".join(pieces).strip()
            rows.append({"photo": case.name, "file": path.name, "topic": case.topic, "question": case.question,
                         "right": case.right(answer), "machinery": bool(MACHINERY.search(answer))
                         if case.question == DESCRIBE else None,
                         "ttft_seconds": first, "answer": answer})
            mark = "right" if rows[-1]["right"] else "WRONG"
            print(f"{mark:5} | {case.topic:8} | {case.name:26} | {case.question:38} | {answer[:110]!r}", flush=True)
    by_topic: dict[str, list[bool]] = {}
    for row in rows:
        by_topic.setdefault(row["topic"], []).append(row["right"])
    print()
    print(f"right: {sum(r['right'] for r in rows)} of {len(rows)}")
    for topic, marks in by_topic.items():
        print(f"  {topic:8} {sum(marks)} of {len(marks)}")
    described = [r for r in rows if r["machinery"] is not None]
    print(f"descriptions with a percentage, pixel size or format name: "
          f"{sum(r['machinery'] for r in described)} of {len(described)}")
    ttfts = [r["ttft_seconds"] for r in rows if r["ttft_seconds"] is not None]
    print(f"image time to first token: median {statistics.median(ttfts):.2f} s "
          f"(min {min(ttfts):.2f}, max {max(ttfts):.2f}) over {len(ttfts)} questions")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
