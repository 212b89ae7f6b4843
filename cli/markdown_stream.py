"""Streaming Markdown to a terminal in time linear in the answer's length.

Re-rendering the whole answer on every token costs O(n^2), and a live region
taller than the screen cannot be redrawn (lines that scrolled off stay behind
as duplicates). So the answer is split as it grows: blocks that are finished
(a later block has started) are printed once, permanently, and only the block
still being written is live, redrawn a few times a second and cropped to the
screen's height.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live


def _parser() -> Any:
    from markdown_it import MarkdownIt

    # The same parser settings rich's Markdown uses, so block boundaries agree with what it renders.
    return MarkdownIt().enable("strikethrough").enable("table")


def _line_offsets(text: str) -> list[int]:
    """Character offset of the start of each line."""
    offsets = [0]
    pos = text.find("\n")
    while pos >= 0:
        offsets.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return offsets


def stable_split(text: str, parser: Any | None = None) -> tuple[int, bool]:
    """How much of ``text`` is finished Markdown: ``(offset, same_list)``.

    ``text[:offset]`` holds only complete blocks: each top-level block before
    the last one (the last may still grow), and, inside a trailing bullet
    list, each item before its last. ``same_list`` is True when the cut falls between two
    items of one list (no blank line belongs between their renderings).
    The offset is always at the start of a line.
    """
    tokens = (parser or _parser()).parse(text)
    top = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
    if not top:
        return 0, False
    last = top[-1]
    starts = [last.map[0]]
    same_list = False
    # Bullet items can be printed one by one; an ordered list is printed whole,
    # since rich pads every number to the width of the list's last one.
    if last.type == "bullet_list_open":
        items = [t.map[0] for t in tokens if t.level == 1 and t.type == "list_item_open" and t.map]
        if len(items) >= 2:
            starts = [items[-1]]
            same_list = True
    line = starts[0]
    if line == 0:
        return 0, False
    offsets = _line_offsets(text)
    return (offsets[line] if line < len(offsets) else len(text)), same_list


class _Block:
    """Markdown rendered without the empty lines rich puts around some blocks
    (a list opens with one), since the gaps between blocks are ours to place;
    with ``height``, only the last ``height`` lines, so a live region never
    outgrows the screen."""

    def __init__(self, markdown: Any, height: int | None = None) -> None:
        self._markdown = markdown
        self._height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.segment import Segment

        lines = console.render_lines(self._markdown, options, pad=False)
        # A line with no text at all is a separator; a code block's padding row has spaces.
        while lines and not any(seg.text for seg in lines[0]):
            lines.pop(0)
        while lines and not any(seg.text for seg in lines[-1]):
            lines.pop()
        if self._height is not None:
            lines = lines[-max(1, self._height):]
        for line in lines:
            yield from line
            yield Segment.line()


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the current draw is done, so the screen and what the
    sink thinks it has printed never disagree (a line printed but not yet
    marked as such would be printed again by `finish`)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # an ignored or custom SIGINT is left as it is
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class _QuietTerminal:
    """While the answer streams: no echo of typed keys, and NOFLSH.

    The live block is redrawn by moving the cursor up over it. A typed key
    echoed by the terminal driver (Ctrl-C shows as "^C") moves the cursor
    behind rich's back, so the redraw lands one line off and leaves a stale
    line on screen. And by default Ctrl-C makes the driver discard output
    written but not yet shown, which can cut a redraw in half. Turning off
    ECHO/ECHOCTL and setting NOFLSH keeps what was generated on the screen,
    once; the settings are restored when the answer ends.
    """

    def __init__(self, stream: Any) -> None:
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        try:
            import termios
        except ImportError:  # Windows: no terminal driver settings to guard
            return
        try:
            fd = stream.fileno()
            attrs = termios.tcgetattr(fd)
        except (AttributeError, OSError, ValueError, termios.error):
            return  # not a terminal: nothing to protect
        self._fd, self._saved = fd, attrs
        changed = list(attrs)
        changed[3] = (changed[3] | termios.NOFLSH) & ~(termios.ECHO | termios.ECHOCTL)
        try:
            termios.tcsetattr(fd, termios.TCSANOW, changed)
        except termios.error:
            self._fd = None

    def restore(self) -> None:
        if self._fd is None or self._saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
        except termios.error:
            pass
        self._fd = None


class StreamingMarkdown:
    """An answer sink for terminals. ``min_interval`` bounds redraws of the live block."""

    def __init__(self, console: Console, *, min_interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self._min_interval = min_interval
        self._clock = clock
        self._parser = _parser()
        self._done: list[str] = []  # pieces not yet split off the live block
        self._live_text = ""  # the text of the live block, as of the last split
        self._printed_any = False
        self._next_needs_gap = False
        self._last_draw = float("-inf")
        self._live: Live | None = None
        self._quiet_tty: _QuietTerminal | None = None

    def write(self, piece: str) -> None:
        from .render import neutralize

        self._done.append(neutralize(piece))  # a terminal: no escape sequences from the model
        now = self._clock()
        if now - self._last_draw >= self._min_interval:
            self._last_draw = now
            with _interrupts_deferred():
                self._draw()

    def _markdown(self, text: str) -> Any:
        from rich.markdown import Markdown

        return Markdown(text)

    def _commit(self, text: str, *, same_list: bool) -> None:
        """Print finished blocks permanently (above the live region, if one is showing)."""
        if not text.strip():
            return
        if self._printed_any and self._next_needs_gap:
            self._console.print()
        self._console.print(_Block(self._markdown(text)), end="")
        self._printed_any = True
        self._next_needs_gap = not same_list

    def _draw(self) -> None:
        text = self._live_text + "".join(self._done)
        self._done.clear()
        cut, same_list = stable_split(text, self._parser)
        if cut:
            self._commit(text[:cut], same_list=same_list)
            text = text[cut:]
        self._live_text = text
        if self._live is None:
            from rich.live import Live

            self._quiet_tty = _QuietTerminal(self._console.file)
            self._live = Live(console=self._console, auto_refresh=False, transient=True,
                              vertical_overflow="crop")
            self._live.start()
        height = max(1, self._console.size.height - 1)
        self._live.update(_Block(self._markdown(text), height), refresh=True)

    def finish(self) -> None:
        with _interrupts_deferred():
            self._finish()

    def _finish(self) -> None:
        text = self._live_text + "".join(self._done)
        self._done.clear()
        self._live_text = ""
        if self._live is not None:
            self._live.stop()  # transient: the live block is erased, then printed for good
            self._live = None
        try:
            if text.strip():
                # The remaining text may hold several blocks; print it as one document.
                self._commit(text, same_list=False)
        finally:
            if self._quiet_tty is not None:
                self._quiet_tty.restore()
                self._quiet_tty = None
