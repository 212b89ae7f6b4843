"""A model file's first load happens in a child process, so a crash in native code
cannot take the user's terminal with it.

`check_gguf` catches malformed headers in Python, but llama.cpp can still abort on
a file that is well formed yet wrong (measured: 3 of the safety corpus's 464
files passed the header walk and then aborted llama.cpp with SIGABRT). So the
first time askgpt sees a file (by path, size and modification time) a child
process loads it, tokenizes and generates one token. A child killed by a signal
becomes a clean `ModelLoadError`; a child that succeeds is remembered in the
cache folder, so later runs pay nothing. Cost: about one extra load, once per file.

The same guard covers the other files llama.cpp reads in-process: a vision
projector (mmproj; the child loads it with its language model and encodes one
small image, and the verdict is kept for that pair of files) and the input of
`convert quantize` (the language-model trial, whose verdict it shares). A child
that fails cleanly (a Python error, exit 1) is not a crash: the caller's own load
then reports the problem in its usual words.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from askgpt.runtime.errors import ModelLoadError
from askgpt.runtime.files import FileIdentity, atomic_write_bytes

VERDICTS_FILE = "models-verified.txt"
_CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from askgpt.runtime.engine.llama.tools import trial_run\n"
    "trial_run(Path(sys.argv[1]))\n"
)
# The projector's trial: the language model (already loaded safely by the parent) with
# the projector, and one small image through its encoder.
_PROJECTOR_CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "import numpy as np\n"
    "from askgpt.runtime.engine.base import EngineConfig\n"
    "from askgpt.runtime.engine.llama.engine import load_llama_engine\n"
    "from askgpt.runtime.models.registry import ModelRef\n"
    "model, mmproj = Path(sys.argv[1]), Path(sys.argv[2])\n"
    "engine = load_llama_engine(ModelRef(model.stem, model), EngineConfig(n_ctx=512))\n"
    "try:\n"
    "    engine.open_vision(mmproj, threads=int(sys.argv[3])).segments(np.full((32, 32, 3), 128, np.uint8))\n"
    "finally:\n"
    "    engine.close()\n"
)


def _key(path: Path) -> str:
    return FileIdentity.of(path).joined("\t")


def ensure_loads_safely(path: Path, cache_dir: Path, *, timeout: float = 300.0) -> bool:
    """Raises `ModelLoadError` (exit 4) when loading ``path`` crashes a child process.
    Returns True when a child ran, False when an earlier run had already vouched for it."""
    try:
        key = _key(path)
    except OSError:
        return False  # the load itself reports the missing file
    return _guard(key, [_CHILD, str(path.resolve())], path.name, cache_dir, timeout)


def ensure_projector_loads_safely(mmproj: Path, model: Path, cache_dir: Path, *,
                                  timeout: float = 300.0) -> bool:
    """As `ensure_loads_safely`, for the vision projector ``mmproj`` used with the language
    model ``model`` (mtmd reads both; the verdict is for the pair)."""
    try:
        key = f"{_key(mmproj)}\twith\t{_key(model)}"
    except OSError:
        return False
    threads = str(max(1, min(4, os.cpu_count() or 1)))
    return _guard(key, [_PROJECTOR_CHILD, str(model.resolve()), str(mmproj.resolve()), threads],
                  mmproj.name, cache_dir, timeout)


def _guard(key: str, child: list[str], name: str, cache_dir: Path, timeout: float) -> bool:
    verdicts = cache_dir / VERDICTS_FILE
    try:
        known = verdicts.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        known = []
    if key in known:
        return False
    # `python -c` puts the working folder first on sys.path; an empty one cannot shadow
    # the installed askgpt (a source checkout's askgpt/ folder would).
    try:
        with tempfile.TemporaryDirectory(prefix="askgpt-trial-") as empty:
            result = subprocess.run([sys.executable, "-c", *child], capture_output=True,
                                    timeout=timeout, cwd=empty, env={**os.environ, "PYTHONFAULTHANDLER": ""})
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"loading {name} did not finish within {timeout:.0f} s") from exc
    if result.returncode < 0:
        signame = signal.Signals(-result.returncode).name
        raise ModelLoadError(f"llama.cpp crashed ({signame}) while loading {name}",
                             hint="the file is damaged or made for another llama.cpp version")
    if result.returncode == 0:
        try:  # keep the list short: the newest 256 files
            atomic_write_bytes(verdicts, ("\n".join([*known[-255:], key]) + "\n").encode())
        except OSError:
            pass  # a full disk or a read-only cache: the next run checks again

    return True
