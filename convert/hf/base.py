"""The converter of one Hugging Face architecture (the shape of ollama's ``ModelConverter``).

A subclass says what differs between architectures: what it reads from
config.json, its GGUF architecture, its tokenizer, which tensors it transforms
(Llama's q/k row order), which tensors it computes (rope factors) and which
key-values it adds. The rest (the tensor plan, the common key-values, the
writing) is the same for all, here and in ``convert``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from askgpt.convert.hf.config import CheckpointUsageError, HfConfig
from askgpt.convert.hf.tokenizer import Vocabulary, read_vocabulary
from askgpt.convert.safetensors import CheckpointError, TensorSource

Transform = Callable[[np.ndarray], np.ndarray]
C = TypeVar("C", bound=HfConfig)


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    shape: tuple[int, ...]  # numpy order (rows, cols)
    source_name: str = ""  # the checkpoint's tensor, or
    made: np.ndarray | None = None  # a tensor computed from the config (rope factors)
    transform: Transform | None = None  # applied to the checkpoint's tensor as it is read
    f32: bool = False  # stored as float32 whatever the output type (llama.cpp adds it to f32 activations)

    def load(self, source: TensorSource) -> np.ndarray:
        if self.made is not None:
            return self.made
        data = source.load(self.source_name)
        return self.transform(data) if self.transform is not None else data


@dataclass(frozen=True)
class ModelConverter(Generic[C]):
    cfg: C

    hf_architecture: ClassVar[str]  # config.json's "architectures" entry
    gguf_arch_name: ClassVar[str]  # a gguf.MODEL_ARCH member's name, e.g. "LLAMA"

    @classmethod
    def read_config(cls, raw: dict[str, Any]) -> C:
        """What this architecture needs from config.json; raises KeyError, TypeError or
        ValueError for a missing or garbled field."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, raw: dict[str, Any], folder: Path) -> ModelConverter[C]:
        try:
            cfg = cls.read_config(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointUsageError(f"config.json in {folder} lacks or garbles {exc}") from exc
        return cls(cfg)

    @property
    def gguf_arch(self) -> Any:
        import gguf

        return gguf.MODEL_ARCH[self.gguf_arch_name]

    def tensor_name_map(self) -> Any:
        """The gguf package's map from checkpoint tensor names to GGUF ones."""
        import gguf

        return gguf.get_tensor_name_map(self.gguf_arch, self.cfg.n_layer)

    def read_vocabulary(self, folder: Path) -> Vocabulary:
        return read_vocabulary(folder, self.cfg.vocab_size)

    def transform(self, source_name: str) -> Transform | None:
        """What to do to a checkpoint tensor before it is written (None: nothing)."""
        return None

    def extra_tensors(self) -> list[PlannedTensor]:
        """Tensors computed from the config rather than read from the checkpoint."""
        return []

    def checkpoint_name(self, name: str) -> str | None:
        """The name to look ``name`` up under in the tensor name map, or None to leave the
        tensor out (one llama.cpp recomputes or never uses)."""
        return None if name.endswith("rotary_emb.inv_freq") else name  # from rope.freq_base

    def stays_f32(self, gguf_name: str) -> bool:
        """Whether a 2-D tensor must stay float32 in a float16/bfloat16 file (1-D ones always do)."""
        return False

    def add_norm_and_position(self, w: Any) -> None:
        """The normalisation epsilon and the position encoding's key-values (RMSNorm and
        rotary positions for decoders)."""
        w.add_layer_norm_rms_eps(self.cfg.rms_eps)
        w.add_rope_freq_base(self.cfg.rope_theta)

    def add_metadata(self, writer: Any) -> None:
        """This architecture's own key-values, written after the common ones."""

    def add_tokenizer_flags(self, w: Any, vocab: Vocabulary, add_special: dict[str, bool]) -> None:
        """Tokenizer flags the tokenizer files may leave unsaid (``add_special``: what they said)."""
        if "bos" not in add_special:  # SentencePiece models expect BOS; byte-level BPE ones mostly not
            w.add_add_bos_token(vocab.model == "llama")

    def plan_tensors(self, source: TensorSource) -> list[PlannedTensor]:
        tmap = self.tensor_name_map()
        planned: list[PlannedTensor] = []
        for name in source.names():
            key = self.checkpoint_name(name)
            if key is None:
                continue
            new = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise CheckpointError(f"tensor {name} has no GGUF name for {self.cfg.architecture}")
            planned.append(PlannedTensor(new, source.shape(name), name, transform=self.transform(name),
                                         f32=self.stays_f32(new)))
        if "token_embd.weight" not in {p.gguf_name for p in planned}:
            raise CheckpointError("the checkpoint has no token embedding (model.embed_tokens.weight)")
        return planned + self.extra_tensors()
