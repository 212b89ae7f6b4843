"""Streaming Markdown to a terminal in time linear in the answer's length.

Re-rendering the whole answer on every token costs O(n^2), and a live region
taller than the screen cannot be redrawn (lines that scrolled off stay behind
as duplicates). So the answer is split as it grows: blocks that are finished
(a later block has started) are printed once, permanently, and only the block
still being written is live, redrawn a few times a second and cropped to the
screen's height.

The answer competes with the model for time: each draw happens between two
tokens. So a draw's cost is kept small and bounded: the live block is rendered
only as far back as the screen can show (the last items of a long numbered
list, the last lines of a long code block), draws are spaced so that they take
a small share of the time, and the one-time costs (importing the renderer,
compiling a code block's syntax highlighter) are paid in a background thread
while the model computes, with drawing deferred until they are done.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from askgpt.cli.terminal.text import neutralize

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
    return _split((parser or _parser()).parse(text), text)


def _split(tokens: list[Any], text: str) -> tuple[int, bool]:
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


_ITEM_NUMBER = re.compile(r"( {0,3})(\d+)")


def live_tail(text: str, rows: int, parser: Any | None = None) -> str:
    """The end of the one block ``text`` holds, enough to fill its last ``rows`` screen lines.

    Rendering the whole block on every draw would cost time growing with the
    block, while the screen shows only its last lines. A numbered list keeps
    its last ``rows`` items, renumbered from where they stand (rich pads
    numbers to the width of start + item count, which stays the same); a code
    block keeps its opening fence and last ``rows`` lines. Every item and line
    renders to at least one screen line, so the last ``rows`` lines look as
    the whole block's would. Other blocks are returned whole.
    """
    tokens = (parser or _parser()).parse(text)
    return _tail(tokens, text, rows)


def _tail(tokens: list[Any], text: str, rows: int) -> str:
    top = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
    if not top:
        return text
    first = top[0]
    lines = text.splitlines(keepends=True)
    if first.type == "ordered_list_open":
        items = [t for t in tokens if t.level == 1 and t.type == "list_item_open" and t.map]
        if len(items) <= rows:
            return text
        start = int(first.attrs.get("start", 1))
        begin, end = items[-rows].map
        # Numbers after a list's first are not read (a list may repeat "1."): renumber the first kept item,
        # keeping its content column: a shorter number gets leading zeros, a longer one shifts the item's
        # indented lines right.
        match = _ITEM_NUMBER.match(lines[begin])
        if match is None:
            return text
        old, new = match.group(2), str(start + len(items) - rows)
        shift = " " * max(0, len(new) - len(old))
        head = match.group(1) + new.zfill(len(old)) + lines[begin][match.end():]
        body = [shift + line if shift and line[:1] in (" ", "\t") else line for line in lines[begin + 1:end]]
        return head + "".join(body) + "".join(lines[end:])
    if first.type == "fence":
        opening, end = first.map
        last = end - 1  # the last line of code, not counting a closing fence or the blank lines rich strips
        if last > opening and set(lines[last].strip()) == {first.markup[0]}:
            last -= 1
        while last > opening and not lines[last].strip():
            last -= 1
        begin = max(opening + 1, last - rows + 1)
        return lines[opening] + "".join(lines[begin:end])
    return text


_FENCE_INFO = re.compile(r"^ {0,3}(?:`{3,}|~{3,})[ \t]*([^\s`]+)", re.MULTILINE)


def _warm_up(languages: frozenset[str]) -> None:
    """Import the renderer and compile the highlighters for ``languages``
    (pygments compiles a lexer's patterns on its first use: ~0.1 s for Python)."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
    from rich.live import Live  # noqa: F401
    from rich.markdown import Markdown  # noqa: F401

    for name in languages:
        try:
            get_lexer_by_name(name)
        except ClassNotFound:  # rich shows such a block as plain text
            pass


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
    """An answer sink for terminals. ``min_interval`` bounds redraws of the live block;
    ``budget`` is the share of the time draws may take (a draw that took d seconds
    is followed by none for d / budget seconds, but at most ``max_interval``, so
    that a terminal paused with Ctrl-S or one long draw does not freeze the display)."""

    def __init__(self, console: Console, *, min_interval: float = 0.25, budget: float = 0.02,
                 max_interval: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._console = console
        self._min_interval = min_interval
        self._budget = budget
        self._max_interval = max(min_interval, max_interval)
        self._clock = clock
        self._neutralize = neutralize
        self._parser = _parser()
        self._done: list[str] = []  # pieces not yet split off the live block
        self._live_text = ""  # the text of the live block, as of the last split
        self._printed_any = False
        self._next_needs_gap = False
        self._next_draw = float("-inf")
        self._live: Live | None = None
        self._quiet_tty: _QuietTerminal | None = None
        self._warm: set[str] = set()  # languages whose highlighter is compiled
        self._warming: threading.Thread | None = None
        self._start_warm_up(frozenset())  # while the model reads the prompt

    def _start_warm_up(self, languages: frozenset[str]) -> None:
        self._warm |= languages
        self._warming = threading.Thread(target=_warm_up, args=(languages,), name="askgpt-render-warm-up",
                                         daemon=True)
        self._warming.start()

    def _ready(self) -> bool:
        """Whether a draw can run without first paying a one-time cost. If the
        text holds a code block in a language not compiled yet, compiling it
        starts in the background and the draw waits (the pieces are kept)."""
        if self._warming is not None:
            if self._warming.is_alive():
                return False
            self._warming = None
        self._live_text += "".join(self._done)
        self._done.clear()
        new = {m.group(1) for m in _FENCE_INFO.finditer(self._live_text)} - self._warm
        if not new:
            return True
        self._start_warm_up(frozenset(new))
        return False

    def write(self, piece: str) -> None:
        self._done.append(self._neutralize(piece))  # a terminal: no escape sequences from the model
        now = self._clock()
        if now < self._next_draw or not self._ready():
            return
        with _interrupts_deferred():
            self._draw()
        done = self._clock()
        self._next_draw = max(now + self._min_interval, done + min((done - now) / self._budget, self._max_interval))

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
        tokens = self._parser.parse(text)
        cut, same_list = _split(tokens, text)
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
        if text.count("\n") > height:  # fewer source lines cannot fill more screen lines than that
            text = _tail(self._parser.parse(text) if cut else tokens, text, height)
        self._live.update(_Block(self._markdown(text), height), refresh=True)

    def finish(self) -> None:
        with _interrupts_deferred():
            self._finish()

    def _finish(self) -> None:
        if self._warming is not None:
            self._warming.join()  # the highlighters, compiled once
            self._warming = None
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
