"""The long-context manager: documents of any length are used, never silently truncated.

Small models read far less than their window well (the built-in model copies
a planted fact from about 650 tokens of context and fails at about 1,600), so
"fits the window" is not the test; "short enough to read well" is. When the
documents are longer than that, a strategy decides what the model reads:

- ``stuff``: everything, at once (it fits and is short enough);
- ``retrieve`` (questions): the question's evidence (runtime.retrieval: sentence passages
  ranked by BM25 and by the shipped embedding model), the best few passages in one block,
  strongest last, question last; a question asking for every match ("list every", "how
  many") gathers every matching passage, numbered in document order. With nothing matching
  at all, a map step extracts the relevant lines of every chunk instead, when that is at most
  ``chunk_calls`` model calls, else the input is read as an overview (below);
- ``map-reduce`` (summaries): each chunk is mapped to its most
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

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from askgpt.runtime.documents.chunking import Chunk, chunk_text
from askgpt.runtime.documents.salience import KeySentence, key_sentences
from askgpt.runtime.documents.spool import SEGMENT_CHARS, segments
from askgpt.runtime.engine.base import Engine, round_context
from askgpt.runtime.engine.sampling import CopyBias, SamplingConfig
from askgpt.runtime.errors import ContextOverflowError, UsageError
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, answer_reserve, ask
from askgpt.runtime.prompting.request import Document, Request, attribute
from askgpt.runtime.prompting.template import format_prompt
from askgpt.runtime.retrieval.cache import VectorCache
from askgpt.runtime.retrieval.kinds import Retrieval
from askgpt.runtime.retrieval.model import TextEmbedder, embedding_model_present, shipped_embedder
from askgpt.runtime.retrieval.passages import Passage
from askgpt.runtime.retrieval.rank import RankConfig, Scored, find_evidence

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
    r"\b(summar\w*|overview|tl;?dr|outline|recap|key (points|ideas|facts)|main (points|ideas)|themes?)",
    re.IGNORECASE,
)

# Questions whose answer is every match: counts, lists, "all the ...". A bare "every" or "each"
# is not one ("where do they meet each week?").
_AGGREGATE = re.compile(
    r"\b(how many|how often|number of (times|\w+s)|count (the|all|every|each)|"
    r"(list|find|extract|show|name|give|enumerate) (me )?(all|every|each)|"
    r"all (of )?the \w+s\b|every (single |one )?(time|mention|occurrence|instance)|(list|name) the \w+s\b)",
    re.IGNORECASE)

_ASKING_WORDS = frozenset("how many often number times count list find extract show name give enumerate me "
                          "every each single occurrence occurrences instance instances mention mentions".split())


class Strategy(str, Enum):
    AUTO = "auto"
    STUFF = "stuff"
    RETRIEVE = "retrieve"
    MAP_REDUCE = "map-reduce"
    REFINE = "refine"


# The logit the evidence's tokens get while a retrieved answer is written (CopyBias). Measured
# on the built-in model (docs/long-documents.md): paraphrased single facts at 27k and 100k
# tokens via stdin and -f (benchmarks/paraphrased_facts.py), 23 of 32 named without it and 31
# of 32 with +1.5, the first value tried (half the facts written after it was chosen; an
# earlier run under other file names, 26 and 32); bench needle, one code with and without
# it: no kind lower, 5 of 12 kind-and-size figures higher. +1.0 stopped after one of three
# values more often; +2.5 ran on, repeating the evidence.
COPY_LOGIT = 1.5


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
    retrieval: Retrieval | None = None  # --retrieval; None: hybrid where the embedding model is present
    # Tokens of evidence a question's answer reads: the best passages and their neighbours.
    # The built-in model reads a few sentences well and a page badly; None: a third of
    # read_tokens (341 by default), at least 160.
    evidence_tokens: int | None = None
    vector_cache: Path | None = None  # where sentence vectors are kept between runs (None: not kept)
    # The logit added to the evidence's tokens while the answer is written (CopyBias); 0: none.
    copy_logit: float = COPY_LOGIT

    def __post_init__(self) -> None:
        if self.read_tokens < 64:
            raise UsageError("--read-tokens must be at least 64")
        if self.copy_logit < 0:
            raise UsageError("the copy bias must be 0 or more")


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
    retrieval: str = ""  # bm25 | semantic | hybrid, when retrieval ran
    gather: bool = False  # an aggregate question: every matching part was gathered
    from_evidence: bool = False  # the answer reads a question's evidence passages (retrieve, not gathered)
    embedded: int = 0  # sentences the embedding model read for this question
    cached: int = 0  # sentences whose vectors came from the on-disk cache

    def line(self) -> str:
        what = {
            Strategy.STUFF: "read whole",
            Strategy.RETRIEVE: f"{self.retrieval or 'bm25'} retrieval over {self.chunks:,} chunks, "
                               f"{self.used:,} passage{'' if self.used == 1 else 's'} "
                               f"{'gathered' if self.gather else 'used'}",
            Strategy.MAP_REDUCE: f"map-reduce over {self.chunks:,} chunks, {self.used:,} key sentences",
            Strategy.REFINE: f"refine through {self.chunks:,} chunks",
        }[self.strategy]
        return (f"document: {self.doc_tokens:,} tokens, window {self.window:,} -> {what} "
                f"({self.reason})")

    def stats_line(self) -> str:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        embedded = (f", {self.embedded} sentences embedded, {self.cached} from cache"
                    if self.embedded or self.cached else "")
        return (f"long context: {self.strategy.value}, {self.doc_tokens:,} document tokens, "
                f"{self.chunks} chunks, {self.used} used, {self.model_calls} model calls{embedded} | {stages}")


def is_whole_input_task(instruction: str) -> bool:
    return bool(_WHOLE_INPUT.search(instruction)) or is_aggregate_question(instruction)


def is_aggregate_question(instruction: str) -> bool:
    """"List every ...", "how many ...", "all the dates ...": a question whose answer is spread
    over every part that matches, not a summary of the whole."""
    if not _AGGREGATE.search(instruction) or _WHOLE_INPUT.search(instruction):  # a summary is not a list
        return False
    # Something to gather must be named besides the asking ("How many?" alone names nothing).
    return bool(set(distinctive_words(instruction)) - _ASKING_WORDS)


def distinctive_words(instruction: str) -> list[str]:
    """The words of ``instruction`` that can name something in a document."""
    return [w for w in re.findall(r"[a-z0-9]+", instruction.lower()) if w not in _GENERIC and len(w) > 1]


def sub_questions(instruction: str) -> list[str]:
    """The questions asked in ``instruction``: one, or several when it holds several sentences
    ending in "?"; a sentence that is not a question goes with the question before it (the
    one after, at the start)."""
    sentences = [x for x in re.split(r"(?<=[.?!])\s+", instruction.strip()) if x]
    if sum(x.endswith("?") for x in sentences) < 2:
        return [instruction]
    asked: list[str] = []
    pending = ""
    for x in sentences:
        if x.endswith("?"):
            asked.append(f"{pending} {x}".strip())
            pending = ""
        elif asked:
            asked[-1] += f" {x}"
        else:
            pending = f"{pending} {x}".strip()
    asked = [q for q in asked if distinctive_words(q)][:MAX_SUB_QUESTIONS]
    return asked or [instruction]


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


def _evidence_task(instruction: str) -> str:
    # Measured on paraphrased facts, each given alone to the built-in model: 8 of 15 answered
    # plainly, 22 of 25 with this lead-in (it copies the fact's words instead of guessing; a
    # "quoting its words" lead-in scored the same but made it describe the document instead).
    return f"Answer with words copied from the document. {instruction}"


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
            if is_aggregate_question(request.instruction):
                return (Strategy.RETRIEVE, "the question asks for every match, so every matching part is "
                        "gathered", doc_tokens, budget)
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
            report.gather = is_aggregate_question(request.instruction)
            final = self._retrieve(request, budget, report, gather=report.gather)
        elif strategy is Strategy.MAP_REDUCE:
            final = self._map_reduce(request, budget, report, overview=is_vague_question(request.instruction))
        else:
            final = self._refine(request, budget, report)
        report.stage_seconds["prepare"] = time.perf_counter() - started
        report.model_calls += 1
        self.last_request = final  # what the model reads for the answer (for benchmarks and --debug)
        # A question's evidence is copied from; a gathered list is not always (a count is read off
        # it, and favouring the list's tokens made the model copy it instead of counting).
        if report.from_evidence and self._config.copy_logit > 0 and config.sampling.copy_bias is None:
            evidence = "\n".join(d.text for d in final.documents)
            config = replace(config, sampling=replace(config.sampling,
                                                      copy_bias=CopyBias(evidence, self._config.copy_logit)))
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

    def _retrieval(self) -> tuple[Retrieval, TextEmbedder | None, VectorCache | None]:
        """The retrieval kind asked for, else hybrid where the embedding model is present."""
        mode = self._config.retrieval
        present = embedding_model_present()
        if mode is None:
            mode = Retrieval.HYBRID if present else Retrieval.BM25
        if mode is Retrieval.BM25:
            return mode, None, None
        if not present:
            raise UsageError(f"--retrieval {mode.value} needs the embedding model, which is not installed",
                             hint="reinstall askgpt, or use --retrieval bm25")
        embedder = shipped_embedder()
        return mode, embedder, VectorCache(self._config.vector_cache, embedder.key)

    def _retrieve(self, request: Request, budget: int, report: LongContextReport, *,
                  gather: bool = False) -> Request:
        """The question's evidence: passages ranked by runtime.retrieval, the best (with
        ``gather``, every one that matches) given with their neighbours, strongest last."""
        cfg = self._config
        tally = _Tally()
        chunks = self.iter_chunks(request.documents, min(cfg.chunk_tokens, budget), cfg.overlap, tally)
        mode, embedder, cache = self._retrieval()
        keep = RankConfig(mode, static_keep=512, bm25_keep=96) if gather else RankConfig(mode)
        asked = [request.instruction] if gather else sub_questions(request.instruction)
        founds = [find_evidence(chunks if i == 0 else self.iter_chunks(request.documents, min(cfg.chunk_tokens, budget),
                                                                       cfg.overlap), q, keep, embedder, cache)
                  for i, q in enumerate(asked)]
        found = founds[0]
        report.chunks, report.retrieval = found.chunks, mode.value
        report.embedded, report.cached = sum(f.embedded for f in founds), sum(f.cached for f in founds)
        for f in founds:
            for stage, seconds in f.seconds.items():
                report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + seconds
        if any(d.on_disk for d in request.documents):
            report.doc_tokens = tally.tokens
        if not any(f.ranked for f in founds):
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
        if gather:
            windows = self._gathered(found.ranked, budget)
        else:
            # Several questions in one ("Two questions. Where ...? And when ...?"): each its own
            # evidence, in an equal share of the room.
            room = min(budget, cfg.evidence_tokens or max(160, cfg.read_tokens // 3)) // len(founds)
            windows = []
            for f in founds:
                if f.ranked:  # a question whose evidence another's already holds is not given twice
                    windows += [w for w in self._evidence(f.ranked, room)
                                if not any(w.text in o.text or o.text in w.text for o in windows)]
        report.used = sum(len(w.seqs) for w in windows)
        report.quotes = tuple((w.where, w.cited) for w in sorted(windows, key=lambda w: w.seqs[0]))
        # Weakest first: the strongest evidence sits nearest the question, which comes last. One
        # block of plain paragraphs: the built-in model copied three values from that and none
        # from the same sentences given as three <document> blocks.
        ordered = sorted(windows, key=lambda w: -w.rank)
        source = ", ".join(dict.fromkeys(w.where.rsplit(", line", 1)[0] for w in ordered))
        if gather:  # every match, numbered in document order: a list to copy, a count to read off
            listed = sorted(windows, key=lambda w: w.seqs[0])
            text = "\n".join(f"{i}. {w.text}" for i, w in enumerate(listed, 1))
            label = f"the {len(listed)} passages of {source} that match" if len(listed) > 1 else \
                f"the one passage of {source} that matches"
            # (The built-in model copies such a list; it does not count one, even told the number.)
            return replace(request, documents=(Document(label, text),))
        report.from_evidence = True
        return replace(request, instruction=_evidence_task(request.instruction),
                       documents=(Document(f"passages of {source}", "\n\n".join(w.text for w in ordered)),))

    def _evidence(self, ranked: list[Scored], room: int) -> list[_Window]:
        """The best passages for a question: at most EVIDENCE_MAX, only those close to the best
        (a passage that clearly dominates is read alone), then their neighbours while they fit."""
        best = ranked[0]
        picked = [s for s in ranked[:EVIDENCE_MAX] if _close_to(s, best)]
        # Neighbours give one fact its context (a "he" or "it" to resolve); beside several
        # facts they were copied into the answer as if they were facts too.
        return self._windows(picked, room, neighbours=len(picked) == 1)

    def _gathered(self, ranked: list[Scored], room: int) -> list[_Window]:
        """Every passage that matches (an aggregate question: "list every", "how many"), once
        each (repeated sentences merged), as many as fit, in document order."""
        best = ranked[0]
        seen: set[str] = set()
        picked = []
        for s in ranked:
            key = " ".join(re.findall(r"\w+", s.passage.text.lower()))
            if key in seen or not _close_to(s, best, loose=True):
                continue
            seen.add(key)
            picked.append(s)
        # Each match its own item (merged with a touching passage, it would read as one), the
        # best first while they fit the room; always the best one.
        windows: list[_Window] = []
        used = 0
        for s in picked:
            cost = self.count(s.passage.text) + 8
            if windows and used + cost > room:
                continue
            windows += self._windows([s], max(cost, room - used), neighbours=False)
            used += cost
        return windows

    def _windows(self, picked: list[Scored], room: int, *, neighbours: bool) -> list[_Window]:
        """Picked passages that fit ``room``, best first; then, best first, their neighbours
        while they fit. Touching passages of one source become one window."""
        texts: dict[int, str] = {}
        rank_of: dict[int, int] = {}
        by_seq: dict[int, Passage] = {}
        used = 0
        for r, s in enumerate(picked):
            p = s.passage
            cost = self.count(p.text) + (self._wrapper(p.where) if not texts else 8)
            if used + cost > room and texts:
                continue
            texts[p.seq], rank_of[p.seq], by_seq[p.seq] = p.text, r, p
            used += cost
        for seq in sorted(rank_of, key=lambda q: rank_of[q]) if neighbours else ():
            p = by_seq[seq]
            for near, text in ((seq - 1, p.before), (seq + 1, p.after)):
                if text and near not in texts and used + self.count(text) <= room:
                    texts[near] = text
                    used += self.count(text)
        return _group(texts, rank_of, by_seq)

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


MAX_SUB_QUESTIONS = 3  # each is one more pass over the input; more than three are read as one
EVIDENCE_MAX = 4  # passages a single question's evidence draws on (multi-value facts need three)
_NEAR_BEST = 0.08  # cosine below the best passage's within which another is evidence too
_NEAR_BEST_LOOSE = 0.2  # the same for gathering every match
_GATHER_FLOOR = 0.25  # and at least this cosine (unrelated prose measured up to 0.21 on a list question)


def _close_to(s: Scored, best: Scored, *, loose: bool = False) -> bool:
    """Whether ``s`` is evidence as good as ``best``'s kind: by cosine when there is one,
    else by BM25 (at least half the best's score)."""
    if s is best:
        return True
    if not math.isnan(best.dense) and not math.isnan(s.dense):
        floor = _GATHER_FLOOR if loose else 0.0
        return s.dense >= max(floor, best.dense - (_NEAR_BEST_LOOSE if loose else _NEAR_BEST))
    return s.bm25 >= (0.3 if loose else 0.5) * best.bm25


@dataclass(frozen=True)
class _Window:
    where: str
    text: str
    seqs: tuple[int, ...]  # the picked passages in it
    rank: int  # the best rank among them (0 is the strongest)
    cited: str  # the picked passages alone (the citation; neighbours are context)


def _group(texts: dict[int, str], rank_of: dict[int, int], by_seq: dict[int, Passage]) -> list[_Window]:
    """Runs of consecutive passages (picked or neighbours) of one source, as windows."""
    windows: list[_Window] = []
    run: list[int] = []

    def close() -> None:
        picked = [q for q in run if q in rank_of]
        if picked:
            first, last = by_seq[picked[0]], by_seq[picked[-1]]
            lines = (f"line {first.first_line}" if first.first_line == last.last_line
                     else f"lines {first.first_line}-{last.last_line}")
            windows.append(_Window(f"{first.source}, {lines}", " ".join(texts[q] for q in run),
                                   tuple(picked), min(rank_of[q] for q in picked),
                                   " ".join(texts[q] for q in picked)))
        run.clear()

    source = None
    for seq in sorted(texts):
        owner = by_seq.get(seq) or by_seq.get(seq + 1) or by_seq.get(seq - 1)
        src = owner.source if owner else None
        if run and (seq != run[-1] + 1 or src != source):
            close()
        run.append(seq)
        source = src
    close()
    return windows


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
