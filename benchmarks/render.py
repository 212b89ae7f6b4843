"""Answer speed on a terminal against a pipe: the cost of rendering Markdown.

    python benchmarks/render.py [--runs 3] [--tokens 1000]

Runs the same greedy 1,000-token Markdown answer on a pseudo-terminal (rendered
with rich, read by a terminal emulator as a user's terminal would) and piped
(plain text), alternating, and compares the tokens/s askgpt reports with
--stats. The bar: terminal >= 0.95x piped. Needs the test extra (pyte):
pip install ".[test]".
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from terminal import run_in_pty  # noqa: E402

PROMPT = "Write a detailed markdown guide with headings and bullet lists on how to learn Python."
STATS = re.compile(rb"answer: (\d+) tokens, ([\d.]+) tokens/s")


def speed(stderr: bytes) -> tuple[int, float]:
    match = STATS.search(stderr)
    if match is None:
        sys.exit(f"no stats line in: {stderr.decode(errors='replace')}")
    return int(match.group(1)), float(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1000)
    args = parser.parse_args()
    askgpt = (shutil.which("askgpt", path=str(Path(sys.executable).parent)) or shutil.which("askgpt")
              or sys.exit("askgpt is not installed: pip install . first"))
    cmd = [askgpt, "-t", "0", "-n", str(args.tokens), "--ctx", "2048", "--stats", PROMPT]
    terminal, piped = [], []
    for _ in range(args.runs):
        pty_run = run_in_pty(cmd, rows=40, cols=120, timeout=600)
        n_pty, tps_pty = speed(pty_run.stderr)
        pipe_run = subprocess.run(cmd, capture_output=True, check=True, timeout=600)
        n_pipe, tps_pipe = speed(pipe_run.stderr)
        terminal.append(tps_pty)
        piped.append(tps_pipe)
        print(f"terminal {n_pty} tokens {tps_pty:6.1f} tokens/s | piped {n_pipe} tokens {tps_pipe:6.1f} tokens/s")
    t, p = statistics.median(terminal), statistics.median(piped)
    print(f"median: terminal {t:.1f} tokens/s, piped {p:.1f} tokens/s, ratio {t / p:.3f} (bar: >= 0.95)")


if __name__ == "__main__":
    main()
