"""What only ``askgpt convert`` and ``askgpt bench`` (and the first-load guard's child) use
of llama.cpp: its quantizer, every position's logits of a text, the bare llama-cpp-python
baselines of the speed and start-up benchmarks, and a trial run of a file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from askgpt.runtime.engine.base import EngineConfig, TokenIds
from askgpt.runtime.engine.llama.engine import LlamaEngine, load_llama_engine
from askgpt.runtime.engine.llama.native import import_llama_cpp, native_log, quantize
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import InferenceError, ModelLoadError
from askgpt.runtime.models.registry import ModelRef


def quantize_gguf(src: Path, dst: Path, ftype: int, *, threads: int = 0) -> None:
    """llama.cpp's own quantizer (``llama_model_quantize``), in-process: ``src`` to ``dst``
    as ``ftype`` (a LLAMA_FTYPE_* value). ``dst`` is written directly; callers write to a
    temporary path and rename (convert/quantize.py). Already-quantized input is allowed
    (it is dequantized first). Raises `ModelLoadError` with llama.cpp's reason."""
    status = quantize(src, dst, ftype, threads=threads)
    if status != 0:
        raise ModelLoadError(f"llama.cpp could not quantize {src.name}: {native_log.first_error() or status}")


def raw_speed(engine: LlamaEngine, ids: Sequence[int], n_decode: int) -> tuple[float, float, int]:
    """The baseline of `askgpt bench speed`: llama-cpp-python used directly on the same
    loaded model (same threads and batch), greedy, no askgpt code in the loop.
    Returns (prefill seconds, decode seconds, tokens decoded after the first)."""
    import time

    native = engine.native
    llm = native.llm
    native.reset()
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

    native = engine.native
    llm = native.llm
    if not native.all_logits:
        raise InferenceError("sequence logits need an engine loaded with all_logits=True")
    native.reset()
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


@contextmanager
def forced_flash_attention(on: bool) -> Iterator[None]:
    """llama.cpp's flash attention on or off for every model loaded inside, whatever askgpt
    picks for the cache type (benchmarks/kv_memory.py compares cache types like for like)."""
    llama_cpp = import_llama_cpp()
    init = llama_cpp.Llama.__init__

    def forced(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["flash_attn"] = on
        init(self, *args, **kwargs)

    llama_cpp.Llama.__init__ = forced
    try:
        yield
    finally:
        llama_cpp.Llama.__init__ = init
