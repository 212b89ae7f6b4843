"""A model file's first load happens in a child process, so a crash in native code
cannot take the user's terminal with it.

`check_gguf` catches malformed headers in Python, but llama.cpp can still abort on
a file that is well formed yet wrong (measured: 3 of the safety corpus's 464
files passed the header walk and then aborted llama.cpp with SIGABRT). So the
first time askgpt sees a file (by path, size and modification time) a child
process loads it, tokenizes and generates one token. A child killed by a signal
becomes a clean `ModelLoadError`; a child that succeeds is remembered in the
cache folder, so later runs pay nothing. Cost: about one extra load, once per file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import ModelLoadError
from .files import atomic_write_bytes

VERDICTS_FILE = "models-verified.txt"
_CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from askgpt.runtime.llama_engine import trial_run\n"
    "trial_run(Path(sys.argv[1]))\n"
)


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}"


def ensure_loads_safely(path: Path, cache_dir: Path, *, timeout: float = 300.0) -> bool:
    """Raises `ModelLoadError` (exit 4) when loading ``path`` crashes a child process.
    Returns True when a child ran, False when an earlier run had already vouched for it."""
    try:
        key = _key(path)
    except OSError:
        return False  # the load itself reports the missing file
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
            result = subprocess.run([sys.executable, "-c", _CHILD, str(path.resolve())], capture_output=True,
                                    timeout=timeout, cwd=empty, env={**os.environ, "PYTHONFAULTHANDLER": ""})
    except subprocess.TimeoutExpired as exc:
        raise ModelLoadError(f"loading {path.name} did not finish within {timeout:.0f} s") from exc
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise ModelLoadError(f"llama.cpp crashed ({name}) while loading {path.name}",
                             hint="the file is damaged or made for another llama.cpp version")
    if result.returncode == 0:
        try:  # keep the list short: the newest 256 files
            atomic_write_bytes(verdicts, ("\n".join([*known[-255:], key]) + "\n").encode())
        except OSError:
            pass  # a full disk or a read-only cache: the next run checks again

    return True
