"""`python -m pytest` from the checkout's root, as well as `pytest`.

`python -m` puts the working folder first on sys.path, and pytest puts this file's folder
there too. From the checkout's root, `import askgpt` would then find ./askgpt, which holds
only the top-level module: askgpt.cli, askgpt.runtime, ... live in ./cli, ./runtime, ...
and exist as such only in the installed package (pyproject.toml's package-dir). So the
root leaves sys.path before anything imports askgpt, and the tests import what pip
installed, as `pytest` (whose entry script puts no folder on sys.path) always did.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or os.getcwd()).resolve() == _ROOT
    except OSError:
        return False


sys.path[:] = [entry for entry in sys.path if not _is_root(entry)]
