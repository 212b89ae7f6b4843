"""Run a command on a real pseudo-terminal and read what a user would see.

The child gets the pty as its controlling terminal (so a typed Ctrl-C is a
SIGINT from the line discipline, as in a shell), and everything it writes is
fed through pyte, a terminal emulator, so cursor movement and line erasing are
applied. The transcript is the scrollback followed by the final screen.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyte


@dataclass(frozen=True)
class PtyRun:
    returncode: int
    transcript: list[str]  # scrollback + screen, trailing blanks stripped
    stderr: bytes


def run_in_pty(argv: list[str], *, cols: int = 80, rows: int = 24, env: dict[str, str] | None = None,
               cwd: str | None = None, timeout: float = 120,
               on_output: Callable[[bytes, Callable[[bytes], None]], None] | None = None,
               stderr_to_pty: bool = False, emulate: bool = True) -> PtyRun:
    """``on_output(chunk, send)`` sees every chunk the child writes and may type into the terminal.
    ``emulate=False`` only drains the terminal (a benchmark's reader should cost next to nothing);
    the transcript is then empty."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def become_terminal_owner() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave if stderr_to_pty else subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows), **(env or {})},
        cwd=cwd, preexec_fn=become_terminal_owner, close_fds=True,
    )
    os.close(slave)
    screen = pyte.HistoryScreen(cols, rows, history=100_000)
    stream = pyte.ByteStream(screen)

    def send(data: bytes) -> None:
        os.write(master, data)

    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{argv!r} did not finish in {timeout} s")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                if emulate:
                    stream.feed(chunk)
                if on_output is not None:
                    on_output(chunk, send)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        err = proc.stderr.read() if proc.stderr is not None else b""
    finally:
        os.close(master)
        if proc.stderr is not None:
            proc.stderr.close()
    lines = ["".join(line[x].data for x in range(cols)).rstrip() for line in screen.history.top]
    lines += [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return PtyRun(proc.returncode, lines, err)
