"""Run the real CLI on the scripted engine, as its own process (for terminal tests).

    python scripted_cli.py ANSWER_FILE DELAY_S [askgpt args...]

The answer is streamed one byte-token at a time, DELAY_S apart, so a test can
watch rendering on a real pseudo-terminal without loading a model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import ScriptedEngine, ScriptedFactory  # noqa: E402

from askgpt.cli.app import create_app  # noqa: E402


def main() -> None:
    answer = Path(sys.argv[1]).read_text(encoding="utf-8")
    delay = float(sys.argv[2])
    engine = ScriptedEngine(answer=answer, on_token=(lambda _i: time.sleep(delay)) if delay else None)
    create_app(ScriptedFactory(engine))(sys.argv[3:], prog_name="askgpt")


if __name__ == "__main__":
    main()
