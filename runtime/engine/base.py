"""The engine seam: everything askgpt needs from a language-model backend.

`LlamaEngine` (runtime/engine/llama/, the only package that imports llama_cpp)
implements it for GGUF models, `RemoteEngine` (served.py) for OpenAI-compatible
servers; optional features are protocols in capabilities.py. Tests of CLI logic
use a scripted fake. A prompt is a sequence of parts so that image embedding rows can sit
between runs of text tokens; the engine decodes each run in its own batch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from askgpt.runtime.engine.sampling import SamplingConfig

if TYPE_CHECKING:
    import numpy as np

    from askgpt.runtime.engine.prefix_cache import PrefixCacheConfig


# Around an image's data: URL (a served engine reads it back out): askgpt writes these only into
# the markup it tokenizes as such, never into content, so a document holding them is just text.
MEDIA_OPEN, MEDIA_CLOSE = "\ue023", "\ue024"


# llama.cpp makes every context a multiple of this (never less), while llama-cpp-python
# sizes its own token buffer by the number asked for: a context that is not a multiple
# overruns that buffer once the prompt passes the number asked ("could not broadcast").
CTX_STEP = 256


def round_context(n_ctx: int) -> int:
    """``n_ctx`` as llama.cpp makes it: 0 (the model's training context) stays 0, anything
    else goes up to a whole number of `CTX_STEP`s."""
    return -(-max(0, n_ctx) // CTX_STEP) * CTX_STEP


@dataclass(frozen=True)
class EngineConfig:
    """How to load a model. ``n_ctx == 0`` means the model's training context."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_threads: int | None = None
    # Layers offloaded to a GPU: None = all of them where this llama.cpp build has a GPU
    # backend, none otherwise; 0 keeps everything on the CPU.
    n_gpu_layers: int | None = None
    # Window of recent tokens the repeat penalty looks at.
    repeat_last_n: int = 64
    # Receives llama.cpp's own log lines (for --debug); None drops them, so
    # stderr carries only askgpt's messages.
    native_log: Callable[[str], None] | None = None
    # Keep the logits of every prompt position (perplexity and KL in convert report), not
    # only the last one; costs n_ctx x n_vocab floats.
    all_logits: bool = False
    # Storage type of the attention cache, a `runtime.engine.kv.KvType` name: "f16" (llama.cpp's
    # default); "q8_0", about half the memory for long windows; "f32", twice, for exact comparisons.
    kv_type: str = "f16"
    # Where runtime.engine.guard remembers files that loaded safely in a child process;
    # None skips that check (tests and benchmarks that load known files).
    trial_cache: Path | None = None
    # Keep evaluated prompt prefixes on disk across runs (runtime.engine.prefix_cache); None: off.
    prefix_cache: PrefixCacheConfig | None = None
    # A served model (runtime.engine.served): the API key sent as a bearer token (never
    # shown or logged), and how long to wait for the server.
    api_key: str | None = None
    request_timeout: float = 120.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    n_ctx: int  # context size of this session
    n_ctx_train: int
    n_embd: int  # width of one input embedding row
    chat_template: str | None
    bos_token: str  # text form, "" when the model has none
    eos_token: str
    add_bos: bool  # whether the tokenizer expects a BOS token at the start
    kv_bytes: int = 0  # memory of the attention cache at this context size (0: unknown)


@dataclass(frozen=True)
class TokenIds:
    """A run of token ids."""

    ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class EmbeddingRows:
    """A run of ready-made input embeddings, shape (n, n_embd) float32,
    e.g. an image projected into the model's embedding space."""

    rows: np.ndarray
    # False: the rows attend to each other both ways (Gemma 3's images); llama.cpp then
    # reads them in one batch with causal attention switched off.
    causal: bool = True

    def __len__(self) -> int:
        return int(self.rows.shape[0])


PromptPart = TokenIds | EmbeddingRows


def embedding_keys(part: EmbeddingRows) -> list[int]:
    """Stand-in token ids for embedding rows: negative (no token has one) and drawn
    from the rows' content hash, so two prompts share a cached prefix through an
    image only when it is the same image."""
    import hashlib

    import numpy as np

    digest = hashlib.blake2b(np.ascontiguousarray(part.rows, dtype=np.float32).tobytes(), digest_size=4)
    if not part.causal:  # read the other way, the same rows leave another state in the cache
        digest.update(b"two-way")
    base = int.from_bytes(digest.digest(), "little") % 2**30
    return [-2 - ((base + i) % 2**30) for i in range(len(part))]


def prompt_keys(prompt: Sequence[PromptPart]) -> list[int]:
    """One key per position of ``prompt``: the token id, or an embedding row's key."""
    keys: list[int] = []
    for part in prompt:
        keys.extend(part.ids if isinstance(part, TokenIds) else embedding_keys(part))
    return keys


@runtime_checkable
class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    @property
    def control_texts(self) -> frozenset[str]:
        """The spellings of the tokens that only ``special=True`` parses as themselves
        (``<|im_start|>``): runtime.prompting.generate lets only the chat template's markup produce them."""
        ...

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special`` lets control tokens such as
        ``<|im_start|>`` in a rendered chat template parse as themselves. Never pass
        ``special=True`` for text that did not come from the template."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes a generated token stands for (may be part of a UTF-8 character)."""
        ...

    def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
        """Evaluate ``prompt`` and yield sampled token ids until an
        end-of-generation token (not yielded) or until the caller stops
        iterating. Reuses the KV cache for a prompt prefix it has already seen."""
        ...

    def next_token_logprobs(self, prompt: Sequence[PromptPart]) -> np.ndarray:
        """Log-probabilities over the vocabulary of the token that would follow
        ``prompt``, shape (n_vocab,): to compare how inputs move the model
        without depending on one greedy path."""
        ...

    def close(self) -> None: ...

