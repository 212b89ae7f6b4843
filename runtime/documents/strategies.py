"""The long-context manager: documents of any length are used, never silently truncated.

Small models read far less than their window well (the built-in model copies
a planted fact from about 650 tokens of context and fails at about 1,600), so
"fits the window" is not the test; "short enough to read well" is. When the
documents are longer than that, a strategy decides what the model reads:

- ``stuff``: everything, at once (it fits and is short enough);
- ``retrieve`` (questions): chunks ranked against the question with BM25
  (bm25s), the best packed in document order into a reading-size context,
  question last; with no matching terms at all, a map step extracts the
  relevant lines of every chunk instead, when that is at most
  ``chunk_calls`` model calls, else the input is read as an overview (below);
- ``map-reduce`` (summaries, "find all"): each chunk is mapped to its most
  distinctive sentences (runtime.documents.salience), the best that fit are kept in
  document order, and the model answers from them; they are quoted after it;
- ``refine``: a running answer carried through the chunks in order.

``auto`` picks from the fit and the instruction and says which and why. A
question that names nothing particular ("what is this?", "explain this") is a
whole-input task: map-reduce's key sentences plus the input's opening (an
overview), one model call whatever the input's length. Only an explicit
``--strategy refine`` reads every part of a large input with the model, and
says how long that will take.
Per-chunk model calls (extract, refine) put the instruction before the chunk,
so llama.cpp's prefix cache evaluates the shared part once, not once per chunk.
Documents on disk (too large to hold, runtime.documents.spool) are chunked segment by
segment and never held whole.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from askgpt.runtime.documents.chunking import Chunk, chunk_text
from askgpt.runtime.documents.salience import KeySentence, key_sentences
from askgpt.runtime.documents.spool import SEGMENT_CHARS, segments
from askgpt.runtime.engine.base import Engine, round_context
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import ContextOverflowError, UsageError
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, answer_reserve, ask
from askgpt.runtime.prompting.request import Document, Request, attribute
from askgpt.runtime.prompting.template import format_prompt

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_BLOCK_MARKUP_TOKENS = 48  # the <document source="..."> wrapper of a chunk in a step
_MIN_STEP_TOKENS = 64  # the smallest part of a document a map/extract/refine call reads

# Words that name nothing in a document: function words (bm25s's English stop words and
# more) and the words of a request about the input itself. A question made only of these
# ("what is this?", "explain this", "what do you think?") has nothing to retrieve by.
_GENERIC = frozenset('''
a an and are as at be but by for if in into is it no not of on or such that the their then there these they
this to was will with what whats which who whom whose why how when where were been being am do does did done
doing can could would should shall may might must i me my we us our you your yours he she him her his its them
those here so just please ok okay hey hi now again also really very much more exactly anything something
everything whole entire overall all any some about above below following after before up out over from
tell explain explains describe think thoughts opinion mean means meaning meant say says said give show help
know see look looks read understand thing things stuff text document doc file files input content contents
data page one kind sort type happening happen happens like get got make makes written write
brief briefly short simple simply plain words sense going
'''.split())

# Instructions that need every part of the input rather than the best-matching part.
_WHOLE_INPUT = re.compile(
    r"\b(summar\w*|overview|tl;?dr|outline|recap|key (points|ideas|facts)|main (points|ideas)|"
    r"(list|find|extract|show|count|name) (all|every|each)|all (the )?(errors?|warnings?|names?|dates?)|"
    r"every\b|each\b|themes?)",
    re.IGNORECASE,
)


class Strategy(str, Enum):
    AUTO = "auto"
    STUFF = "stuff"
    RETRIEVE = "retrieve"
    MAP_REDUCE = "map-reduce"
    REFINE = "refine"


@dataclass(frozen=True)
class LongContextConfig:
    strategy: Strategy = Strategy.AUTO
    # How many document tokens the model reads well at once; the built-in model's measured
    # limit is between 650 and 1,600, so 1,024 by default (--read-tokens for larger models).
    read_tokens: int = 1024
    chunk_tokens: int = 256  # retrieval granularity
    overlap: int = 32
    note_tokens: int = 160  # the most a map or refine step may write
    max_levels: int = 4  # levels of notes (the extract fallback of retrieve) before giving up
    margin: int = 16  # tokens kept free for template seams
    segment_chars: int = SEGMENT_CHARS  # how much of a document on disk is chunked at a time
    # Per-part model calls a strategy makes unasked (retrieve's extract fallback). One call
    # reads a part of up to --read-tokens and writes a note of up to note_tokens, about what
    # a whole answer costs (measured on the built-in model on 2 shared cores: 14 to 50 s).
    # 8 still covers an input of about 8k tokens part by part; past it the input is read
    # as an overview, and only an explicit --strategy refine reads every part.
    chunk_calls: int = 8

    def __post_init__(self) -> None:
        if self.read_tokens < 64:
            raise UsageError("--read-tokens must be at least 64")


@dataclass
class LongContextReport:
    strategy: Strategy
    reason: str
    doc_tokens: int
    window: int
    chunks: int = 0
    used: int = 0
    model_calls: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Sentences quoted from the input (map-reduce): (where, text), shown after the answer.
    quotes: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        what = {
            Strategy.STUFF: "read whole",
            Strategy.RETRIEVE: f"retrieval over {self.chunks:,} chunks, {self.used:,} used",
            Strategy.MAP_REDUCE: f"map-reduce over {self.chunks:,} chunks, {self.used:,} key sentences",
            Strategy.REFINE: f"refine through {self.chunks:,} chunks",
        }[self.strategy]
        return (f"document: {self.doc_tokens:,} tokens, window {self.window:,} -> {what} "
                f"({self.reason})")

    def stats_line(self) -> str:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (f"long context: {self.strategy.value}, {self.doc_tokens:,} document tokens, "
                f"{self.chunks} chunks, {self.used} used, {self.model_calls} model calls | {stages}")


def is_whole_input_task(instruction: str) -> bool:
    return bool(_WHOLE_INPUT.search(instruction))


def distinctive_words(instruction: str) -> list[str]:
    """The words of ``instruction`` that can name something in a document."""
    return [w for w in re.findall(r"[a-z0-9]+", instruction.lower()) if w not in _GENERIC and len(w) > 1]


def is_vague_question(instruction: str) -> bool:
    """A question with nothing to look up ("what is this?", "explain this"): it is about the
    whole input, so it is answered from an overview, never by reading every part."""
    return not distinctive_words(instruction)


def _map_task(instruction: str) -> str:
    return (f"{instruction}\n\nDo this for the part of a longer document below only. "
            "Keep names, numbers and facts exactly as written. Be brief.")


def _extract_task(instruction: str) -> str:
    return (f"Copy the sentences from the document below that help answer this question: "
            f"{instruction}\nIf none do, write only NONE.")


def _refine_task(instruction: str, running: str) -> str:
    if not running:
        return instruction
    return (f"{instruction}\n\nThe answer so far, from the earlier parts:\n{running}\n\n"
            "Improve it with the next part below; keep what is still right.")


class LongContext:
    """Answers a request whose documents may be far longer than the window."""

    def __init__(self, engine: Engine, config: LongContextConfig, *, progress: Progress | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self._engine = engine
        self._config = config
        self._progress = progress or (lambda stage, done, total: None)
        self._notify = notify or (lambda text: None)  # one line for the user (the CLI: stderr)
        self.last_request: Request | None = None

    # --- measuring ----------------------------------------------------------------------------------

    def count(self, text: str) -> int:
        return len(self._engine.tokenize(text, add_bos=False, special=False))

    def _overhead(self, request: Request) -> int:
        """Tokens of the prompt without its documents: template, system, examples, images, instruction."""
        bare = format_prompt(self._engine.info, replace(request, documents=())).text
        return self.count(bare) + self._config.margin

    def _room(self, request: Request, answer_tokens: int) -> int:
        """Document tokens that fit the window beside everything else and the answer."""
        return self._engine.info.n_ctx - self._overhead(request) - answer_tokens

    def _wrapper(self, source: str) -> int:
        """Tokens a document's delimiters add around its text in the prompt."""
        return self.count(f'<document source="{attribute(source)}">\n\n</document>\n\n')

    def _doc_tokens(self, doc: Document) -> int:
        """A document's tokens with its delimiters. One on disk (too large to hold) is
        estimated from its size, 1 token per 4 bytes, far past any window, and its exact
        count is taken while it is chunked."""
        if doc.on_disk:
            return doc.size // 4 + self._wrapper(doc.source)
        return self.count(doc.text) + self._wrapper(doc.source)

    def _step_size(self, request: Request, task: str, budget: int, *, carried: int = 0) -> int:
        """Chunk size for a map/extract/refine call with ``task``: within the reading budget,
        and leaving that call room for its own instruction, the chunk's delimiters, its note
        and ``carried`` tokens of text it takes along (refine's running answer)."""
        step = Request(task, system=request.system)
        room = self._room(step, self._config.note_tokens) - _BLOCK_MARKUP_TOKENS - carried
        if room < _MIN_STEP_TOKENS:
            # Parts of a few tokens each would mean thousands of model calls (hours) for
            # notes about nothing: refuse, and say what window would do.
            n_ctx = self._engine.info.n_ctx
            raise UsageError(f"a window of {n_ctx} tokens is too small to read the documents in parts",
                             hint=f"raise --ctx to at least {round_context(n_ctx - room + _MIN_STEP_TOKENS)}")
        return min(budget, room)

    # --- choosing -------------------------------------------------------------------------------------

    def plan(self, request: Request, config: GenerationConfig) -> tuple[Strategy, str, int, int]:
        """The strategy, why, the documents' size in tokens, and the reading budget."""
        doc_tokens = sum(self._doc_tokens(d) for d in request.documents)
        # The same room the final prompt is checked against (check_fits): at most half the
        # window is held for the answer, since a longer one continues by context shift.
        reserved = answer_reserve(config.max_tokens, self._engine.info.n_ctx)
        room = self._room(request, reserved)
        budget = min(self._config.read_tokens, room)
        chosen = self._config.strategy
        if chosen is Strategy.AUTO:
            if doc_tokens <= budget:
                return Strategy.STUFF, "it fits and is short enough to read well", doc_tokens, budget
            if is_whole_input_task(request.instruction):
                return Strategy.MAP_REDUCE, "the instruction needs every part", doc_tokens, budget
            if is_vague_question(request.instruction):
                return (Strategy.MAP_REDUCE, "the question names nothing particular, so it is answered "
                        "from an overview of the whole input", doc_tokens, budget)
            return Strategy.RETRIEVE, "a question: the best-matching parts are read", doc_tokens, budget
        if chosen is Strategy.STUFF and doc_tokens > room:
            total = doc_tokens + self._overhead(request)
            raise ContextOverflowError(given=total, fits=self._engine.info.n_ctx - reserved,
                                       n_ctx=self._engine.info.n_ctx, reserved=reserved)
        return chosen, "as asked", doc_tokens, budget

    # --- answering ------------------------------------------------------------------------------------

    def answer(self, request: Request, config: GenerationConfig) -> tuple[Answer, LongContextReport | None]:
        if not request.documents:
            return ask(self._engine, request, config), None
        strategy, reason, doc_tokens, budget = self.plan(request, config)
        report = LongContextReport(strategy, reason, doc_tokens, self._engine.info.n_ctx)
        if budget < 64 and strategy is not Strategy.STUFF:
            raise UsageError(f"the window leaves only {budget} tokens for the document",
                             hint="raise --ctx or lower -n/--max-tokens")
        started = time.perf_counter()
        if strategy is Strategy.STUFF:
            final = request
        elif strategy is Strategy.RETRIEVE:
            final = self._retrieve(request, budget, report)
        elif strategy is Strategy.MAP_REDUCE:
            final = self._map_reduce(request, budget, report, overview=is_vague_question(request.instruction))
        else:
            final = self._refine(request, budget, report)
        report.stage_seconds["prepare"] = time.perf_counter() - started
        report.model_calls += 1
        self.last_request = final  # what the model reads for the answer (for benchmarks and --debug)
        return ask(self._engine, final, config), report

    def chunks(self, documents: Sequence[Document], max_tokens: int, overlap: int) -> list[Chunk]:
        return list(self.iter_chunks(documents, max_tokens, overlap))

    def iter_chunks(self, documents: Sequence[Document], max_tokens: int, overlap: int,
                    tally: _Tally | None = None) -> Iterator[Chunk]:
        """Chunks of every document in order; one on disk is read segment by segment, so
        only a segment's chunks exist at a time. ``tally`` receives the tokens read."""
        for doc in documents:
            if doc.path is None:
                if tally is not None:
                    tally.tokens += self.count(doc.text) + self._wrapper(doc.source)
                yield from chunk_text(doc.text, doc.source, self.count, max_tokens=max_tokens, overlap=overlap)
                continue
            chars = lines = 0
            for segment in segments(doc.path, self._config.segment_chars):
                if tally is not None:
                    tally.tokens += self.count(segment)
                for c in chunk_text(segment, doc.source, self.count, max_tokens=max_tokens, overlap=overlap):
                    yield replace(c, first_line=c.first_line + lines, last_line=c.last_line + lines,
                                  start=c.start + chars, end=c.end + chars)
                chars += len(segment)
                lines += segment.count("\n")
            if tally is not None:
                tally.tokens += self._wrapper(doc.source)

    def _retrieve(self, request: Request, budget: int, report: LongContextReport) -> Request:
        cfg = self._config
        started = time.perf_counter()
        tally = _Tally()
        chunks = self.iter_chunks(request.documents, min(cfg.chunk_tokens, budget), cfg.overlap, tally)
        ranked, report.chunks = rank_chunks(chunks, request.instruction)
        report.stage_seconds["chunk + rank"] = time.perf_counter() - started
        if any(d.on_disk for d in request.documents):
            report.doc_tokens = tally.tokens
        if not ranked:
            # Nothing in the documents shares a term with the question: read every chunk with
            # the model when that is a few calls; past the budget, an overview (bounded cost).
            size = self._step_size(request, _extract_task(request.instruction), budget)
            calls = self._estimate_chunks(request.documents, size)
            if calls > cfg.chunk_calls:
                report.strategy = Strategy.MAP_REDUCE
                report.reason = (f"no part matches the question's words; reading all {calls:,} parts with the "
                                 "model would take a call each, so an overview was read (--strategy refine "
                                 "reads every part)")
                return self._map_reduce(request, budget, report, overview=True)
            report.reason = "no part matches the question's words, so every part was read for it"
            return self._extract(request, self.iter_chunks(request.documents, size, cfg.overlap),
                                 budget, report, total=calls)
        picked: list[Ranked] = []
        used = 0
        for r in sorted(ranked, key=lambda r: -r.score):
            cost = r.chunk.n_tokens + self._wrapper(r.chunk.where)
            if used + cost > budget:
                continue
            picked.append(r)
            used += cost
        report.used = len(picked)
        in_order = [r.chunk for r in sorted(picked, key=lambda r: r.seq)]
        return replace(request, documents=tuple(_as_documents(in_order, list(range(len(in_order))))))

    def _estimate_chunks(self, documents: Sequence[Document], size: int) -> int:
        """For progress bars over documents on disk, which are not chunked ahead."""
        step = max(1, size - self._config.overlap)
        return sum(max(1, self._doc_tokens(d) // step) for d in documents)

    def _note(self, task: str, chunk: Chunk, system: str | None) -> str:
        """One map/refine call; the task comes first so its tokens are a shared, cached prefix."""
        block = f'<document source="{attribute(chunk.where)}">\n{chunk.text.strip()}\n</document>'
        step = Request(f"{task}\n\n{block}", system=system)
        gen = GenerationConfig(self._config.note_tokens, SamplingConfig(temperature=0))
        return ask(self._engine, step, gen).text().strip()

    def _extract(self, request: Request, chunks: Iterable[Chunk], budget: int, report: LongContextReport,
                 *, total: int) -> Request:
        task = _extract_task(request.instruction)
        notes = []
        k = 0
        for k, chunk in enumerate(chunks, 1):
            self._progress("reading", k - 1, max(total, k))
            note = self._note(task, chunk, request.system)
            report.model_calls += 1
            if note and "NONE" not in note.upper()[:8]:
                notes.append(Document(chunk.where, note))
        self._progress("reading", k, k)
        report.chunks = k
        report.used = len(notes)
        return self._fit_notes(request, notes, budget, report, level=1)

    def _map_reduce(self, request: Request, budget: int, report: LongContextReport,
                    *, overview: bool = False) -> Request:
        """Map: each chunk to its most distinctive sentences (runtime.documents.salience; quoted, not
        written by the model). Reduce: the best of them that fit the reading budget, in
        document order. The model answers from those; the report carries them as quotes.
        An ``overview`` (a vague question) also gets the input's opening, which usually says
        what it is, and is the only evidence an input without sentences has."""
        started = time.perf_counter()
        size = self._step_size(request, request.instruction, budget)
        opening = self._opening(request.documents, budget // 4) if overview else None
        if opening is not None:
            budget -= self.count(opening.text) + self._wrapper(opening.source)
        counted = 0

        def chunks() -> Iterator[Chunk]:
            nonlocal counted
            counted = 0
            for chunk in self.iter_chunks(request.documents, size, self._config.overlap):
                counted += 1
                self._progress("map: key sentences", counted, max(counted, estimate))
                yield chunk

        estimate = self._estimate_chunks(request.documents, size)
        keys = key_sentences(chunks)
        report.chunks = counted
        report.stage_seconds["map"] = time.perf_counter() - started
        source = ", ".join(dict.fromkeys(d.source for d in request.documents))
        room = budget - self._wrapper(f"key sentences of {source}")
        kept: list[KeySentence] = []
        used = 0
        for k in sorted(keys, key=lambda k: -k.score):
            cost = self.count(f"- [{k.where}] {k.text}\n")
            if used + cost <= room:
                kept.append(k)
                used += cost
        kept.sort(key=lambda k: k.seq)
        report.used = len(kept)
        report.quotes = tuple((k.where, k.text) for k in kept)
        note = "\n".join(f"- [{k.where}] {k.text}" for k in kept)
        keys_doc = Document(f"key sentences of {source}", note)
        if opening is None:
            return replace(request, documents=(keys_doc,))
        # An input with no sentences at all (random bytes) is shown by its opening alone.
        return replace(request, documents=(opening, keys_doc) if kept else (opening,))

    def _opening(self, documents: Sequence[Document], tokens: int) -> Document | None:
        """The first ``tokens`` tokens of the first document, cut where chunks are cut. Only a
        prefix is chunked (a token is at least one character, so ``8 * tokens`` characters
        hold them), whatever the input's length."""
        doc = next((d for d in documents if d.on_disk or d.text.strip()), None)
        if doc is None or tokens < _MIN_STEP_TOKENS:
            return None
        head = doc.text[:8 * tokens] if doc.path is None else next(segments(doc.path, 8 * tokens), "")
        first = next(iter(chunk_text(head, doc.source, self.count, max_tokens=tokens)), None)
        if first is None or not first.text.strip():
            return None
        label = f"the opening of {first.where}"
        if not_text_share(first.text) > 0.3:
            label += " (mostly not text)"  # undecodable or control bytes: the model is told, not left to guess
        return Document(label, first.text)

    def _map(self, request: Request, chunks: list[Chunk], report: LongContextReport, level: int) -> list[Document]:
        """One model note per chunk: the further levels when extracted notes do not fit."""
        task = _map_task(request.instruction)
        started = time.perf_counter()
        notes = []
        for k, chunk in enumerate(chunks):
            self._progress(f"map (level {level})", k, len(chunks))
            notes.append(Document(chunk.where, self._note(task, chunk, request.system)))
            report.model_calls += 1
        self._progress(f"map (level {level})", len(notes), len(notes))
        report.stage_seconds[f"map {level}"] = time.perf_counter() - started
        return notes

    def _fit_notes(self, request: Request, notes: list[Document], budget: int, report: LongContextReport,
                   level: int) -> Request:
        """The final request over the notes; when they are too long, another map level."""
        total = sum(self.count(n.text) + self._wrapper(n.source) for n in notes)
        if total <= budget or not notes:
            return replace(request, documents=tuple(notes))
        if level >= self._config.max_levels:
            raise UsageError(f"the notes are still {total:,} tokens after {level} levels",
                             hint="give a larger --read-tokens or --ctx")
        joined = "\n\n".join(f"[{n.source}] {n.text}" for n in notes)
        size = self._step_size(request, _map_task(request.instruction), budget)
        chunks = chunk_text(joined, "notes", self.count, max_tokens=size, overlap=0)
        return self._fit_notes(request, self._map(request, chunks, report, level + 1), budget, report, level + 1)

    def _refine(self, request: Request, budget: int, report: LongContextReport) -> Request:
        # The running answer (up to note_tokens) rides along with every part.
        note = self._config.note_tokens
        size = self._step_size(request, _refine_task(request.instruction, "x"), budget, carried=note)
        size = max(_MIN_STEP_TOKENS, min(size, budget - note))  # the reading budget holds the answer too
        total = self._estimate_chunks(request.documents, size)
        started = time.perf_counter()
        running = ""
        last: Chunk | None = None
        k = 0
        for k, chunk in enumerate(self.iter_chunks(request.documents, size, self._config.overlap)):
            if last is not None:  # every chunk but the last is folded into the running answer
                self._progress("refine", k - 1, max(total, k))
                call_started = time.perf_counter()
                running = self._note(_refine_task(request.instruction, running), last, request.system)
                report.model_calls += 1
                if k == 1 and total > self._config.chunk_calls:
                    self._notify(_refine_estimate(total, last.n_tokens, time.perf_counter() - call_started))
            last = chunk
        report.chunks = report.used = k + 1 if last is not None else 0
        self._progress("refine", report.chunks, report.chunks)
        report.stage_seconds["refine"] = time.perf_counter() - started
        if last is None:
            return replace(request, documents=())
        documents = [Document(last.where, last.text)]
        if running:
            documents.insert(0, Document("the answer so far, from the earlier parts", running))
        return replace(request, documents=tuple(documents))


def _refine_estimate(parts: int, part_tokens: int, first_seconds: float) -> str:
    """How long refine will take, from the speed measured on its first call."""
    rate = part_tokens / max(first_seconds, 1e-6)
    left = round(first_seconds * (parts - 1))
    when = f"{left // 60} min {left % 60} s" if left >= 60 else f"{left} s"
    return (f"refine reads the input in about {parts:,} parts, a model call each: about {when} more "
            f"(the first part took {first_seconds:.1f} s, {rate:,.0f} tokens/s)")


def not_text_share(text: str) -> float:
    """The share of ``text`` that is undecodable bytes (U+FFFD) or control characters."""
    if not text:
        return 0.0
    bad = sum(ch == "\ufffd" or (ch < " " and ch not in "\n\r\t") for ch in text)
    return bad / len(text)


def _as_documents(chunks: list[Chunk], picked: list[int]) -> list[Document]:
    """Picked chunks in document order; neighbours from one source are merged (their overlap once)."""
    docs: list[Document] = []
    prev: Chunk | None = None
    for i in picked:
        chunk = chunks[i]
        if prev is not None and prev.source == chunk.source and chunk.start <= prev.end:
            merged_text = prev.text + chunk.text[prev.end - chunk.start:]
            prev = Chunk(prev.source, merged_text, prev.first_line, chunk.last_line, prev.start, chunk.end,
                         prev.n_tokens + chunk.n_tokens)
            docs[-1] = Document(prev.where, prev.text)
            continue
        prev = chunk
        docs.append(Document(chunk.where, chunk.text))
    return docs


@dataclass
class _Tally:
    tokens: int = 0


@dataclass(frozen=True)
class Ranked:
    score: float
    seq: int  # position in the document order
    chunk: Chunk


RANK_BLOCK = 4096  # chunks ranked together (about 4 MB of text)
RANK_KEEP = 64  # best chunks kept from each block
RANK_CAP = 512  # candidates kept in all


def rank_chunks(chunks: Iterable[Chunk], query: str) -> tuple[list[Ranked], int]:
    """Chunks that match ``query`` (BM25 score > 0), with their scores, and how many
    chunks there were. A stream of any length is ranked in blocks of RANK_BLOCK chunks,
    keeping the best of each; when there was more than one block, the kept candidates
    are ranked again together, so that their scores share one vocabulary statistic.
    Memory: one block and at most RANK_CAP candidates."""
    candidates: list[Ranked] = []
    total = blocks = 0
    block: list[Chunk] = []

    def flush() -> None:
        nonlocal candidates, total, blocks
        scores = bm25_scores([c.text for c in block], query)
        best = sorted(range(len(block)), key=lambda i: -scores[i])[:RANK_KEEP]
        candidates.extend(Ranked(scores[i], total + i, block[i]) for i in best if scores[i] > 0)
        if len(candidates) > RANK_CAP:
            candidates = heapq.nlargest(RANK_CAP, candidates, key=lambda r: r.score)
        total += len(block)
        blocks += 1
        block.clear()

    for chunk in chunks:
        block.append(chunk)
        if len(block) == RANK_BLOCK:
            flush()
    if block or not blocks:
        flush()
    if blocks > 1 and candidates:
        rescored = bm25_scores([r.chunk.text for r in candidates], query)
        candidates = [Ranked(s, r.seq, r.chunk) for s, r in zip(rescored, candidates, strict=True) if s > 0]
    return candidates, total


def bm25_scores(texts: Sequence[str], query: str) -> list[float]:
    """BM25 score of each text against ``query`` (bm25s, English stop words removed)."""
    import bm25s

    if not texts:
        return []
    words = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
    if not words:
        return [0.0] * len(texts)
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    return [float(s) for s in retriever.get_scores(list(words))]
