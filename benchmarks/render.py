"""Answer speed on a terminal against a pipe: what rendering Markdown costs.

    python benchmarks/render.py [--rounds 3] [--tokens 1000 4000] [--rate 125] [--emulate]
    python benchmarks/render.py --model [--rounds 3] [--tokens 1000]

By default the model is a stand-in, so that rendering is measured apart from the
model's speed: the real CLI (argument parsing, the answer loop, the renderer in
cli/terminal/render.py and cli/terminal/markdown_stream.py, --stats) runs on an engine that
streams a fixed Markdown answer (headings, paragraphs, bullet lists, long
numbered lists, code blocks) cut into word-sized tokens (~4 characters),
sleeping 1/RATE s before each token as a model producing RATE tokens/s would.
Each case runs once on a 120x40 pseudo-terminal (rendered with rich) and once
piped (plain text), in turns, every case once per round; the tokens/s that
--stats reports are compared within the run. The bar: terminal >= 0.95x
piped. The child also reports the time the answer spent in the sink
(rendering and writing, the model's time apart): the terminal's minus the
pipe's is the pure rendering cost.

The pseudo-terminal is drained without emulating it (a user's terminal does
that work in its own process); ``--emulate`` feeds the output through pyte as
the terminal tests do. ``--model`` times the built-in model's own greedy answer
instead (model speed and rendering together, as a user sees them). Needs the
test extra (pyte): pip install ".[test]".
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

STATS = re.compile(rb"answer: (\d+) tokens, ([\d.]+) tokens/s")
SINK = re.compile(rb"in the sink: ([\d.]+) ms")
PROMPT = "Write a detailed markdown guide with headings and bullet lists on how to learn Python."

TOPICS = ["variables", "functions", "loops", "classes", "modules", "errors", "files", "testing",
          "packaging", "typing", "iterators", "decorators", "context managers", "recursion", "strings",
          "dictionaries", "sets", "comprehensions", "generators", "async code"]


def answer_text(n_sections: int) -> str:
    """A guide as a small model writes one: for each topic a heading, a paragraph with
    **bold** and `code`, a bullet list, and now and then a code block or a long numbered list."""
    parts = ["# Learning Python, step by step", "",
             "Python is a friendly language for beginners and a powerful one for experts. "
             "This guide walks through the main ideas in the order most people meet them.", ""]
    for i in range(n_sections):
        topic = TOPICS[i % len(TOPICS)]
        parts += [f"## {i + 1}. Understanding {topic}", "",
                  f"Once you are comfortable with the basics, **{topic}** are the next thing to learn. "
                  f"Start with small examples in the interpreter, read the `{topic.split()[0]}` section of "
                  f"the tutorial, and write a short script of your own that uses them every day.", ""]
        parts += [f"- Read the official documentation on {topic} and try each example yourself.",
                  f"- Write three tiny programs that use {topic}, then explain them to a friend.",
                  "- Keep a notebook of mistakes you made and how you fixed them.",
                  f"- Look at how popular libraries use {topic} in real code.", ""]
        if i % 3 == 1:
            parts += ["```python", f"def demo_{i}(items):", f"    \"\"\"Show {topic} on a list.\"\"\"",
                      "    total = 0", "    for item in items:", "        total += len(str(item))",
                      "    return total", "", f"print(demo_{i}(['a', 'bb', 'ccc']))", "```", ""]
        if i % 4 == 2:  # a long numbered list: one block (rich pads its numbers) that grows for a while
            tips = ["Type the examples by hand instead of copying them", "Change one thing at a time",
                    "Predict the result before running the code", "Commit your practice scripts to a repository",
                    f"Read other people's code that uses {topic}", "Write a test for each function you write"]
            for k in range(10 + 2 * i):
                parts.append(f"{k + 1}. **{tips[k % len(tips)]}**: practise {topic} this way for a week.")
                if k % 3 == 0:
                    parts.append(" " * len(f"{k + 1}. ") + f"- Note what surprised you about {topic}.")
            parts.append("")
        parts += [f"With practice, {topic} will soon feel natural, and you will reach for them "
                  "without thinking twice.", ""]
    return "\n".join(parts)


# Word-sized pieces, the way a BPE tokenizer cuts English and code: a word with its
# leading space, punctuation runs, newlines, indentation; long words in chunks.
PIECE = re.compile(r" ?[A-Za-z]{1,7}| ?\d{1,3}| ?[^\sA-Za-z\d]{1,2}|\n|[ \t]+")


def pieces(n_tokens: int) -> list[str]:
    sections = 4
    while True:
        found = PIECE.findall(answer_text(sections))
        if len(found) >= n_tokens:
            return found[:n_tokens]
        sections *= 2


def child(argv: Sequence[str]) -> None:
    """Run the real CLI on a stand-in engine: ``--child PIECES_FILE RATE askgpt-args...``."""
    import atexit
    import json

    from fakes import ScriptedEngine, ScriptedFactory

    from askgpt.cli.app import create_app
    from askgpt.cli.terminal.markdown_stream import StreamingMarkdown
    from askgpt.cli.terminal.render import PlainSink
    from askgpt.runtime.engine.base import PromptPart
    from askgpt.runtime.engine.sampling import SamplingConfig

    # The time the answer spends in the sink (rendering and writing), apart from the model's;
    # finish() (the rest of the answer, drawn after the last token) included.
    spent = [0.0]

    def timed(method: Any) -> Any:
        def wrapper(self: Any, *args: Any) -> None:
            start = time.perf_counter()
            method(self, *args)
            spent[0] += time.perf_counter() - start
        return wrapper

    for sink in (PlainSink, StreamingMarkdown):
        sink.write = timed(sink.write)  # type: ignore[method-assign]
        sink.finish = timed(sink.finish)  # type: ignore[method-assign]
    atexit.register(lambda: sys.stderr.write(f"in the sink: {spent[0] * 1000:.1f} ms\n"))

    path, rate, *args = argv
    answer = json.loads(Path(path).read_text(encoding="utf-8"))
    wait = 1.0 / float(rate) if float(rate) > 0 else 0.0
    table = [p.encode("utf-8") for p in answer]

    class PieceEngine(ScriptedEngine):
        def token_bytes(self, token: int) -> bytes:
            return table[token]

        def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
            for i in range(len(table)):
                # The model's time per token, counted from when the consumer (the renderer)
                # hands back control: rendering time adds to it, as it does with llama.cpp.
                if wait:
                    time.sleep(wait)
                yield i

    create_app(ScriptedFactory(PieceEngine()))(list(args), prog_name="askgpt")


def speed(stderr: bytes) -> tuple[float, float]:
    """tokens/s from --stats, and the ms spent in the sink (nan for the real model)."""
    match = STATS.search(stderr)
    if match is None:
        sys.exit(f"no stats line in: {stderr.decode(errors='replace')}")
    sink = SINK.search(stderr)
    return float(match.group(2)), float(sink.group(1)) if sink else float("nan")


def run_pair(cmd: list[str], *, pty_first: bool, emulate: bool) -> tuple[tuple[float, float], tuple[float, float]]:
    from terminal import run_in_pty

    def on_pty() -> tuple[float, float]:
        run = run_in_pty(cmd, rows=40, cols=120, timeout=900, emulate=emulate)
        if run.returncode != 0:
            sys.exit(run.stderr.decode(errors="replace"))
        return speed(run.stderr)

    def piped() -> tuple[float, float]:
        return speed(subprocess.run(cmd, capture_output=True, check=True, timeout=900).stderr)

    if pty_first:
        t = on_pty()
        return t, piped()
    p = piped()
    return on_pty(), p


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--rate", type=float, nargs="+", default=[125.0],
                        help="stand-in model speed in tokens/s (0: no wait, pure rendering cost)")
    parser.add_argument("--emulate", action="store_true", help="run pyte on the terminal's output as well")
    parser.add_argument("--model", action="store_true", help="the built-in model's real answer instead")
    args = parser.parse_args()

    cases: list[tuple[str, list[str]]] = []
    n_of: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            askgpt = (shutil.which("askgpt", path=str(Path(sys.executable).parent)) or shutil.which("askgpt")
                      or sys.exit("askgpt is not installed: pip install . first"))
            for n in args.tokens:
                n_of[f"model, {n} tokens"] = n
                cases.append((f"model, {n} tokens",
                              [askgpt, "-t", "0", "-n", str(n), "--ctx", str(max(2048, n + 256)), "--stats", PROMPT]))
        else:
            import json

            for n in args.tokens:
                path = Path(tmp) / f"answer{n}.json"
                path.write_text(json.dumps(pieces(n)), encoding="utf-8")
                for rate in args.rate:
                    label = f"{n} tokens at {rate:g} tokens/s" if rate else f"{n} tokens, no wait"
                    n_of[label] = n
                    cases.append((label, [sys.executable, __file__, "--child", str(path), str(rate),
                                          "-n", str(n + 10), "--ctx", str(n + 1024), "--stats", "hi"]))
        results: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {label: [] for label, _ in cases}
        for r in range(args.rounds):
            for label, cmd in cases:  # interleaved: every case once per round, pty and pipe in turn
                (t, t_sink), (p, p_sink) = pair = run_pair(cmd, pty_first=r % 2 == 0, emulate=args.emulate)
                results[label].append(pair)
                print(f"round {r + 1} | {label:26} | terminal {t:6.1f} tokens/s ({t_sink:4.0f} ms in the sink) "
                      f"| piped {p:6.1f} tokens/s ({p_sink:4.0f} ms) | ratio {t / p:.3f}", flush=True)
    print()
    for label, pairs in results.items():
        t = statistics.median(pair[0][0] for pair in pairs)
        p = statistics.median(pair[1][0] for pair in pairs)
        ratios = ", ".join(f"{a[0] / b[0]:.3f}" for a, b in pairs)
        sink = statistics.median(a[1] - b[1] for a, b in pairs)
        share = sink / 1000 * t / n_of[label]
        cost = "" if sink != sink else f" | rendering: {sink:+.0f} ms in the sink, {share:.1%} of the time"
        print(f"{label:26} | median terminal {t:6.1f}, piped {p:6.1f} tokens/s | ratio {t / p:.3f} "
              f"(rounds: {ratios}){cost}")
    print("bar: terminal >= 0.95x piped")


if __name__ == "__main__":
    main()
