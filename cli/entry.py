"""The `askgpt` console script. It imports the app inside a handler, so a Ctrl-C in
the first moments (while Python imports askgpt) is one line and exit 130, not a
KeyboardInterrupt traceback."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    try:
        from askgpt.cli.app import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("askgpt: interrupted\n")
        raise SystemExit(130) from None
    finally:
        # The command has finished and its exit code is decided: a Ctrl-C during interpreter
        # shutdown (atexit hooks, thread joins) would otherwise turn it into death by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
