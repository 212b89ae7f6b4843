"""Inputs far larger than memory should hold: time and peak memory against input size.

    python benchmarks/stream.py [--sizes 8,32,128] [--depth 0.6]

For each size (MB), writes a file of real prose (the standard library's
docstrings, shuffled, repeated) with one planted passphrase at the given depth,
pipes it into `askgpt "What is the passphrase for ...?"` as a user would, and
reports the answer's correctness, wall time, time per 100k tokens and the
process's peak RSS (os.wait4; Linux counts the small parent's peak too). Inputs over 16 MB stay on disk and are chunked
and ranked segment by segment; smaller ones are read into memory.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from askgpt.runtime.bench.needle import CITIES, PLACES, _paragraphs


def write_haystack(path: Path, size_mb: int, depth: float, needle: str) -> None:
    rng = random.Random(size_mb)
    target = size_mb << 20
    at = int(target * depth)
    written = 0
    planted = False
    with path.open("w", encoding="utf-8") as f:
        for para in _paragraphs("prose", rng):
            if written >= target:
                break
            if not planted and written >= at:
                para, planted = needle, True
            f.write(para + "\n\n")
            written += len(para.encode()) + 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--depth", type=float, default=0.6)
    args = parser.parse_args()
    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or "askgpt"
    work = Path(tempfile.mkdtemp())
    print(f"{'MB':>5s} {'tokens':>12s} {'chunks':>8s} {'found':>6s} {'wall s':>7s} {'s/100k':>7s} {'peak RSS MB':>11s}")
    for size in (int(s) for s in args.sizes.split(",")):
        rng = random.Random(size)
        city, place, value = rng.choice(CITIES), rng.choice(PLACES), str(rng.randint(1000, 9999))
        path = work / f"hay-{size}.txt"
        write_haystack(path, size, args.depth, f"The passphrase for the {city} {place} is {value}.")
        start = time.perf_counter()
        out_file, err_file = work / "out.txt", work / "err.txt"
        with path.open("rb") as stdin, out_file.open("wb") as out, err_file.open("wb") as err:
            proc = subprocess.Popen([askgpt, f"What is the passphrase for the {city} {place}?"],
                                    stdin=stdin, stdout=out, stderr=err,
                                    env={**os.environ, "ASKGPT_HOME": str(work / "home")})
            _, _, usage = os.wait4(proc.pid, 0)  # this child's own rusage (proc.wait would discard it)
        wall = time.perf_counter() - start
        path.unlink()
        text = err_file.read_text()
        tokens = re.search(r"document: ([\d,]+) tokens", text)
        chunks = re.search(r"over ([\d,]+) chunks", text)
        n = int(tokens.group(1).replace(",", "")) if tokens else 0
        print(f"{size:5d} {n:12,d} {chunks.group(1) if chunks else '?':>8s} {str(value in out_file.read_text()):>6s} "
              f"{wall:7.1f} {100_000 * wall / max(n, 1):7.2f} {usage.ru_maxrss / 1024:11.0f}", flush=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
