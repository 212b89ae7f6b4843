"""How fast `askgpt --help` / `--version` return, against a bare `python -c pass`.

    python benchmarks/startup.py [--runs 20]

The issue's bar: "well under half a second". Medians of N runs in one process
tree, so the ratio to bare Python start-up is comparable across noisy machines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    # Prefer the script beside this interpreter (a venv need not be activated).
    askgpt = (shutil.which("askgpt", path=str(Path(sys.executable).parent)) or shutil.which("askgpt")
              or sys.exit("askgpt is not installed: pip install . first"))
    base = median_seconds([sys.executable, "-c", "pass"], args.runs)
    for label, cmd in [("askgpt --help", [askgpt, "--help"]), ("askgpt --version", [askgpt, "--version"]),
                       ("askgpt ask --help", [askgpt, "ask", "--help"])]:
        t = median_seconds(cmd, args.runs)
        print(f"{label:20s} median {t * 1000:6.0f} ms  ({t / base:4.1f}x bare python start-up {base * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
