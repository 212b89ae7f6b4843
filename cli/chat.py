"""`askgpt chat`: the REPL's terminal side (reading lines, rendering answers).

Line editing and history come from the standard library's readline (GNU readline
or libedit, whichever Python was built with): arrow keys, Ctrl-R search, and the
history kept across runs in the data folder, with no extra dependency; the REPL
needs nothing prompt_toolkit adds beyond that.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from askgpt.chat_session import MULTILINE, ChatSession, Command, help_text, parse_line
from askgpt.cli.terminal.render import (
    Messages,
    format_error,
    format_stats,
    make_sink,
    stream_answer,
    write_citations,
)
from askgpt.runtime.documents.inputs import read_document
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.errors import AskgptError
from askgpt.runtime.files import atomic_write, atomic_write_with, private_folder
from askgpt.runtime.prompting.generate import Answer
from askgpt.runtime.prompting.structured import check_json
from askgpt.runtime.store.settings import Settings
from askgpt.session import AskOptions, ChatOptions, ConversationLogger, Session, VisionStep, citing, open_chat

PROMPT = "askgpt> "
MORE = "....... "


class _Lines:
    """Input lines with readline editing, history kept in ``history_file``."""

    def __init__(self, history_file: Path) -> None:
        self._file = history_file
        try:
            import readline

            self._readline: object | None = readline
            private_folder(history_file.parent)
            if history_file.exists():
                readline.read_history_file(history_file)
            readline.set_history_length(1000)
        except (ImportError, OSError):
            self._readline = None

    def read(self, prompt: str) -> str:
        return input(prompt)

    def save(self) -> None:
        if self._readline is not None:
            # The history holds the user's questions: written whole (never half a file)
            # and private (0600), through the atomic writer.
            write = self._readline.write_history_file  # type: ignore[attr-defined]
            try:
                atomic_write_with(self._file, lambda tmp: write(str(tmp)))
            except OSError:
                pass

    def question(self) -> str:
        """One line, or the lines between two \"\"\" lines."""
        line = self.read(PROMPT)
        if line.strip() != MULTILINE:
            return line
        lines = []
        while (more := self.read(MORE)).strip() != MULTILINE:
            lines.append(more)
        return "\n".join(lines)


def run_chat(opts: ChatOptions, *, settings: Settings, engine_factory: EngineFactory, messages: Messages,
             stdout: TextIO | None = None) -> None:
    # sys.stdout is read now, not when this module was imported (a caller may have swapped it).
    stdout = stdout or sys.stdout
    session = Session(settings, opts.load, engine_factory=engine_factory, notifier=messages)
    try:
        chat = open_chat(session, opts)
        repl = _Repl(chat, session, opts, messages, stdout)
        for path in opts.files:
            repl.command(Command("file", path))
        for path in opts.images:
            repl.command(Command("image", path))
        repl.loop()
    finally:
        session.close()


class _Repl:
    def __init__(self, chat: ChatSession, session: Session, opts: ChatOptions, messages: Messages,
                 stdout: TextIO) -> None:
        self.chat, self.session, self.opts, self.messages, self.stdout = chat, session, opts, messages, stdout
        self.lines = _Lines(session.settings.paths.data_dir / "chat_history")
        self.log = ConversationLogger(session.settings, messages, log=opts.log)
        self.cite = citing(opts.cite, session.settings)
        self.last: Answer | None = None

    def loop(self) -> None:
        self.messages.line(f"askgpt chat with {self.session.ref.name}: /help for commands, Ctrl-D to leave.")
        while True:
            try:
                typed = self.lines.question()
            except EOFError:  # Ctrl-D
                self.stdout.write("\n")
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
                self.stdout.write("\n")
                continue
            try:
                parsed = parse_line(typed)
                if isinstance(parsed, Command):
                    if parsed.name == "exit":
                        break
                    self.command(parsed)
                elif parsed:
                    self.answer(parsed)
            except AskgptError as exc:
                self.messages.line(format_error(exc))
        self.lines.save()

    def answer(self, text: str) -> None:
        chat = self.chat
        request = chat.request(text)
        if chat.dropped_turns:
            self.messages.warn(f"left out the {chat.dropped_turns} oldest turn(s) to fit the context")
        answer = chat.ask(request)
        self.last = answer
        # JSON goes out as it is, never rendered as Markdown.
        sink = make_sink(self.stdout, markdown=self.stdout.isatty() and chat.schema is None)
        try:
            stream_answer(answer, sink, waiting=self.messages.status("Reading the prompt…"))
            self._cite()
        except KeyboardInterrupt:  # stop this answer, keep the session
            self.stdout.write("\n")
            self.messages.line("(stopped)")
        finally:
            chat.finish(request, answer)
            self.log.record_turn(self.session.ref, request, answer, chat.config)
        if self.opts.stats and answer.stats is not None:
            self._stats("")
        if chat.schema is not None and answer.stats is not None:
            check_json(answer.emitted)  # a cut-off object is an error line, and the session goes on

    def _cite(self) -> None:
        """The evidence the answer was given, as `askgpt ask` shows it: on a terminal stdout
        (dimmed), else on stderr; JSON answers keep stdout to themselves."""
        report = self.chat.report
        if not self.cite or report is None or not report.quotes:
            return
        if self.stdout.isatty() and self.chat.schema is None:
            write_citations(self.stdout, report.quotes, terminal=True)
        else:
            self.messages.citations(report.quotes)

    def command(self, command: Command) -> None:
        handlers: dict[str, Callable[[str], None]] = {
            "image": self._image, "file": self._file, "system": self._system, "example": self._example,
            "clear": self._clear, "save": self._save, "stats": self._stats, "model": self._model,
            "help": lambda _: self.messages.line(help_text()),
        }
        handlers[command.name](command.argument)

    def _file(self, path: str) -> None:
        document = read_document(path)
        self.chat.documents.append(document)
        self.messages.line(f"attached {document.source} to the next question")

    def _image(self, path: str) -> None:
        step = VisionStep(AskOptions(images=(path,)), self.session, None)
        self.chat.images.extend(step.blocks())
        self.messages.line(f"attached {path} to the next question")

    def _system(self, text: str) -> None:
        self.chat.system = text or None
        self.messages.line("system prompt set" if text else "no system prompt")

    def _example(self, text: str) -> None:
        example = self.chat.add_example(text)
        self.messages.line(f"example added: {example.input} => {example.output}")

    def _clear(self, _: str) -> None:
        self.chat.clear()
        self.log.new_conversation()
        self.messages.line("conversation cleared")

    def _save(self, path: str) -> None:
        target = Path(path).expanduser()
        with atomic_write(target) as fh:
            fh.write(self.chat.markdown().encode("utf-8"))
        self.messages.line(f"saved {len(self.chat.history)} turn(s) to {target}")

    def _stats(self, _: str) -> None:
        info = self.chat.engine.info
        if self.last is not None and self.last.stats is not None:
            self.messages.line(format_stats(self.last.stats, load_seconds=0.0, kv_bytes=info.kv_bytes))
        self.messages.line(f"model {self.session.ref.name} | context {info.n_ctx} tokens | "
                           f"{len(self.chat.history)} turn(s) in this conversation")

    def _model(self, name: str) -> None:
        started = time.perf_counter()
        self.session.switch(name)
        self.chat.use_engine(self.session.engine)
        self.messages.line(f"now {self.session.ref.name} (loaded in {time.perf_counter() - started:.2f}s)")
