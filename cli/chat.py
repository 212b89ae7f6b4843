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
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from askgpt.chat_session import MULTILINE, ChatSession, Command, help_text, parse_line
from askgpt.cli.ask import AskOptions, VisionStep, resolve_ref
from askgpt.cli.render import Messages, format_error, format_stats, make_sink, stream_answer
from askgpt.conversation import exchange_of
from askgpt.runtime.documents.inputs import read_document
from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import AskgptError
from askgpt.runtime.files import atomic_write, atomic_write_with, private_folder
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.prompting.generate import Answer, GenerationConfig
from askgpt.runtime.prompting.request import Request
from askgpt.runtime.store.log import ConversationLog, LogError, new_conversation_id
from askgpt.runtime.store.settings import Settings, engine_config, model_ref, system_prompt

PROMPT = "askgpt> "
MORE = "....... "


@dataclass(frozen=True)
class ChatOptions:
    model: str | None = None
    endpoint: str | None = None
    system: str | None = None
    examples: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    ctx: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    log: bool = True


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
    d = settings.defaults
    config = GenerationConfig(
        max_tokens=opts.max_tokens or d.max_tokens,
        sampling=_sampling(opts, d.temperature, d.repeat_penalty))
    ref = resolve_ref(settings, opts.model, opts.endpoint)  # an error names where a default model was set
    engine = _load(ref, opts, settings, engine_factory, messages)
    session = ChatSession(engine, config, system=system_prompt(settings, opts.system))
    for example in opts.examples:
        session.add_example(example)
    repl = _Repl(session, ref, opts, settings, engine_factory, messages, stdout)
    try:
        for path in opts.files:
            repl.command(Command("file", path))
        for path in opts.images:
            repl.command(Command("image", path))
        repl.loop()
    finally:
        session.engine.close()


def _sampling(opts: ChatOptions, temperature: float, repeat_penalty: float) -> SamplingConfig:
    return SamplingConfig(temperature=opts.temperature if opts.temperature is not None else temperature,
                          repeat_penalty=repeat_penalty)


def _load(ref: ModelRef, opts: ChatOptions, settings: Settings, engine_factory: EngineFactory,
          messages: Messages) -> Engine:
    with messages.status(f"Loading {ref.name}…"):
        return engine_factory(ref, engine_config(settings, ref, ctx=opts.ctx))


class _Repl:
    def __init__(self, session: ChatSession, ref: ModelRef, opts: ChatOptions, settings: Settings,
                 engine_factory: EngineFactory, messages: Messages, stdout: TextIO) -> None:
        self.session, self.ref, self.opts, self.settings = session, ref, opts, settings
        self.engine_factory, self.messages, self.stdout = engine_factory, messages, stdout
        self.lines = _Lines(settings.paths.data_dir / "chat_history")
        self.log = ConversationLog(settings.paths.log_file) if opts.log and settings.defaults.log else None
        self.conversation_id = new_conversation_id()
        self.last: Answer | None = None

    def loop(self) -> None:
        self.messages.line(f"askgpt chat with {self.ref.name}: /help for commands, Ctrl-D to leave.")
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
        session = self.session
        request = session.request(text)
        if session.dropped_turns:
            self.messages.warn(f"left out the {session.dropped_turns} oldest turn(s) to fit the context")
        answer = session.ask(request)
        self.last = answer
        sink = make_sink(self.stdout, markdown=self.stdout.isatty())
        try:
            stream_answer(answer, sink, waiting=self.messages.status("Reading the prompt…"))
        except KeyboardInterrupt:  # stop this answer, keep the session
            self.stdout.write("\n")
            self.messages.line("(stopped)")
        finally:
            session.finish(request, answer)
            self._record(request, answer)

    def _record(self, request: Request, answer: Answer) -> None:
        if self.log is None or answer.stats is None:
            return
        cfg = self.session.config
        try:
            self.log.record(exchange_of(self.conversation_id, self.ref, request, answer,
                                        options={"temperature": cfg.sampling.temperature, "chat": True}))
        except (LogError, OSError) as exc:
            self.messages.warn(f"{getattr(exc, 'message', exc)}; this turn was not logged")

    def command(self, command: Command) -> None:
        handlers: dict[str, Callable[[str], None]] = {
            "image": self._image, "file": self._file, "system": self._system, "example": self._example,
            "clear": self._clear, "save": self._save, "stats": self._stats, "model": self._model,
            "help": lambda _: self.messages.line(help_text()),
        }
        handlers[command.name](command.argument)

    def _file(self, path: str) -> None:
        document = read_document(path)
        self.session.documents.append(document)
        self.messages.line(f"attached {document.source} to the next question")

    def _image(self, path: str) -> None:
        step = VisionStep(AskOptions(images=(path,)), self.settings, self.messages, None)
        self.session.images.extend(step.blocks(self.session.engine, self.ref))
        self.messages.line(f"attached {path} to the next question")

    def _system(self, text: str) -> None:
        self.session.system = text or None
        self.messages.line("system prompt set" if text else "no system prompt")

    def _example(self, text: str) -> None:
        example = self.session.add_example(text)
        self.messages.line(f"example added: {example.input} => {example.output}")

    def _clear(self, _: str) -> None:
        self.session.clear()
        self.conversation_id = new_conversation_id()
        self.messages.line("conversation cleared")

    def _save(self, path: str) -> None:
        target = Path(path).expanduser()
        with atomic_write(target) as fh:
            fh.write(self.session.markdown().encode("utf-8"))
        self.messages.line(f"saved {len(self.session.history)} turn(s) to {target}")

    def _stats(self, _: str) -> None:
        info = self.session.engine.info
        if self.last is not None and self.last.stats is not None:
            self.messages.line(format_stats(self.last.stats, load_seconds=0.0, kv_bytes=info.kv_bytes))
        self.messages.line(f"model {self.ref.name} | context {info.n_ctx} tokens | "
                           f"{len(self.session.history)} turn(s) in this conversation")

    def _model(self, name: str) -> None:
        ref = model_ref(self.settings, name, self.opts.endpoint)
        started = time.perf_counter()
        engine = _load(ref, self.opts, self.settings, self.engine_factory, self.messages)
        self.session.engine.close()
        self.session.use_engine(engine)
        self.ref = ref
        self.messages.line(f"now {ref.name} (loaded in {time.perf_counter() - started:.2f}s)")
