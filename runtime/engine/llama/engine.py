"""The llama.cpp engine: the only module that imports ``llama_cpp``.

It owns one ``llama_cpp.Llama`` (model + context + KV cache) and exposes the
`Engine` seam. ``llama_cpp`` is imported inside `load_llama_engine`, so
importing this module stays cheap and ``askgpt --help`` never loads it.
"""

from __future__ import annotations

import ctypes
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from askgpt.runtime.engine.base import (
    EmbeddingRows,
    EngineConfig,
    ModelInfo,
    PromptPart,
    TokenIds,
    embedding_keys,
    prompt_keys,
    round_context,
)
from askgpt.runtime.engine.guard import ensure_loads_safely
from askgpt.runtime.engine.memory import check_fits, kv_cache_bytes
from askgpt.runtime.engine.prefix_cache import CacheEvents, PrefixCache, model_key
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import InferenceError, ModelLoadError, UsageError
from askgpt.runtime.models.gguf import check_gguf
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.system import available_memory_bytes, physical_cores

# ggml's levels since late 2024 (llama-cpp-python's own logger still assumes the
# older order, which is why some warnings got past its verbose=False).
_GGML_LOG_ERROR = 4
_GGML_LOG_CONT = 5  # continues the previous line, at its level


class NativeLog:
    """Where llama.cpp's own log lines go: to ``sink`` (``--debug``) or nowhere.

    llama.cpp logs through one process-wide callback (``llama_log_set`` sets
    ggml's too), and some lines, such as the SWA cache notice at context
    creation, get past llama-cpp-python's ``verbose=False``. Routing the
    callback here keeps stderr for askgpt's own messages; the last error
    lines are kept as the detail of a load error.
    """

    def __init__(self) -> None:
        self.sink: Callable[[str], None] | None = None
        self.errors: deque[str] = deque(maxlen=4)
        self._level = 0
        self._c_callback: Any = None  # the ctypes thunk; must live as long as llama.cpp may call it

    def install(self, llama_cpp: Any) -> None:
        if self._c_callback is None:
            self._c_callback = llama_cpp.llama_log_callback(self._receive)
        llama_cpp.llama_log_set(self._c_callback, ctypes.c_void_p(0))

    def install_mtmd(self, mtmd: Any) -> None:
        """The vision side (mtmd and its CLIP graph) has its own logger: route it here too."""
        if self._c_callback is not None:
            mtmd.mtmd_log_set(self._c_callback, ctypes.c_void_p(0))
            mtmd.mtmd_helper_log_set(self._c_callback, ctypes.c_void_p(0))

    def _receive(self, level: int, text: bytes | None, _user_data: object) -> None:
        try:  # an exception must never unwind into native code
            line = (text or b"").decode("utf-8", errors="replace")
            if level != _GGML_LOG_CONT:
                self._level = level
            if self._level == _GGML_LOG_ERROR and line.strip():
                self.errors.append(line.strip())
            if self.sink is not None:
                self.sink(line)
        except Exception:  # noqa: BLE001
            pass

    def first_error(self) -> str | None:
        """The first error since `errors` was cleared, without llama.cpp's function-name prefix:
        the most specific line (later ones say only that loading failed)."""
        if not self.errors:
            return None
        return re.sub(r"^\w+: ", "", self.errors[0])


# llama.cpp has exactly one logger per process, so its router is one per process too.
_native_log = NativeLog()


@contextmanager
def _sigint_as_flag() -> Iterator[list[int]]:
    """While native code runs, Ctrl-C only appends to the yielded list. Python runs
    signal handlers in the main thread at any bytecode, including inside a ctypes
    callback (the log router, the abort callback), where a KeyboardInterrupt would be
    printed and dropped by ctypes. The caller raises it once back in Python. Outside
    the main thread, or with a SIGINT handler of someone else's, nothing changes."""
    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield asked
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: asked.append(signum))
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}  # ggml_type values


def load_llama_engine(ref: ModelRef, config: EngineConfig) -> LlamaEngine:
    """Load ``ref`` with llama.cpp. Raises `ModelLoadError` on any failure. The file's
    header is checked in Python first (runtime.models.gguf); with ``config.trial_cache``
    a file's first load runs in a child process (runtime.engine.guard)."""
    header = check_gguf(ref.path)
    # Every caller's context (convert report, bench --ctx) as llama.cpp will make it.
    config = replace(config, n_ctx=round_context(config.n_ctx))
    check_fits(header, ref.name, n_ctx=config.n_ctx, kv_type=config.kv_type, available=available_memory_bytes())
    if config.trial_cache is not None:
        ensure_loads_safely(ref.path, config.trial_cache)
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelLoadError(f"llama-cpp-python is not usable: {exc}", hint="reinstall askgpt") from exc
    _native_log.sink = config.native_log
    _native_log.errors.clear()
    _native_log.install(llama_cpp)
    threads = config.n_threads or physical_cores()
    with _sigint_as_flag() as asked:
        llm = _construct(llama_cpp, ref, config, threads)
    if asked:  # Ctrl-C during the load: honoured as soon as it is done (a fraction of a second)
        llm.close()
        raise KeyboardInterrupt
    cache = None
    if config.prefix_cache is not None:
        key = model_key(ref.path, kv_type=config.kv_type, backend_version=llama_cpp.__version__)
        cache = PrefixCache(config.prefix_cache, key)
    # The attention cache's size from the header walked above (the memory check's own figure;
    # tests/test_performance.py compares it with llama.cpp's log).
    kv_bytes = kv_cache_bytes(header, n_ctx=llm.n_ctx(), kv_type=config.kv_type)
    return LlamaEngine(llm, ref, kv_type=config.kv_type, prefix_cache=cache, kv_bytes=kv_bytes)


def _construct(llama_cpp: Any, ref: ModelRef, config: EngineConfig, threads: int) -> Any:
    try:
        llm = llama_cpp.Llama(
            model_path=str(ref.path),
            n_ctx=config.n_ctx,
            n_batch=config.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=_gpu_layers(llama_cpp, config.n_gpu_layers),
            last_n_tokens_size=config.repeat_last_n,
            logits_all=config.all_logits,
            type_k=KV_TYPES[config.kv_type],
            type_v=KV_TYPES[config.kv_type],
            # llama.cpp stores a quantized V cache only with flash attention
            flash_attn=config.kv_type == "q8_0",
            # verbose=False redirects fd 2 to /dev/null during the load, which would
            # swallow the lines --debug asks for; otherwise the router drops them.
            verbose=config.native_log is not None,
        )
    except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError with no detail
        detail = _native_log.first_error()
        raise ModelLoadError(
            f"llama.cpp could not load {ref.path.name}: {detail or exc}",
            hint="the file may be truncated or use an architecture this llama.cpp build lacks",
        ) from exc
    return llm


def control_token_texts(llama_cpp: Any, vocab: Any) -> frozenset[str]:
    """The spellings of the vocabulary's control and unknown tokens: those llama.cpp's
    tokenizer parses from text only with ``special=True`` (user-defined tokens parse
    either way, so they are ordinary text here)."""
    wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    get_attr, get_text = llama_cpp.llama_vocab_get_attr, llama_cpp.llama_vocab_get_text
    texts = set()
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if get_attr(vocab, token) & wanted:
            text = bytes(get_text(vocab, token)).decode("utf-8", errors="replace")
            if text:
                texts.add(text)
    return frozenset(texts)


def _gpu_layers(llama_cpp: Any, wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0  # -1: every layer


class LlamaEngine:
    """`Engine` over one ``llama_cpp.Llama``; close it (or use ``with``) to free memory."""

    def __init__(self, llm: Any, ref: ModelRef, *, kv_type: str = "f16",
                 prefix_cache: PrefixCache | None = None, kv_bytes: int = 0) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._llm = llm
        self._prefix_cache = prefix_cache
        # Prompt-lookup decoding in this run: guessed tokens, and how many of them were kept.
        self.lookup_guessed = 0
        self.lookup_kept = 0
        self.context_shifts = 0  # how often a long answer has shifted the window
        self._vision: MmprojVision | None = None
        self._control_texts: frozenset[str] | None = None
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._vocab = vocab
        meta: dict[str, str] = llm.metadata or {}

        def token_text(token_id: int) -> str:
            if token_id < 0:  # the model has no such token
                return ""
            return bytes(llama_cpp.llama_vocab_get_text(vocab, token_id)).decode("utf-8", errors="replace")

        self._info = ModelInfo(
            name=ref.name,
            path=ref.path,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(llm.model),
            n_embd=llama_cpp.llama_model_n_embd_inp(llm.model),
            chat_template=meta.get("tokenizer.chat_template") or None,
            bos_token=token_text(llama_cpp.llama_vocab_bos(vocab)),
            eos_token=token_text(llama_cpp.llama_vocab_eos(vocab)),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            kv_bytes=kv_bytes,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def cache_events(self) -> CacheEvents | None:
        """What the on-disk prefix cache did in this run (None: no cache)."""
        return None if self._prefix_cache is None else self._prefix_cache.events

    @property
    def control_texts(self) -> frozenset[str]:
        if self._control_texts is None:
            self._control_texts = control_token_texts(self._lib, self._vocab)
        return self._control_texts

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def token_bytes(self, token: int) -> bytes:
        return bytes(self._llm.detokenize([token]))

    def _is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
        llm = self._llm
        llm.set_seed(self._lib.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed)
        kwargs: dict[str, Any] = dict(
            temp=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
            min_p=sampling.min_p, repeat_penalty=sampling.repeat_penalty,
        )
        text_only = all(isinstance(p, TokenIds) for p in prompt)
        if text_only:
            # Pure text: all but the last token read here (from the caches where they
            # hold it, where Ctrl-C can stop it); the decoder reads the last one.
            ids = [t for p in prompt for t in p.ids]  # type: ignore[union-attr]
            n_prompt = len(ids)
            self._read_prompt(prompt, upto=n_prompt - 1)
        else:
            self._read_prompt(prompt)
            n_prompt = llm.n_tokens
        if sampling.json_schema is not None:
            kwargs["grammar"] = self._grammar(sampling.json_schema)
        elif sampling.temperature == 0 and sampling.lookup_tokens > 0:
            yield from self._lookup_decode(sampling, n_prompt, ids[-1] if text_only else None)
            return
        if text_only:
            # llama-cpp-python's generate finds all but the last token cached.
            stream = llm.generate(ids, reset=True, **kwargs)
        else:
            stream = llm.generate([], reset=False, **kwargs)
        n_ctx = self._info.n_ctx
        try:
            while True:
                for token in stream:
                    if self._is_eog(token):
                        return
                    yield int(token)
                    if llm.n_tokens >= n_ctx - 1:  # the next eval would not fit
                        break
                else:
                    return
                # The window is full: drop the older half of the answer and go on.
                stream.close()
                if not self._shift_context(keep=n_prompt):
                    return
                stream = llm.generate([token], reset=False, **kwargs)
        except RuntimeError as exc:
            raise InferenceError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            stream.close()

    def _grammar(self, json_schema: str) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            return LlamaGrammar.from_json_schema(json_schema, verbose=False)
        except Exception as exc:  # the converter raises ValueError, KeyError, RecursionError...
            raise UsageError(f"llama.cpp cannot build a grammar from this JSON schema: {exc}") from exc

    def _lookup_decode(self, sampling: SamplingConfig, n_prompt: int,
                       pending: int | None) -> Generator[int, None, None]:
        """Greedy decoding with prompt lookup (speculative decoding whose draft is the
        text that followed the latest earlier occurrence of the last few tokens).

        Each step evaluates the unread token and the guessed continuation in one batch,
        then samples position by position with the same llama.cpp sampler chain as the
        plain path (repeat penalty, then greedy), keeping guesses while they equal what
        was sampled. The first mismatch is itself the next token; the positions after it
        leave the cache. So the tokens are those of plain greedy decoding, up to the
        last bits of the batched arithmetic. ``pending``: the prompt's unread last token,
        or None when the prompt was read whole (its logits are ready)."""
        lib, llm = self._lib, self._llm
        n_ctx = self._info.n_ctx
        chain = self._greedy_chain(sampling)
        memory = lib.llama_get_memory(llm.ctx)
        budget = min(2, sampling.lookup_tokens)
        try:
            if pending is None:
                token = int(lib.llama_sampler_sample(chain, llm.ctx, -1))
                if self._is_eog(token):
                    return
                yield token
                pending = token
            while True:
                room = n_ctx - 1 - llm.n_tokens
                if room < 1:  # the window is full: as the plain path does, shift and restart sampling
                    if not self._shift_context(keep=n_prompt):
                        return
                    lib.llama_sampler_free(chain)
                    chain = self._greedy_chain(sampling)
                    continue
                draft = _lookup_draft(llm.input_ids[: llm.n_tokens], pending, budget)[: room - 1]
                batch = [pending, *draft]
                start = llm.n_tokens
                self._decode_tokens(batch)
                self.lookup_guessed += len(draft)
                for i in range(len(batch)):
                    token = int(lib.llama_sampler_sample(chain, llm.ctx, i))
                    guessed = i < len(draft) and token == draft[i]
                    self.lookup_kept += guessed
                    if not guessed:  # positions after this one were read for wrong guesses
                        keep = start + i + 1
                        if keep < llm.n_tokens:
                            lib.llama_memory_seq_rm(memory, 0, keep, -1)
                            llm.n_tokens = keep
                    if self._is_eog(token):
                        return
                    yield token
                    if not guessed:
                        pending = token
                        break
                # Checking a guess costs most of a step on a CPU (8 guesses: 4.6x one token's
                # time on the built-in model), so the guess length follows how well guessing
                # goes: doubled after a step that kept every guess, halved after a miss.
                kept = llm.n_tokens - start - 1
                budget = min(budget * 2, sampling.lookup_tokens) if kept == len(draft) else max(1, budget // 2)
        finally:
            lib.llama_sampler_free(chain)

    def _greedy_chain(self, sampling: SamplingConfig) -> Any:
        """The sampler chain llama-cpp-python builds for temperature 0: penalties, then greedy."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(
            lib.llama_vocab_n_tokens(self._vocab), self._llm.last_n_tokens_size, sampling.repeat_penalty, 0.0, 0.0))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain

    def _decode_tokens(self, tokens: list[int]) -> None:
        """Decode ``tokens`` after the cached positions, keeping every position's logits."""
        llm = self._llm
        self._decode_batch(len(tokens), tokens=tokens, all_logits=True, what="the guessed tokens")
        llm.input_ids[llm.n_tokens:llm.n_tokens + len(tokens)] = tokens
        llm.n_tokens += len(tokens)

    def _decode_batch(self, n: int, *, tokens: Sequence[int] | None = None, rows: Any = None,
                      all_logits: bool, what: str) -> None:
        """One llama_decode of ``n`` token ids or embedding rows at the next positions."""
        lib, llm = self._lib, self._llm
        batch = lib.llama_batch_init(n, 0 if rows is None else self._info.n_embd, 1)
        try:
            if rows is not None:
                ctypes.memmove(batch.embd, rows.ctypes.data, rows.nbytes)
            for i in range(n):
                if tokens is not None:
                    batch.token[i] = tokens[i]
                batch.pos[i] = llm.n_tokens + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = int(all_logits)
            batch.n_tokens = n
            if lib.llama_decode(llm.ctx, batch) != 0:
                raise InferenceError(f"llama.cpp failed to decode {what}")
        finally:
            lib.llama_batch_free(batch)

    def _shift_context(self, *, keep: int) -> bool:
        """Context shift, as llama.cpp's own CLI does it: keep the first ``keep``
        positions (the prompt: system prompt, examples, documents), remove half of
        what follows from the KV cache, and move the rest back so positions stay
        contiguous. False when the prompt leaves too little to shift."""
        lib, llm = self._lib, self._llm
        n_past = llm.n_tokens
        n_discard = (n_past - keep) // 2
        if n_discard < 8:
            return False
        memory = lib.llama_get_memory(llm.ctx)
        if not lib.llama_memory_seq_rm(memory, 0, keep, keep + n_discard):
            return False
        lib.llama_memory_seq_add(memory, 0, keep + n_discard, n_past, -n_discard)
        llm.input_ids[keep:n_past - n_discard] = llm.input_ids[keep + n_discard:n_past]
        llm.n_tokens = n_past - n_discard
        self.context_shifts += 1
        return True

    def next_token_logprobs(self, prompt: Sequence[PromptPart]) -> Any:
        import numpy as np

        self._read_prompt(prompt)
        n_vocab = self._lib.llama_vocab_n_tokens(self._vocab)
        pointer = self._lib.llama_get_logits_ith(self._llm.ctx, -1)  # the last decoded token's
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        return shifted - np.log(np.exp(shifted).sum())

    def _read_prompt(self, prompt: Sequence[PromptPart], *, upto: int | None = None) -> None:
        """Evaluate the first ``upto`` positions of ``prompt`` (all of it by default),
        skipping the longest prefix already in the attention cache, or else in the
        on-disk prefix cache. With ``upto`` None at least the last token is evaluated,
        since sampling reads its logits."""
        if not prompt or not isinstance(prompt[-1], TokenIds) or not prompt[-1].ids:
            raise InferenceError("a prompt must end with text tokens")
        llm = self._llm
        keys = prompt_keys(prompt)
        end = len(keys) if upto is None else upto
        limit = end - 1 if upto is None else end  # positions that may come from a cache
        held = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), keys[:end])
        common = min(held, limit)
        cache = self._prefix_cache
        if cache is not None and end - common >= cache.config.min_tokens:
            restored = min(self._restore(keys[:end], held), limit)
            if restored > common:
                cache.events.reused_tokens = common = restored
        llm.n_tokens = common
        llm.eval([])  # drops every cached position from ``common`` on
        if common >= end:
            return
        try:
            with self._interruptible():
                self._eval_from(prompt, common, end)
        except RuntimeError as exc:
            raise InferenceError(f"llama.cpp failed to evaluate the prompt: {exc}") from exc
        if cache is not None and end - common >= cache.config.min_tokens:
            self._save(keys[:end])

    def _eval_from(self, prompt: Sequence[PromptPart], start: int, end: int) -> None:
        """Decode positions [start, end) of a mixed text/embedding prompt, run by run
        (one batch cannot mix them)."""
        llm = self._llm
        pos = 0
        for part in prompt:
            lo, hi = max(start - pos, 0), min(end - pos, len(part))
            if lo < hi:
                if isinstance(part, TokenIds):
                    llm.eval(list(part.ids[lo:hi]))
                else:
                    self._decode_embeddings(part, lo, hi)
            pos += len(part)

    def _restore(self, keys: list[int], held: int) -> int:
        """Load the on-disk entry sharing the longest prefix with ``keys`` when it beats the
        ``held`` positions already in the attention cache; returns how many leading
        positions of ``keys`` the cache holds afterwards."""
        import numpy as np

        cache, lib, llm = self._prefix_cache, self._lib, self._llm
        assert cache is not None
        found = cache.longest_prefix(keys)
        if found is None or found[0] < held + 64:  # reading the file would not pay
            return held
        loaded = cache.load(found[1])
        if loaded is None:
            return held
        stored, state = loaded
        if len(stored) > self._info.n_ctx:
            return held
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if lib.llama_state_seq_set_data(llm.ctx, buffer, len(state), 0) == 0:
            lib.llama_memory_clear(lib.llama_get_memory(llm.ctx), True)
            llm.n_tokens = 0
            return 0
        llm.input_ids[: len(stored)] = np.asarray(stored, dtype=llm.input_ids.dtype)
        llm.n_tokens = len(stored)
        return _common_prefix(stored, keys)

    def _save(self, keys: list[int]) -> None:
        cache, lib, llm = self._prefix_cache, self._lib, self._llm
        assert cache is not None
        size = lib.llama_state_seq_get_size(llm.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(llm.ctx, buffer, size, 0)
        if written:
            cache.store(keys, bytes(memoryview(buffer)[:written]))

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Let Ctrl-C stop a long prompt evaluation between two nodes of the compute
        graph, instead of after the whole batch (512 tokens can take seconds).

        llama.cpp calls an abort callback between graph nodes, from the thread that
        called llama_decode: here the main thread, so Python runs its SIGINT handler
        there, which only sets a flag; the callback returns it and llama_decode stops.
        Only while reading a prompt: per generated token the ~600 callbacks would cost
        a tenth of the speed."""
        lib = self._lib
        with _sigint_as_flag() as asked:

            @lib.ggml_abort_callback
            def should_abort(_data: object) -> bool:
                return bool(asked)

            lib.llama_set_abort_callback(self._llm.ctx, should_abort, None)
            try:
                yield
            except (RuntimeError, InferenceError):
                if asked:
                    raise KeyboardInterrupt from None
                raise
            finally:
                lib.llama_set_abort_callback(self._llm.ctx, lib.ggml_abort_callback(), None)
        if asked:  # it came after the last node
            raise KeyboardInterrupt

    def _decode_embeddings(self, part: EmbeddingRows, lo: int, hi: int) -> None:
        import numpy as np

        llm = self._llm
        keys = embedding_keys(part)
        rows = np.ascontiguousarray(part.rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self._info.n_embd:
            raise InferenceError(
                f"embedding rows have shape {rows.shape}, the model needs (n, {self._info.n_embd})"
            )
        step = llm.n_batch
        if not part.causal:
            # Rows that attend both ways must be read in one micro-batch, all of them.
            step = min(llm.n_batch, llm.context_params.n_ubatch)
            if lo != 0 or hi - lo > step:
                raise InferenceError(f"an image of {hi - lo} rows read both ways does not fit one batch of {step}",
                                     hint="raise --batch")
            self._lib.llama_set_causal_attn(llm.ctx, False)
        try:
            for start in range(lo, hi, step):
                chunk = np.ascontiguousarray(rows[start:min(start + step, hi)])
                self._place_rows(chunk, keys[start:start + len(chunk)])
        finally:
            if not part.causal:
                self._lib.llama_set_causal_attn(llm.ctx, True)

    def _place_rows(self, chunk: Any, keys: list[int]) -> None:
        llm = self._llm
        n = len(chunk)
        self._decode_batch(n, rows=chunk, all_logits=False, what="embedding rows")
        # Keys from the rows' content: a later prompt matches this prefix only with the same image.
        llm.input_ids[llm.n_tokens:llm.n_tokens + n] = keys
        llm.n_tokens += n

    def open_vision(self, mmproj: Path, *, threads: int) -> MmprojVision:
        """This model's own vision projector (mmproj), loaded once through llama.cpp's mtmd."""
        if self._vision is None or self._vision.path != mmproj:
            if self._vision is not None:
                self._vision.close()
            self._vision = MmprojVision(self._llm, self._info, mmproj, threads=threads)
        return self._vision

    def close(self) -> None:
        if self._vision is not None:
            self._vision.close()
            self._vision = None
        self._llm.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MmprojVision:
    """A GGUF vision projector (mmproj: LLaVA, SmolVLM, Gemma 3, ...) run by llama.cpp's mtmd.

    An image becomes the prompt segments mtmd lays out for it: its delimiter tokens
    and the encoder's embedding rows, in order. The rows then reach the context through
    the engine's ordinary embedding-row path, so the prefix cache, context checks and
    long-document strategies treat them like any other prompt part.
    """

    def __init__(self, llm: Any, info: ModelInfo, path: Path, *, threads: int) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        check_gguf(path)  # the same header bounds check as any GGUF, before native code reads it
        self._mtmd = mtmd
        self.path = path
        self._n_embd = info.n_embd
        _native_log.errors.clear()
        _native_log.install_mtmd(mtmd)
        params = mtmd.mtmd_context_params_default()  # use_gpu by default: a GPU build runs the encoder there
        params.print_timings = False
        params.n_threads = threads
        with _sigint_as_flag():
            self._ctx = mtmd.mtmd_init_from_file(str(path).encode(), llm.model, params)
        if not self._ctx:
            # mtmd's message runs over lines ("error: mismatch ...\nhint: ..."): its first says it.
            detail = (_native_log.first_error() or "llama.cpp's mtmd could not load it").splitlines()[0]
            detail = detail.removeprefix("error: ")
            raise ModelLoadError(f"the vision projector {path.name} does not work with {info.name}: {detail}",
                                 hint="use the mmproj file published with this model")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadError(f"{path.name} has no vision encoder (an audio-only projector?)")
        if mtmd.mtmd_decode_use_mrope(self._ctx):
            self.close()
            raise ModelLoadError(f"{path.name} is for a model with M-RoPE positions (Qwen2-VL family), "
                                 "which askgpt's image path does not place yet",
                                 hint="use a LLaVA-, SmolVLM- or Gemma-3-style vision model")
        self.marker = mtmd.mtmd_default_marker()

    def segments(self, pixels: Any) -> tuple[PromptPart, ...]:
        """``pixels``: (H, W, 3) uint8 RGB. The image's delimiter tokens and embedding rows."""
        import numpy as np

        mtmd = self._mtmd
        rgb = np.ascontiguousarray(pixels, dtype=np.uint8)
        height, width = int(rgb.shape[0]), int(rgb.shape[1])
        data = (ctypes.c_uint8 * rgb.size).from_buffer_copy(rgb.tobytes())
        bitmap = mtmd.mtmd_bitmap_init(width, height, data)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text(self.marker, len(self.marker), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                raise InferenceError(f"llama.cpp's mtmd could not prepare a {width}x{height} image")
            out: list[PromptPart] = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == 0:  # text: the model's image delimiters
                    n = ctypes.c_size_t(0)
                    ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    out.append(TokenIds(tuple(int(ids[k]) for k in range(n.value))))
                    continue
                n_rows = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                with _sigint_as_flag() as asked:
                    failed = mtmd.mtmd_encode_chunk(self._ctx, chunk) != 0
                if asked:
                    raise KeyboardInterrupt
                if failed:
                    raise InferenceError("llama.cpp's vision encoder failed on an image")
                embd = mtmd.mtmd_get_output_embd(self._ctx)
                rows = np.ctypeslib.as_array(embd, shape=(n_rows * self._n_embd,)).reshape(n_rows, self._n_embd)
                out.append(EmbeddingRows(rows.copy(), causal=not mtmd.mtmd_decode_use_non_causal(self._ctx, chunk)))
            return tuple(out)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        if self._ctx:
            self._mtmd.mtmd_free(self._ctx)
            self._ctx = None


def _lookup_draft(history: Any, pending: int, limit: int) -> list[int]:
    """The tokens that followed the latest earlier occurrence of the last 3 (else 2)
    tokens of ``history + [pending]``, at most ``limit``; [] when there is none."""
    import numpy as np

    seq = np.append(history, pending)
    for n in (3, 2):
        if len(seq) <= n:
            continue
        # Every n-gram except the final one, which is the pattern itself.
        windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], n)
        hits = np.flatnonzero((windows == seq[-n:]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            return [int(t) for t in seq[start:start + limit]]
    return []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def quantize_gguf(src: Path, dst: Path, ftype: int, *, threads: int = 0) -> None:
    """llama.cpp's own quantizer (``llama_model_quantize``), in-process: ``src`` to ``dst``
    as ``ftype`` (a LLAMA_FTYPE_* value). ``dst`` is written directly; callers write to a
    temporary path and rename (convert/quantize.py). Already-quantized input is allowed
    (it is dequantized first). Raises `ModelLoadError` with llama.cpp's reason."""
    import llama_cpp

    _native_log.sink = None
    _native_log.errors.clear()
    _native_log.install(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if status != 0:
        raise ModelLoadError(f"llama.cpp could not quantize {src.name}: {_native_log.first_error() or status}")


def raw_speed(engine: LlamaEngine, ids: Sequence[int], n_decode: int) -> tuple[float, float, int]:
    """The baseline of `askgpt bench speed`: llama-cpp-python used directly on the same
    loaded model (same threads and batch), greedy, no askgpt code in the loop.
    Returns (prefill seconds, decode seconds, tokens decoded after the first)."""
    import time

    llm = engine._llm
    llm.reset()
    llm._ctx.kv_cache_clear()
    start = time.perf_counter()
    llm.eval(list(ids))
    token = llm.sample(temp=0.0)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([token])
        token = llm.sample(temp=0.0)
    decode = time.perf_counter() - start
    llm.reset()  # the cache holds this run, not a prompt askgpt made
    return prefill, decode, n_decode


# What `askgpt bench startup` compares a one-token askgpt answer with: the least a
# Python program does to load a model with llama-cpp-python and answer one chat
# message (given as the token ids askgpt's template makes of it, so both read the
# same prompt and llama-cpp-python's own template rendering is never run).
BARE_ANSWER_SCRIPT = """
import sys
from llama_cpp import Llama
path, n_ctx, threads, ids = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
out = llm.create_completion([int(t) for t in ids.split(",")], max_tokens=1, temperature=0)
print(out["choices"][0]["text"])
"""


def trial_run(path: Path) -> None:
    """What runtime.engine.guard's child process does: load, tokenize, one token."""
    engine = load_llama_engine(ModelRef(path.stem, path), EngineConfig(n_ctx=512))
    try:
        ids = engine.tokenize("Hello", add_bos=engine.info.add_bos, special=False)
        next(iter(engine.generate([TokenIds(tuple(ids))], SamplingConfig(temperature=0))), None)
    finally:
        engine.close()


def sequence_logits(engine: LlamaEngine, tokens: Sequence[int]) -> Any:
    """Raw next-token logits at every position of ``tokens``, shape (len(tokens), n_vocab)
    in float32. The engine must have been loaded with ``EngineConfig(all_logits=True)``."""
    import numpy as np

    llm = engine._llm
    if not llm._logits_all:
        raise InferenceError("sequence logits need an engine loaded with all_logits=True")
    llm.reset()
    llm._ctx.kv_cache_clear()
    try:
        llm.eval(list(tokens))
    except RuntimeError as exc:
        raise InferenceError(f"llama.cpp failed to evaluate the text: {exc}") from exc
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    llm.reset()  # the cache now holds this text, not a prompt: never reuse it as a prefix
    return logits


def sequence_logprobs(engine: LlamaEngine, tokens: Sequence[int]) -> Any:
    """Log-probabilities of the next token at every position of ``tokens``, shape
    (len(tokens), n_vocab): for perplexity and KL divergence (convert report)."""
    import numpy as np

    logits = sequence_logits(engine, tokens).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
