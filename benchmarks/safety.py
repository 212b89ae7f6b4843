"""The safety corpus through the real CLI: no signals, no tracebacks, documented exit codes.

    python benchmarks/safety.py

Generates the corpus (tests/gguf_corpus.py: malformed GGUF files; tests/image_corpus.py:
malformed and odd images; a few kinds of binary stdin), runs each case as a whole
`askgpt` process, and counts exit codes, processes killed by a signal, and
tracebacks. Also times the Python header check on the built-in model and what the
first-load child process costs.
"""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gguf_corpus import cases as gguf_cases  # noqa: E402
from gguf_corpus import write_base  # noqa: E402
from image_corpus import cases as image_cases  # noqa: E402

DOCUMENTED = {0, 1, 2, 3, 4, 130}


def run(askgpt: str, args: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, bool]:
    result = subprocess.run([askgpt, *args], input=stdin, capture_output=True, env=env, timeout=300)
    return result.returncode, b"Traceback" in result.stderr


def main() -> None:
    from askgpt.runtime.engine.guard import ensure_loads_safely
    from askgpt.runtime.models.gguf import check_gguf
    from askgpt.runtime.models.registry import builtin_model

    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or "askgpt"
    work = Path(tempfile.mkdtemp())
    env = {**os.environ, "ASKGPT_HOME": str(work / "home")}
    write_base(work / "base.gguf")
    base = (work / "base.gguf").read_bytes()
    tallies: dict[str, collections.Counter[str]] = {}
    for label, corpus, args_for in (
        ("GGUF files", [(f"{n}.gguf", d) for n, d in gguf_cases(base)],
         lambda p: ["-m", str(p), "-n", "2", "-t", "0", "hi"]),
        ("images", list(image_cases()), lambda p: ["-i", str(p), "--ocr", "off", "-n", "2", "what is this?"]),
    ):
        tally: collections.Counter[str] = collections.Counter()
        start = time.perf_counter()
        for name, data in corpus:
            path = work / name
            path.write_bytes(data)
            code, traceback = run(askgpt, args_for(path), env)
            tally[f"exit {code}" if code >= 0 else f"signal {-code}"] += 1
            tally["traceback"] += traceback
            tally["undocumented"] += code not in DOCUMENTED
            path.unlink()
        tallies[label] = tally
        print(f"{label}: {len(corpus)} cases in {time.perf_counter() - start:.0f} s: {dict(sorted(tally.items()))}")
    tally = collections.Counter()
    for stdin in (b"\x00\xff\xfe binary", "\ufeffUTF-16".encode("utf-16"), b"caf\xe9", b"", os.urandom(1 << 14)):
        code, traceback = run(askgpt, ["-n", "2", "-t", "0", "what is this?"], env, stdin)
        tally[f"exit {code}" if code >= 0 else f"signal {-code}"] += 1
        tally["traceback"] += traceback
    print(f"binary stdin: 5 cases: {dict(sorted(tally.items()))}")

    model = builtin_model().path
    times = []
    for _ in range(20):
        t = time.perf_counter()
        check_gguf(model)
        times.append(time.perf_counter() - t)
    print(f"header check of the built-in model: median {1000 * statistics.median(times):.1f} ms")
    copy = work / "copy.gguf"
    shutil.copy(model, copy)
    t = time.perf_counter()
    ensure_loads_safely(copy, work)
    print(f"first-load child process for a new file (a copy of the built-in model): {time.perf_counter() - t:.2f} s,"
          " once per file")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
