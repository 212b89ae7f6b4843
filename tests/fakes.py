"""A scripted engine for CLI-logic tests (every feature also has real-model tests).

Tokens are UTF-8 bytes (one token per byte), so token counts are predictable.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from askgpt.runtime.engine.base import EngineConfig, ModelInfo, PromptPart, TokenIds
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.models.registry import ModelRef

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class ScriptedEngine:
    answer: str = "scripted answer"
    n_ctx: int = 4096
    chat_template: str | None = CHATML
    # Called before yielding token i; may raise (e.g. KeyboardInterrupt) to simulate events.
    on_token: Callable[[int], None] | None = None
    prompts: list[str] = field(default_factory=list)
    samplings: list[SamplingConfig] = field(default_factory=list)  # how each prompt was to be sampled
    closed: bool = False

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name="scripted", path=Path("scripted.gguf"), n_ctx=self.n_ctx, n_ctx_train=self.n_ctx,
            n_embd=8, chat_template=self.chat_template, bos_token="", eos_token="<|im_end|>", add_bos=False,
        )

    @property
    def control_texts(self) -> frozenset[str]:
        return frozenset()  # byte tokens: no text parses as a control token

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def token_bytes(self, token: int) -> bytes:
        return bytes([token])

    def generate(self, prompt: Sequence[PromptPart], sampling: SamplingConfig) -> Generator[int, None, None]:
        ids = [t for p in prompt if isinstance(p, TokenIds) for t in p.ids]
        self.prompts.append(bytes(ids).decode("utf-8"))
        self.samplings.append(sampling)
        for i, byte in enumerate(self.answer.encode("utf-8")):
            if self.on_token is not None:
                self.on_token(i)
            yield byte

    def next_token_logprobs(self, prompt: Sequence[PromptPart]):
        import numpy as np

        return np.full(256, -np.log(256.0))  # uniform over the byte tokens

    def close(self) -> None:
        self.closed = True


class ScriptedFactory:
    """An EngineFactory that hands out one ScriptedEngine and remembers how it was asked."""

    def __init__(self, engine: ScriptedEngine | None = None) -> None:
        self.engine = engine or ScriptedEngine()
        self.calls: list[tuple[ModelRef, EngineConfig]] = []

    def __call__(self, ref: ModelRef, config: EngineConfig) -> ScriptedEngine:
        self.calls.append((ref, config))
        return self.engine
