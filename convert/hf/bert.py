"""``BertModel`` (sentence-transformers' all-MiniLM-L6-v2, BGE, ...) -> GGUF architecture "bert":
an encoder for embeddings. Learned absolute positions and token types instead of rope,
LayerNorm with biases, bidirectional attention, and a pooling type that turns the per-token
outputs into one vector (sentence-transformers' ``1_Pooling/config.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from askgpt.convert.hf.base import ModelConverter
from askgpt.convert.hf.config import CheckpointUsageError, HfConfig, common_config
from askgpt.convert.hf.tokenizer import Vocabulary, read_wordpiece

# llama.cpp's BERT graph uses GELU; these HF names are that function or its tanh approximation.
_GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Checkpoint tensors an embedding model does not use: the [CLS] pooler, the masked-LM and
# next-sentence heads, and HF's constant position index buffer.
_UNUSED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")


@dataclass(frozen=True)
class BertConfig(HfConfig):
    type_vocab_size: int
    pooling: str  # a gguf.PoolingType member's name: MEAN or CLS


def pooling_of(folder: Path) -> str:
    """sentence-transformers' pooling (``1_Pooling/config.json``); mean when the folder has
    none, as sentence-transformers itself defaults for a plain BERT checkpoint."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "MEAN"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointUsageError(f"cannot read {path}: {exc}") from exc
    modes = sorted(k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True)
    if modes == ["pooling_mode_mean_tokens"]:
        return "MEAN"
    if modes == ["pooling_mode_cls_token"]:
        return "CLS"
    raise CheckpointUsageError(f"pooling {', '.join(modes) or 'none'} in {path} is not supported",
                               hint="llama.cpp pools BERT embeddings by mean or [CLS]")


class BertConverter(ModelConverter[BertConfig]):
    hf_architecture = "BertModel"
    gguf_arch_name = "BERT"

    @classmethod
    def read_config(cls, raw: dict[str, Any]) -> BertConfig:
        common = common_config(raw, cls.hf_architecture)
        act = str(raw.get("hidden_act", "gelu"))
        if act not in _GELU:
            raise ValueError(f"hidden_act {act!r} (llama.cpp's BERT uses GELU)")
        positions = str(raw.get("position_embedding_type", "absolute"))
        if positions != "absolute":
            raise ValueError(f"position_embedding_type {positions!r} (only absolute is supported)")
        # The position table's size is the context: there is no default to fall back on.
        n_ctx = int(raw["max_position_embeddings"])
        return BertConfig(**asdict(replace(common, n_ctx_train=n_ctx,
                                           rms_eps=float(raw.get("layer_norm_eps", 1e-12)))),
                          type_vocab_size=int(raw.get("type_vocab_size", 2)), pooling="MEAN")

    @classmethod
    def from_config(cls, raw: dict[str, Any], folder: Path) -> ModelConverter[BertConfig]:
        converter = super().from_config(raw, folder)
        return cls(replace(converter.cfg, pooling=pooling_of(folder)))

    def read_vocabulary(self, folder: Path) -> Vocabulary:
        return read_wordpiece(folder, self.cfg.vocab_size)

    def checkpoint_name(self, name: str) -> str | None:
        name = name.removeprefix("bert.")  # BertForMaskedLM and friends nest the encoder
        if name.startswith(_UNUSED_PREFIXES):
            return None
        if name.endswith(".gamma"):  # LayerNorm names of old TF-ported checkpoints
            return name[: -len(".gamma")] + ".weight"
        if name.endswith(".beta"):
            return name[: -len(".beta")] + ".bias"
        return name

    def stays_f32(self, gguf_name: str) -> bool:
        # llama.cpp adds rows of these tables to float32 activations with ggml_add, which has
        # no f32 + f16 kernel on the CPU (it aborts); they are small.
        return gguf_name in ("position_embd.weight", "token_types.weight")

    def add_norm_and_position(self, w: Any) -> None:
        w.add_layer_norm_eps(self.cfg.rms_eps)  # LayerNorm, and positions come from a learned table

    def add_metadata(self, w: Any) -> None:
        import gguf

        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType[self.cfg.pooling])
        w.add_token_type_count(self.cfg.type_vocab_size)

    def add_tokenizer_flags(self, w: Any, vocab: Vocabulary, add_special: dict[str, bool]) -> None:
        # [CLS] text [SEP], as BertTokenizer's template; tokenizer.json usually says so already.
        if "bos" not in add_special:
            w.add_add_bos_token(True)
        if "eos" not in add_special:
            w.add_add_eos_token(True)


class BertForMaskedLMConverter(BertConverter):
    """The same encoder under a masked-LM head; the head is left out."""

    hf_architecture = "BertForMaskedLM"
