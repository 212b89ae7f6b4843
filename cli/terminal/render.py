"""Rendering: the answer to stdout, everything else to stderr.

On a terminal the answer is rendered as Markdown (rich) while it streams,
finished blocks once and the growing one live (see markdown_stream.py);
when stdout is piped it is written as plain text, token by token, with no
colour and no wrapping. rich honours NO_COLOR on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from askgpt.runtime.engine.prefix_cache import CacheEvents
    from askgpt.runtime.errors import AskgptError
    from askgpt.runtime.prompting.generate import Stats


class AnswerSink(Protocol):
    def write(self, piece: str) -> None: ...

    def finish(self) -> None:
        """Flush and end the answer with a newline (also after Ctrl-C)."""
        ...


class PlainSink:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = "\n"

    def write(self, piece: str) -> None:
        self._stream.write(piece)
        self._stream.flush()  # stream token by token, even into a pipe
        self._last = piece[-1:] or self._last

    def finish(self) -> None:
        if self._last != "\n":
            self._stream.write("\n")
        self._stream.flush()


def make_sink(stdout: TextIO, *, markdown: bool) -> AnswerSink:
    if not markdown:
        return PlainSink(stdout)
    from rich.console import Console

    from askgpt.cli.terminal.markdown_stream import StreamingMarkdown

    return StreamingMarkdown(Console(file=stdout))


def stream_answer(pieces: Iterable[str], sink: AnswerSink,
                  waiting: AbstractContextManager[object] | None = None) -> None:
    """Write pieces as they come. ``waiting`` (a spinner) runs until the first
    piece: reading a long prompt can take seconds before the answer starts."""
    stream = iter(pieces)
    try:
        with waiting or nullcontext():
            first = next(stream, None)
        if first is not None:
            sink.write(first)
            for piece in stream:
                sink.write(piece)
    finally:
        sink.finish()


def format_stats(stats: Stats, *, load_seconds: float, kv_bytes: int = 0) -> str:
    kv = f" | kv cache: {kv_bytes / 2**20:,.0f} MiB" if kv_bytes else ""
    return (
        f"prompt: {stats.prompt_tokens} tokens in {stats.prompt_seconds:.2f}s | "
        f"answer: {stats.generated_tokens} tokens, {stats.tokens_per_second:.1f} tokens/s | "
        f"load: {load_seconds:.2f}s{kv} | stop: {stats.stop_reason.value}"
    )


def format_cache_events(events: CacheEvents) -> str:
    parts = [f"prefix cache: reused {events.reused_tokens} tokens", f"stored {events.stored_tokens}"]
    if events.rejected:
        parts.append(f"deleted {len(events.rejected)} corrupt entr{'y' if len(events.rejected) == 1 else 'ies'}")
    return " | ".join(parts)


def print_result(data: dict[str, Any], text: str, *, as_json: bool) -> None:
    """A command's result on stdout: JSON for scripts, or the text for people."""
    import json

    if as_json:
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(text)


CITATION_CHARS = 300  # a citation's text past this is cut, with an ellipsis: one readable line each


def format_citations(citations: Sequence[tuple[str, str]]) -> str:
    """The evidence the model was given, after its answer: a blank line, "Sources:", then
    ``- [where] text``, one citation per line (its line breaks become spaces)."""
    lines = "".join(f"- [{_visible(where)}] {_one_line(text)}\n" for where, text in citations)
    return f"\nSources:\n{lines}"


def _visible(name: str) -> str:
    """A source's name with its control characters written out (``\\n``, ``\\x1b``): a file
    name is data, and a line break in it must not start a line of its own."""
    # A backslash is doubled, so a name holding a real "\\n" reads apart from a line break.
    return "".join(ch if (ch.isprintable() or ch == " ") and ch != "\\" else ascii(ch)[1:-1] for ch in name)


def _one_line(text: str) -> str:
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= CITATION_CHARS else flat[:CITATION_CHARS - 1].rstrip() + "\u2026"


def write_citations(stream: TextIO, citations: Sequence[tuple[str, str]], *, terminal: bool) -> None:
    """`format_citations` to ``stream``: on a terminal dimmed (they are not the answer) and
    neutralized (a document's escape sequences stay inert); elsewhere as they are."""
    text = format_citations(citations)
    if not terminal:
        stream.write(text)
        stream.flush()
        return
    from rich.console import Console
    from rich.text import Text

    from askgpt.cli.terminal.text import neutralize

    # A Text, never markup: "[where]" and the document's own brackets print as they are.
    console = Console(file=stream, force_terminal=True, soft_wrap=True, highlight=False, emoji=False)
    console.print(Text(neutralize(text), style="dim"), end="")
    stream.flush()


def format_error(error: AskgptError) -> str:
    line = f"askgpt: error: {error.message}"
    # A message that ends a sentence of its own (llama.cpp's, a library's) drops its period before the hint.
    return f"{line.rstrip('.')}; {error.hint}" if error.hint else line


class Messages:
    """Progress, warnings, stats and errors: all on stderr."""

    def __init__(self, stderr: TextIO, *, quiet: bool) -> None:
        self._stderr = stderr
        self.quiet = quiet

    def line(self, text: str) -> None:
        print(text, file=self._stderr, flush=True)

    def raw(self, text: str) -> None:
        """Text as it comes (llama.cpp's log lines carry their own newlines)."""
        self._stderr.write(text)
        self._stderr.flush()

    def citations(self, citations: Sequence[tuple[str, str]]) -> None:
        """Citations on stderr (stdout is not a terminal, or holds JSON): shown even when quiet,
        since only --no-cite turns them off."""
        write_citations(self._stderr, citations, terminal=self._stderr.isatty())

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.line(f"askgpt: {text}")

    @contextmanager
    def progress(self) -> Iterator[Callable[[str, int, int], None]]:
        """A progress bar per stage on a terminal stderr (``progress(stage, done, total)``);
        a no-op otherwise or when quiet."""
        if self.quiet or not self._stderr.isatty():
            yield lambda stage, done, total: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        tasks: dict[str, object] = {}
        # Elapsed and an estimate of what is left: a stage that reads parts with the model can be long.
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=Console(file=self._stderr), transient=True) as bar:
            def update(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

            yield update

    def status(self, text: str) -> AbstractContextManager[object]:
        """A spinner on a terminal stderr; nothing otherwise or when quiet."""
        if self.quiet or not self._stderr.isatty():
            return nullcontext()
        from rich.console import Console

        return Console(file=self._stderr).status(text, spinner="dots")
