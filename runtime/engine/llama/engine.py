"""The llama.cpp engine's facade: `LlamaEngine`, the `Engine` seam over one model, and
`load_llama_engine`, which checks a file before llama.cpp reads it.

The tiers under it: native.py (every low-level llama_cpp call), lookup.py (prompt-lookup
decoding), vision.py (the mmproj path); tools.py holds what only convert and bench use.
Nothing here imports ``llama_cpp`` at module level, so ``askgpt --help`` never loads it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
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
from askgpt.runtime.engine.llama.lookup import PromptLookup
from askgpt.runtime.engine.llama.native import NativeModel, open_model, sigint_as_flag
from askgpt.runtime.engine.llama.vision import MmprojVision
from askgpt.runtime.engine.memory import check_fits, kv_cache_bytes
from askgpt.runtime.engine.prefix_cache import CacheEvents, PrefixCache, model_key
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import InferenceError
from askgpt.runtime.models.gguf import check_gguf
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.system import available_memory_bytes, physical_cores


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
    native = open_model(ref, config, config.n_threads or physical_cores())
    cache = None
    if config.prefix_cache is not None:
        key = model_key(ref.path, kv_type=config.kv_type, backend_version=native.backend_version)
        cache = PrefixCache(config.prefix_cache, key)
    # The attention cache's size from the header walked above (the memory check's own figure;
    # tests/test_performance.py compares it with llama.cpp's log).
    kv_bytes = kv_cache_bytes(header, n_ctx=native.llm.n_ctx(), kv_type=config.kv_type)
    return LlamaEngine(native, ref, prefix_cache=cache, kv_bytes=kv_bytes)


class LlamaEngine:
    """`Engine` over one ``llama_cpp.Llama``; close it (or use ``with``) to free memory."""

    def __init__(self, native: NativeModel, ref: ModelRef, *, prefix_cache: PrefixCache | None = None,
                 kv_bytes: int = 0) -> None:
        self._native = native
        self._llm = native.llm
        self._prefix_cache = prefix_cache
        self._lookup = PromptLookup()
        self.context_shifts = 0  # how often a long answer has shifted the window
        self._vision: MmprojVision | None = None
        self._control_texts: frozenset[str] | None = None
        self._info = native.model_info(ref, kv_bytes=kv_bytes)

    @property
    def native(self) -> NativeModel:
        """The bindings tier under this engine (tools.py and the benchmarks measure through it)."""
        return self._native

    @property
    def info(self) -> ModelInfo:
        return self._info

    # Prompt-lookup decoding in this run: guessed tokens, and how many of them were kept
    # (settable: a caller measures one run by zeroing them first).
    @property
    def lookup_guessed(self) -> int:
        return self._lookup.guessed

    @lookup_guessed.setter
    def lookup_guessed(self, value: int) -> None:
        self._lookup.guessed = value

    @property
    def lookup_kept(self) -> int:
        return self._lookup.kept

    @lookup_kept.setter
    def lookup_kept(self, value: int) -> None:
        self._lookup.kept = value

    @property
    def cache_events(self) -> CacheEvents | None:
        """What the on-disk prefix cache did in this run (None: no cache)."""
        return None if self._prefix_cache is None else self._prefix_cache.events

    @property
    def control_texts(self) -> frozenset[str]:
        if self._control_texts is None:
            self._control_texts = self._native.control_texts()
        return self._control_texts

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def token_bytes(self, token: int) -> bytes:
        return bytes(self._llm.detokenize([token]))

    def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
        llm, native = self._llm, self._native
        llm.set_seed(native.default_seed if sampling.seed is None else sampling.seed)
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
        bias = sampling.copy_bias if sampling.copy_bias is not None and sampling.copy_bias.logit > 0 else None
        copying = bias is not None
        if bias is not None:
            kwargs["logits_processor"] = native.copy_bias(bias)
        if sampling.json_schema is not None:
            kwargs["grammar"] = native.grammar(sampling.json_schema)
        elif sampling.temperature == 0 and sampling.lookup_tokens > 0 and not copying:
            # (Prompt lookup checks guesses with llama.cpp's own greedy sampler, which knows no
            # copy bias: a biased answer is decoded token by token.)
            yield from self._lookup.decode(native, sampling, n_ctx=self._info.n_ctx,
                                           pending=ids[-1] if text_only else None,
                                           shift=lambda: self._shift_context(keep=n_prompt))
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
                    if native.is_eog(token):
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

    def _shift_context(self, *, keep: int) -> bool:
        """Context shift, as llama.cpp's own CLI does it: keep the first ``keep``
        positions (the prompt: system prompt, examples, documents), remove half of
        what follows from the KV cache, and move the rest back so positions stay
        contiguous. False when the prompt leaves too little to shift."""
        n_discard = (self._llm.n_tokens - keep) // 2
        if n_discard < 8 or not self._native.shift(keep, n_discard):
            return False
        self.context_shifts += 1
        return True

    def next_token_logprobs(self, prompt: Sequence[PromptPart]) -> Any:
        import numpy as np

        self._read_prompt(prompt)
        logits = self._native.logits(-1).astype(np.float64)  # the last decoded token's
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
        cache = self._prefix_cache
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
        if not self._native.restore(state, stored):
            return 0
        return _common_prefix(stored, keys)

    def _save(self, keys: list[int]) -> None:
        cache = self._prefix_cache
        assert cache is not None
        state = self._native.state()
        if state:
            cache.store(keys, state)

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Let Ctrl-C stop a long prompt evaluation between two nodes of the compute
        graph, instead of after the whole batch (512 tokens can take seconds).

        llama.cpp calls an abort callback between graph nodes, from the thread that
        called llama_decode: here the main thread, so Python runs its SIGINT handler
        there, which only sets a flag; the callback returns it and llama_decode stops.
        Only while reading a prompt: per generated token the ~600 callbacks would cost
        a tenth of the speed."""
        with sigint_as_flag() as asked:
            try:
                with self._native.abort_on(asked):
                    yield
            except (RuntimeError, InferenceError):
                if asked:
                    raise KeyboardInterrupt from None
                raise
        if asked:  # it came after the last node
            raise KeyboardInterrupt

    def _decode_embeddings(self, part: EmbeddingRows, lo: int, hi: int) -> None:
        import numpy as np

        llm, native = self._llm, self._native
        n_embd = self._info.n_embd
        keys = embedding_keys(part)
        rows = np.ascontiguousarray(part.rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != n_embd:
            raise InferenceError(f"embedding rows have shape {rows.shape}, the model needs (n, {n_embd})")
        step = llm.n_batch
        if not part.causal:
            # Rows that attend both ways must be read in one micro-batch, all of them.
            step = min(llm.n_batch, llm.context_params.n_ubatch)
            if lo != 0 or hi - lo > step:
                raise InferenceError(f"an image of {hi - lo} rows read both ways does not fit one batch of {step}",
                                     hint="raise --batch")
            native.set_causal(False)
        try:
            for start in range(lo, hi, step):
                chunk = np.ascontiguousarray(rows[start:min(start + step, hi)])
                native.decode_rows(chunk, keys[start:start + len(chunk)], n_embd=n_embd)
        finally:
            if not part.causal:
                native.set_causal(True)

    def open_vision(self, mmproj: Path, *, threads: int) -> MmprojVision:
        """This model's own vision projector (mmproj), loaded once through llama.cpp's mtmd."""
        if self._vision is None or self._vision.path != mmproj:
            if self._vision is not None:
                self._vision.close()
            self._vision = MmprojVision(self._native, self._info, mmproj, threads=threads)
        return self._vision

    def close(self) -> None:
        if self._vision is not None:
            self._vision.close()
            self._vision = None
        self._native.close()

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
