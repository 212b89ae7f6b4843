"""`--help` and `--version` stay light, and the ask path never touches the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

HEAVY = ("llama_cpp", "onnxruntime", "torch", "open_clip", "PIL", "numpy")

PROBE = """
import sys
sys.argv = ["askgpt", *{args!r}]
from askgpt.cli.entry import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["ask", "--help"], ["-h"]])
def test_help_and_version_import_nothing_heavy(args: list[str]) -> None:
    code = PROBE.format(args=args, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO / "tests")
    assert "HEAVY=\n" in result.stderr, result.stderr
    assert result.stdout.strip()


OFFLINE = """
import socket, sys
attempts = []
def refuse(*a, **k):
    attempts.append(a)
    raise OSError("network blocked by test")
class NoSocket(socket.socket):
    def connect(self, *a): refuse(*a)
    def connect_ex(self, *a): refuse(*a)
    def sendto(self, *a): refuse(*a)
socket.socket = NoSocket
socket.create_connection = refuse
socket.getaddrinfo = refuse
# Prove the block works before trusting a green run.
try:
    socket.create_connection(("127.0.0.1", 9))
except OSError:
    pass
else:
    sys.exit("block failed")
attempts.clear()
sys.argv = ["askgpt", *{args!r}]
from askgpt.cli.entry import main
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print(f"ATTEMPTS={{len(attempts)}} CODE={{code}}", file=sys.stderr)
print("VISION=" + ",".join(m for m in ("onnxruntime", "PIL", "askgpt.vision") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.model
def test_real_ask_runs_with_sockets_blocked() -> None:
    env = {"HF_HUB_OFFLINE": "0"}  # nothing in askgpt may rely on an offline flag
    args = ["-t", "0", "What is the capital of France?"]
    result = subprocess.run([sys.executable, "-c", OFFLINE.format(args=args)], capture_output=True, text=True,
                            cwd=REPO / "tests", env={**__import__("os").environ, **env}, timeout=120)
    assert "ATTEMPTS=0 CODE=0" in result.stderr, result.stderr
    assert "Paris" in result.stdout
    assert "VISION=\n" in result.stderr  # a text question loads no image code


@pytest.mark.model
def test_an_image_question_runs_with_sockets_blocked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import skimage

    photo = tmp_path / "photo.png"
    photo.write_bytes((Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes())
    args = ["-t", "0", "What is in this picture?", "-i", str(photo)]
    result = subprocess.run([sys.executable, "-c", OFFLINE.format(args=args)], capture_output=True, text=True,
                            cwd=REPO / "tests", timeout=180)
    assert "ATTEMPTS=0 CODE=0" in result.stderr, result.stderr
    assert "cat" in result.stdout.lower()
