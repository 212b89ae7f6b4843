"""The `ask` command's terminal side: the session (askgpt.session) answers, this writes the answer
to stdout and what happened to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from askgpt.cli.terminal.render import (
    AnswerSink,
    Messages,
    format_cache_events,
    format_stats,
    make_sink,
    stream_answer,
    write_citations,
)
from askgpt.cli.terminal.text import neutralize
from askgpt.response import Response
from askgpt.runtime.engine.capabilities import PrefixCacheEvents, PromptLookupCounters
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.errors import OutputError, StructuredOutputError
from askgpt.runtime.icl.labels import LabelScores
from askgpt.runtime.prompting.generate import StopReason
from askgpt.runtime.prompting.structured import check_json, first_code_block
from askgpt.runtime.store.settings import Settings
from askgpt.session import AskOptions, Question, Session


@dataclass(frozen=True)
class Streams:
    stdin: BinaryIO
    stdin_is_terminal: bool
    stdout: TextIO
    stdout_is_terminal: bool


def _whole(pieces: Iterator[str], is_json: bool) -> Iterator[str]:
    """--no-stream: the answer once complete. JSON that is not complete is not written at
    all (a script would get half an object); the error says why, the log keeps it."""
    text = "".join(pieces)
    if is_json:
        try:
            check_json(text)
        except StructuredOutputError as exc:
            raise StructuredOutputError(f"{exc.message}, so nothing was written", hint=exc.hint) from exc
    yield text


def _write(stream: TextIO, text: str) -> None:
    """Text to stdout past the answer itself; a write error is an `OutputError`, as in `_CheckedSink`."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _output_error(exc) from exc


def _output_error(exc: OSError) -> OutputError:
    return OutputError(f"cannot write the answer to stdout: {exc.strerror or exc}",
                       hint="check the file or device stdout goes to")


class _CheckedSink:
    """A sink whose write errors are an `OutputError` (a full disk: one line, exit 1);
    a closed pipe stays a BrokenPipeError (the reader went away: askgpt stops quietly)."""

    def __init__(self, sink: AnswerSink) -> None:
        self._sink = sink

    def write(self, piece: str) -> None:
        try:
            self._sink.write(piece)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from exc

    def finish(self) -> None:
        try:
            self._sink.finish()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from exc


def run_ask(opts: AskOptions, *, settings: Settings, engine_factory: EngineFactory,
            streams: Streams, messages: Messages) -> None:
    """`askgpt ask`: the session prepares and answers (askgpt.session); this renders."""
    session = Session(settings, opts.load, engine_factory=engine_factory, notifier=messages,
                      native_log=messages.raw if opts.debug else None)
    try:
        with closing(session.question(opts, stdin=streams.stdin, stdin_is_terminal=streams.stdin_is_terminal)) as q:
            if opts.show_prompt:
                text = q.prompt_text()
                _write(streams.stdout, (neutralize(text) if streams.stdout_is_terminal else text) + "\n")
                return
            _render(opts, q, streams, messages)
    finally:
        session.close()


def _render(opts: AskOptions, q: Question, streams: Streams, messages: Messages) -> None:
    response = q.answer()
    answer, schema = response.answer, q.schema
    # JSON, extracted code and labels go out as they are, never rendered as Markdown.
    plain = schema is None and not opts.extract and q.plan.labels is None  # not JSON, a code block, a label
    sink = _CheckedSink(make_sink(streams.stdout, markdown=streams.stdout_is_terminal and plain))
    # One generator for the whole answer, closed below however writing ends: a reader that
    # went away (`| head -c 20`) then stops it as Ctrl-C does, and it is logged the same way.
    pieces = iter(response)
    try:
        if opts.extract:
            stream_answer(_first_block(pieces, messages), sink, waiting=messages.status("Writing the answer…"))
        elif opts.stream:
            stream_answer(pieces, sink, waiting=messages.status("Reading the prompt…"))
        else:  # lazily, so the spinner covers the whole generation
            stream_answer(_whole(pieces, schema is not None), sink, waiting=messages.status("Writing the answer…"))
        if response.citations:
            _cite(response, streams, messages, to_stdout=streams.stdout_is_terminal and plain)
    finally:
        pieces.close()  # type: ignore[attr-defined]
        if opts.stats and answer.stats is not None:
            _stats(q, response, messages)
    stats = answer.stats
    if schema is not None and stats is not None and stats.stop_reason is not StopReason.INTERRUPTED:
        check_json(answer.emitted)
    if stats is not None and stats.stop_reason is StopReason.LOOP:
        messages.warn("stopped early: the answer started repeating itself")
    elif stats is not None and stats.stop_reason is StopReason.LENGTH:
        messages.warn(f"stopped at the {q.config.max_tokens}-token limit (raise it with -n)")


def _cite(response: Response, streams: Streams, messages: Messages, *, to_stdout: bool) -> None:
    """The evidence after the answer: on stdout when it is a terminal (dimmed), else on stderr,
    so a script's stdout holds only the answer (and JSON stays JSON) while a person still sees them."""
    citations = [(c.where, c.text) for c in response.citations]
    if not to_stdout:
        messages.citations(citations)
        return
    try:
        write_citations(streams.stdout, citations, terminal=True)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _output_error(exc) from exc


def _stats(q: Question, response: Response, messages: Messages) -> None:
    """--stats: images, the long-document strategy, tokens and speed, labels, caches."""
    engine, answer, report = q.session.engine, response.answer, response.report
    if q.vision is not None:
        for line in q.vision.stats_lines():
            messages.line(line)
    if report is not None:
        messages.line(report.stats_line())
    assert answer.stats is not None
    messages.line(format_stats(answer.stats, load_seconds=q.session.load_seconds, kv_bytes=engine.info.kv_bytes))
    if response.scores is not None:
        for line in label_lines(response.scores):
            messages.line(line)
    # Only the llama.cpp engine has an on-disk prefix cache and prompt lookup.
    if isinstance(engine, PromptLookupCounters) and engine.lookup_guessed:
        messages.line(f"lookup: kept {engine.lookup_kept} of {engine.lookup_guessed} guessed tokens")
    if isinstance(engine, PrefixCacheEvents) and engine.cache_events is not None:
        messages.line(format_cache_events(engine.cache_events))


def label_lines(scores: LabelScores) -> list[str]:
    """--stats with --labels: each label's probability (normalized over the labels), and
    with --calibrate the model's own ones and the content-free bias that corrected them."""
    def shares(probabilities: tuple[float, ...]) -> str:
        return " | ".join(f"{label} {p:.3f}" for label, p in zip(scores.labels, probabilities, strict=True))

    lines = [f"labels: {shares(scores.probabilities)}" + (" (calibrated)" if scores.raw is not None else "")]
    if scores.raw is not None:
        lines.append(f"labels before calibration: {shares(scores.raw.probabilities)}")
    if scores.content_free is not None:
        lines.append(f"content-free inputs: {shares(scores.content_free)}")
    return lines


def _first_block(pieces: Iterator[str], messages: Messages) -> Iterator[str]:
    """-x: the first fenced code block of the whole answer (the answer itself if it has none)."""
    text = "".join(pieces)
    block = first_code_block(text)
    if block is None:
        messages.warn("the answer has no fenced code block; printing it whole")
    yield text if block is None else block
