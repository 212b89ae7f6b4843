"""Continuing a conversation (-c/--cid): earlier turns replayed within the context budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from askgpt.runtime.engine.base import Engine
from askgpt.runtime.files import sha256_file
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.prompting.generate import Answer
from askgpt.runtime.prompting.request import Document, Request, Turn
from askgpt.runtime.store.log import Attachment, Exchange

# Earlier turns may take at most this share of the context window, so documents and
# the answer keep room; the oldest turns go first.
HISTORY_SHARE = 0.5
TURN_OVERHEAD = 12  # template tokens around one user/assistant pair (role markers, newlines)


def turns_of(exchanges: Sequence[Exchange]) -> tuple[Turn, ...]:
    """The turns as the model saw them. The log keeps documents' names, not their
    text, so a replayed question names them instead of repeating them."""
    turns = []
    for ex in exchanges:
        user = ex.prompt
        if ex.documents:
            user = f"(about {', '.join(d.source for d in ex.documents)}) {user}"
        turns.append(Turn(user, ex.answer))
    return tuple(turns)


def not_replayed(exchanges: Sequence[Exchange]) -> list[str]:
    """The names of the documents and images of ``exchanges``: a continued conversation
    replays their questions and answers, never their contents (the log keeps no contents)."""
    names = (a.source for ex in exchanges for a in (*ex.documents, *ex.images))
    return list(dict.fromkeys(names))


def fit_history(engine: Engine, request: Request, *, share: float = HISTORY_SHARE) -> tuple[Request, int]:
    """Keep the latest turns whose tokens fit in ``share`` of the context window; the
    ones left out are named in a short extractive summary added to the system prompt.
    Returns the request and how many of the oldest turns were left out."""
    budget = int(engine.info.n_ctx * share)
    kept: list[Turn] = []
    used = 0
    for turn in reversed(request.history):
        cost = len(engine.tokenize(turn.user + turn.assistant, special=False)) + TURN_OVERHEAD
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    dropped = request.history[: len(request.history) - len(kept)]
    if not dropped:
        return request, 0
    note = f"Earlier in this conversation (left out to fit): {summarize_turns(dropped)}"
    system = f"{request.system}\n\n{note}" if request.system else note
    return replace(request, history=tuple(kept), system=system), len(dropped)


def summarize_turns(turns: Sequence[Turn], *, last: int = 5, words: int = 16) -> str:
    """The gist of left-out turns, extractively: the opening words of each of the last
    ``last`` questions and answers (a model call here would cost more than the turns)."""
    def opening(text: str) -> str:
        parts = text.split()
        return " ".join(parts[:words]) + (" …" if len(parts) > words else "")

    shown = turns[-last:]
    lines = [f'the user asked "{opening(t.user)}" and was told "{opening(t.assistant)}"' for t in shown]
    skipped = len(turns) - len(shown)
    return ("; ".join(lines) + (f" ({skipped} earlier turns not shown)" if skipped else "")).strip()


def document_attachment(doc: Document) -> Attachment:
    if doc.on_disk and doc.path is not None:
        return Attachment(doc.source, doc.size, sha256_file(doc.path))
    return Attachment.of_bytes(doc.source, doc.text.encode("utf-8"))


def exchange_of(conversation_id: str, ref: ModelRef, request: Request, answer: Answer, *,
                options: dict[str, object], images: Sequence[Attachment] = ()) -> Exchange:
    """The log entry for one answered (or interrupted) request."""
    stats = answer.stats
    return Exchange(
        conversation_id=conversation_id, model=ref.name, model_path=ref.location,
        prompt=request.instruction, answer=answer.emitted, system=request.system,
        examples=tuple((e.input, e.output) for e in request.examples),
        documents=tuple(document_attachment(d) for d in request.documents), images=tuple(images),
        options=dict(options),
        prompt_tokens=stats.prompt_tokens if stats else None,
        answer_tokens=stats.generated_tokens if stats else None,
        prompt_seconds=stats.prompt_seconds if stats else None,
        answer_seconds=stats.generate_seconds if stats else None,
        stop_reason=stats.stop_reason.value if stats else None,
    )
