"""The bindings tier: every call askgpt makes into llama-cpp-python's low-level API
(``llama_cpp.llama_*``, ctypes buffers, llama.cpp's logger and abort callback).

`NativeModel` owns one ``llama_cpp.Llama`` (model + context + KV cache) and wraps the C
calls made on it (batches, KV-cache edits, state save/restore, samplers, logits); the tiers
above (engine.py, lookup.py, vision.py, tools.py) use it and the Llama's public methods.
`NativeLog` routes llama.cpp's one process-wide logger; `sigint_as_flag` keeps Ctrl-C out of
native code. ``llama_cpp`` is imported inside functions, so importing this stays cheap.
"""

from __future__ import annotations

import ctypes
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from askgpt.runtime.engine.base import EngineConfig, ModelInfo
from askgpt.runtime.engine.kv import KvType
from askgpt.runtime.engine.sampling import CopyBias
from askgpt.runtime.errors import InferenceError, ModelLoadError, UsageError
from askgpt.runtime.models.registry import ModelRef

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

    def route(self, llama_cpp: Any, sink: Callable[[str], None] | None) -> None:
        """Send llama.cpp's lines to ``sink`` from now on, with a fresh list of errors."""
        self.sink = sink
        self.errors.clear()
        self.install(llama_cpp)

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
native_log = NativeLog()


@contextmanager
def sigint_as_flag() -> Iterator[list[int]]:
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


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelLoadError(f"llama-cpp-python is not usable: {exc}", hint="reinstall askgpt") from exc
    return llama_cpp


def open_model(ref: ModelRef, config: EngineConfig, threads: int) -> NativeModel:
    """``ref`` loaded by ``llama_cpp.Llama`` with ``config``; llama.cpp's log goes to
    ``config.native_log``. Raises `ModelLoadError` with llama.cpp's own reason, and
    KeyboardInterrupt once the load is done when Ctrl-C came during it."""
    llama_cpp = import_llama_cpp()
    native_log.route(llama_cpp, config.native_log)
    with sigint_as_flag() as asked:
        llm = _construct(llama_cpp, ref, config, threads)
    if asked:  # Ctrl-C during the load: honoured as soon as it is done (a fraction of a second)
        llm.close()
        raise KeyboardInterrupt
    return NativeModel(llama_cpp, llm, all_logits=config.all_logits)


def _construct(llama_cpp: Any, ref: ModelRef, config: EngineConfig, threads: int) -> Any:
    kv = KvType(config.kv_type)
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
            type_k=kv.ggml_type,
            type_v=kv.ggml_type,
            flash_attn=kv.flash_attention,
            # verbose=False redirects fd 2 to /dev/null during the load, which would
            # swallow the lines --debug asks for; otherwise the router drops them.
            verbose=config.native_log is not None,
        )
    except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError with no detail
        detail = native_log.first_error()
        raise ModelLoadError(
            f"llama.cpp could not load {ref.path.name}: {detail or exc}",
            hint="the file may be truncated or use an architecture this llama.cpp build lacks",
        ) from exc
    return llm


def _gpu_layers(llama_cpp: Any, wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    return -1 if llama_cpp.llama_supports_gpu_offload() else 0  # -1: every layer


def quantize(src: Path, dst: Path, ftype: int, *, threads: int) -> int:
    """llama.cpp's ``llama_model_quantize`` of ``src`` to ``dst`` as ``ftype``; its status
    (0: done; else `native_log.first_error` holds the reason)."""
    llama_cpp = import_llama_cpp()
    native_log.route(llama_cpp, None)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))


class GreedySampler:
    """The sampler chain llama-cpp-python builds for temperature 0: penalties, then greedy."""

    def __init__(self, native: NativeModel, repeat_penalty: float) -> None:
        lib = native.lib
        self._lib, self._ctx = lib, native.llm.ctx
        self._chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(self._chain, lib.llama_sampler_init_penalties(
            native.n_vocab(), native.llm.last_n_tokens_size, repeat_penalty, 0.0, 0.0))
        lib.llama_sampler_chain_add(self._chain, lib.llama_sampler_init_greedy())

    def sample(self, index: int) -> int:
        """The token sampled from the logits of batch position ``index`` (-1: the last)."""
        return int(self._lib.llama_sampler_sample(self._chain, self._ctx, index))

    def close(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None


class NativeModel:
    """One ``llama_cpp.Llama`` and the low-level calls askgpt makes on it.

    ``llm`` is public for the Llama's own high-level methods (tokenize, eval, generate)
    and its bookkeeping (``n_tokens``, ``input_ids``: which positions the KV cache holds),
    which every method here keeps in step with the cache."""

    def __init__(self, lib: Any, llm: Any, *, all_logits: bool) -> None:
        self.lib = lib
        self.llm = llm
        # Whether every position keeps its logits: our own record of what the Llama was
        # built with, so nothing reads llama-cpp-python's private ``_logits_all``.
        self.all_logits = all_logits
        self.vocab = lib.llama_model_get_vocab(llm.model)

    @property
    def backend_version(self) -> str:
        return str(self.lib.__version__)

    @property
    def default_seed(self) -> int:
        return int(self.lib.LLAMA_DEFAULT_SEED)

    def token_text(self, token_id: int) -> str:
        if token_id < 0:  # the model has no such token
            return ""
        return bytes(self.lib.llama_vocab_get_text(self.vocab, token_id)).decode("utf-8", errors="replace")

    def model_info(self, ref: ModelRef, *, kv_bytes: int) -> ModelInfo:
        lib, llm, vocab = self.lib, self.llm, self.vocab
        meta: dict[str, str] = llm.metadata or {}
        return ModelInfo(
            name=ref.name,
            path=ref.path,
            n_ctx=llm.n_ctx(),
            n_ctx_train=lib.llama_model_n_ctx_train(llm.model),
            n_embd=lib.llama_model_n_embd_inp(llm.model),
            chat_template=meta.get("tokenizer.chat_template") or None,
            bos_token=self.token_text(lib.llama_vocab_bos(vocab)),
            eos_token=self.token_text(lib.llama_vocab_eos(vocab)),
            add_bos=bool(lib.llama_vocab_get_add_bos(vocab)),
            kv_bytes=kv_bytes,
        )

    def control_texts(self) -> frozenset[str]:
        """The spellings of the vocabulary's control and unknown tokens: those llama.cpp's
        tokenizer parses from text only with ``special=True`` (user-defined tokens parse
        either way, so they are ordinary text here)."""
        lib = self.lib
        wanted = lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN
        texts = set()
        for token in range(self.n_vocab()):
            if lib.llama_vocab_get_attr(self.vocab, token) & wanted:
                text = bytes(lib.llama_vocab_get_text(self.vocab, token)).decode("utf-8", errors="replace")
                if text:
                    texts.add(text)
        return frozenset(texts)

    def n_vocab(self) -> int:
        return int(self.lib.llama_vocab_n_tokens(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    def grammar(self, json_schema: str) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            return LlamaGrammar.from_json_schema(json_schema, verbose=False)
        except Exception as exc:  # the converter raises ValueError, KeyError, RecursionError...
            raise UsageError(f"llama.cpp cannot build a grammar from this JSON schema: {exc}") from exc

    def copy_token_ids(self, text: str) -> list[int]:
        """The tokens ``text`` is made of, each word's with and without its leading space (a
        word copied mid-sentence is tokenized with it). ``special=False``: a document's text
        never turns into control tokens."""
        tokenize = self.llm.tokenize
        ids = set(tokenize(text.encode("utf-8", errors="replace"), add_bos=False, special=False))
        for word in set(text.split()):
            for form in (word, " " + word):
                ids.update(tokenize(form.encode("utf-8", errors="replace"), add_bos=False, special=False))
        return sorted(ids)

    def copy_bias(self, bias: CopyBias) -> Any:
        """A logits processor for ``llm.generate``: ``bias.logit`` added to the tokens of
        ``bias.text`` at every step."""
        import numpy as np

        ids = np.asarray(self.copy_token_ids(bias.text), dtype=np.intp)
        logit = np.float32(bias.logit)

        def favour(_input_ids: Any, scores: Any) -> Any:
            scores[ids] += logit
            return scores

        return self.lib.LogitsProcessorList([favour])

    def greedy_sampler(self, repeat_penalty: float) -> GreedySampler:
        return GreedySampler(self, repeat_penalty)

    def logits(self, index: int) -> Any:
        """The raw logits of batch position ``index`` (-1: the last decoded), shape (n_vocab,),
        a view into llama.cpp's buffer (valid until the next decode)."""
        import numpy as np

        pointer = self.lib.llama_get_logits_ith(self.llm.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab(),))

    def decode_batch(self, n: int, *, tokens: Sequence[int] | None = None, rows: Any = None, n_embd: int = 0,
                     all_logits: bool, what: str) -> None:
        """One llama_decode of ``n`` token ids or embedding rows (width ``n_embd``) at the next positions."""
        lib, llm = self.lib, self.llm
        batch = lib.llama_batch_init(n, 0 if rows is None else n_embd, 1)
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

    def decode_tokens(self, tokens: list[int], *, what: str = "the guessed tokens") -> None:
        """Decode ``tokens`` after the cached positions, keeping every position's logits."""
        llm = self.llm
        self.decode_batch(len(tokens), tokens=tokens, all_logits=True, what=what)
        llm.input_ids[llm.n_tokens:llm.n_tokens + len(tokens)] = tokens
        llm.n_tokens += len(tokens)

    def decode_rows(self, chunk: Any, keys: list[int], *, n_embd: int) -> None:
        """Decode embedding rows after the cached positions, recorded under ``keys``."""
        llm = self.llm
        n = len(chunk)
        self.decode_batch(n, rows=chunk, n_embd=n_embd, all_logits=False, what="embedding rows")
        # Keys from the rows' content: a later prompt matches this prefix only with the same image.
        llm.input_ids[llm.n_tokens:llm.n_tokens + n] = keys
        llm.n_tokens += n

    def set_causal(self, causal: bool) -> None:
        self.lib.llama_set_causal_attn(self.llm.ctx, causal)

    def truncate(self, keep: int) -> None:
        """Drop every cached position from ``keep`` on."""
        llm = self.llm
        if keep < llm.n_tokens:
            self.lib.llama_memory_seq_rm(self.lib.llama_get_memory(llm.ctx), 0, keep, -1)
            llm.n_tokens = keep

    def shift(self, keep: int, n_discard: int) -> bool:
        """Remove positions [keep, keep + n_discard) from the cache and move the rest back,
        so positions stay contiguous. False when llama.cpp cannot remove them."""
        lib, llm = self.lib, self.llm
        n_past = llm.n_tokens
        memory = lib.llama_get_memory(llm.ctx)
        if not lib.llama_memory_seq_rm(memory, 0, keep, keep + n_discard):
            return False
        lib.llama_memory_seq_add(memory, 0, keep + n_discard, n_past, -n_discard)
        llm.input_ids[keep:n_past - n_discard] = llm.input_ids[keep + n_discard:n_past]
        llm.n_tokens = n_past - n_discard
        return True

    def clear(self) -> None:
        """Empty the attention cache. (The same call llama-cpp-python's private
        ``_ctx.kv_cache_clear()`` makes, through the public binding.)"""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.llm.ctx), True)
        self.llm.n_tokens = 0

    def reset(self) -> None:
        """Forget every cached position, in the Llama's bookkeeping and in the cache."""
        self.llm.reset()
        self.clear()

    def state(self) -> bytes | None:
        """The attention cache's state of sequence 0, as llama.cpp serializes it."""
        lib, ctx = self.lib, self.llm.ctx
        size = lib.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(ctx, buffer, size, 0)
        return bytes(memoryview(buffer)[:written]) if written else None

    def restore(self, state: bytes, keys: Sequence[int]) -> bool:
        """Load a `state` holding the positions ``keys``; on failure the cache is emptied
        and False returned."""
        import numpy as np

        lib, llm = self.lib, self.llm
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if lib.llama_state_seq_set_data(llm.ctx, buffer, len(state), 0) == 0:
            self.clear()
            return False
        llm.input_ids[: len(keys)] = np.asarray(keys, dtype=llm.input_ids.dtype)
        llm.n_tokens = len(keys)
        return True

    @contextmanager
    def abort_on(self, asked: list[int]) -> Iterator[None]:
        """While inside, llama_decode stops between two nodes of the compute graph once
        ``asked`` is non-empty (llama.cpp's abort callback, called from the decoding thread)."""
        lib = self.lib

        @lib.ggml_abort_callback
        def should_abort(_data: object) -> bool:
            return bool(asked)

        lib.llama_set_abort_callback(self.llm.ctx, should_abort, None)
        try:
            yield
        finally:
            lib.llama_set_abort_callback(self.llm.ctx, lib.ggml_abort_callback(), None)

    def close(self) -> None:
        self.llm.close()
