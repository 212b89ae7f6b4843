"""The Python API: `from askgpt import Assistant`.

    from askgpt import Assistant

    with Assistant() as a:                      # the built-in model, or model="NAME|PATH"
        r = a.ask("What is BPE?", files=["notes.md"], examples=["cat => chat"])
        for piece in r:                         # streamed as the model writes
            print(piece, end="")
        print(r.usage)                          # token counts and timings
        r = a.ask("Who betrayed the captain?", files=["book.txt"], retrieval="hybrid")
        for c in r.citations:                   # the evidence the model was given, with where it is
            print(c.where, c.text)
        data = a.ask("A city and its country", schema={"city": "string", "country": "string"}).json()
        r = a.ask("The soup was cold.", labels=["positive", "negative"], calibrate=True)
        r.text(), r.scores.probabilities        # the label, and each label's probability
        a.ask("I loved it.", labels="auto", examples="pool.jsonl", shots=4, select="similar")
        chat = a.chat(system="Be terse.")
        chat.ask("My name is Ada.").text()
        chat.ask("What is my name?").text()     # the earlier turn is in the model's context

`ask` goes through the same `Session` as `askgpt ask` (askgpt.session): the same
option checks, image reading, long-document strategies, and the same conversation
log (``log=False``, or the config's ``log = false``, turns it off as --no-log does).
What the CLI would warn about is kept on `Response.warnings`. `chat` wraps the
`ChatSession` that `askgpt chat` uses. Errors are the typed `AskgptError`s of
runtime.errors. Nothing is printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from askgpt.chat_session import ChatSession
from askgpt.response import Citation, Response
from askgpt.runtime.documents.inputs import load_examples, read_document
from askgpt.runtime.documents.strategies import LongContextConfig, Progress, Retrieval
from askgpt.runtime.engine.base import Engine, EngineConfig
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.icl.selection import Select
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import Example, ImageBlock, Request, parse_example
from askgpt.runtime.store.settings import (
    Settings,
    generation_config,
    load_settings,
    system_prompt,
)
from askgpt.session import AskOptions, LoadOptions, Quiet, Session, citing, long_context_config

if TYPE_CHECKING:
    from askgpt.vision.images import LoadedImage
    from askgpt.vision.pipeline import ImageReport, VisionConfig

__all__ = ["Assistant", "Chat", "Citation", "Response"]

Schema = dict[str, Any] | str


class Assistant:
    """A model loaded on first use and kept for every later question; close it (or
    use ``with``) to free its memory."""

    def __init__(self, model: str | None = None, *, endpoint: str | None = None, ctx: int | None = None,
                 log: bool = True, settings: Settings | None = None, engine_factory: EngineFactory | None = None,
                 ref: ModelRef | None = None, load: EngineConfig | None = None) -> None:
        """``model``/``endpoint`` name the model as -m/--endpoint do; ``log=False`` keeps
        this assistant's exchanges out of the conversation log (as --no-log); ``ref`` and
        ``load`` give the model already resolved, with every load setting."""
        import os

        self._settings = settings or load_settings(os.environ)
        self._log = log
        self._session = Session(self._settings, LoadOptions(model=model, endpoint=endpoint, ctx=ctx),
                                engine_factory=engine_factory, ref=ref, config=load)

    @property
    def engine(self) -> Engine:
        """The loaded model (loaded now, on first use)."""
        return self._session.engine

    def ask(self, prompt: str, *, images: Sequence[str] = (), files: Sequence[str] = (),
            examples: Sequence[str | tuple[str, str]] | str = (), system: str | None = None,
            schema: Schema | None = None, max_tokens: int | None = None, temperature: float | None = None,
            strategy: str = "auto", labels: Sequence[str] | str | None = None, calibrate: bool = False,
            shots: int | None = None, select: str | Select | None = None, seed: int | None = None,
            template: str | None = None, retrieval: str | Retrieval | None = None,
            cite: bool | None = None) -> Response:
        """Ask one question. ``files`` are documents (longer ones go through ``strategy``,
        as `askgpt --strategy`, their evidence found by ``retrieval``: bm25|semantic|hybrid, as
        --retrieval; `Response.citations` holds that evidence unless ``cite=False`` or the
        config's ``cite = false``); ``examples`` are "IN => OUT" strings or (in, out) pairs, or
        the path of a JSONL file of them; ``schema`` constrains the answer to JSON (a dict, a
        JSON schema or shorthand text); ``template`` is a saved template's name (as -T).

        In-context learning, as `askgpt --labels/--calibrate/--shots/--select/--seed`:
        ``labels`` (a list, "A,B", or "auto" for the examples' outputs) restricts the answer
        to one label, chosen by the model's log-probabilities (`Response.scores`);
        ``calibrate`` corrects them with content-free inputs; ``shots`` draws that many of the
        examples per question by ``select`` (random|similar|diverse), repeatable by ``seed``."""
        notes = Quiet()
        self._session.notifier = notes
        opts = AskOptions(
            prompt_words=(prompt,), files=tuple(files), images=tuple(images), system=system,
            examples_file=examples if isinstance(examples, str) else None,
            example_values=() if isinstance(examples, str) else _examples(examples),
            schema=None if schema is None else schema if isinstance(schema, str) else json.dumps(schema),
            max_tokens=max_tokens, temperature=temperature, strategy=strategy,
            labels=labels if labels is None or isinstance(labels, str) else tuple(labels), calibrate=calibrate,
            shots=shots, select=select.value if isinstance(select, Select) else select, seed=seed,
            template=template, log=self._log,
            retrieval=retrieval.value if isinstance(retrieval, Retrieval) else retrieval, cite=cite)
        question = self._session.question(opts)
        try:
            response = question.answer()
        finally:
            question.close()
        response.warnings = notes.warnings
        return response

    def respond(self, request: Request, config: GenerationConfig, long_context: LongContextConfig | None = None,
                *, progress: Progress | None = None) -> Response:
        """Answer a built `Request` (documents longer than the model reads well go through
        the long-document strategies); not logged."""
        return self._session.respond(request, config, long_context, progress=progress)

    def choose(self, request: Request, labels: Sequence[str], *, calibrate: bool = False,
               config: GenerationConfig | None = None) -> Response:
        """Answer a built `Request` with one of ``labels``: by the labels' log-probabilities,
        or for a served model by a grammar (`Response.note` says so); not logged."""
        return self._session.choose(request, labels, calibrate=calibrate, config=config)

    def image_blocks(self, images: Sequence[LoadedImage], vision: VisionConfig | None = None, *,
                     mmproj: str | None = None) -> tuple[tuple[ImageBlock, ...], list[ImageReport]]:
        """Images as this model gets them (`Session.image_blocks`)."""
        return self._session.image_blocks(images, vision, mmproj=mmproj)

    def chat(self, *, system: str | None = None, examples: Sequence[str | tuple[str, str]] = (),
             max_tokens: int | None = None, temperature: float | None = None,
             retrieval: str | Retrieval | None = None, cite: bool | None = None) -> Chat:
        """A conversation: each `Chat.ask` sees the earlier turns (kept in the model's cache);
        ``retrieval`` and ``cite`` as for `ask`."""
        config = generation_config(self._settings, max_tokens=max_tokens, temperature=temperature)
        long_context = long_context_config(self._settings, retrieval)
        session = ChatSession(self.engine, config, system=system_prompt(self._settings, system),
                              examples=list(_examples(examples)), long_context=long_context)
        return Chat(session, cite=citing(cite, self._settings))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chat:
    """A conversation on an `Assistant`'s model (`Assistant.chat`)."""

    def __init__(self, session: ChatSession, *, cite: bool = True) -> None:
        self._session = session
        self._cite = cite

    def ask(self, prompt: str, *, files: Sequence[str] = ()) -> Response:
        session = self._session
        session.documents.extend(read_document(f) for f in files)
        request = session.request(prompt)
        answer = session.ask(request)
        return Response(answer, report=session.report, cite=self._cite,
                        on_done=lambda done: session.finish(request, done))

    @property
    def turns(self) -> int:
        return len(self._session.history)


def _examples(examples: Sequence[str | tuple[str, str]] | str) -> tuple[Example, ...]:
    if isinstance(examples, str):  # a JSONL file, as --examples
        return load_examples(examples)
    return tuple(parse_example(e) if isinstance(e, str) else Example(*e) for e in examples)
