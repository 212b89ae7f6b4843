"""What a GGUF file holds, from its header alone (runtime.models.gguf's bounded walk):
`askgpt models info` and `askgpt models list`. The walk reads the built-in model's
header in about 15 ms; the `gguf` package's GGUFReader took 2.0 s on the same file
(it turns the 49,152-entry vocabulary into Python objects), so it is not used here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.models.filetypes import file_type_name
from askgpt.runtime.models.gguf import GgufHeader, check_gguf
from askgpt.runtime.models.registry import mmproj_beside


@dataclass(frozen=True)
class ModelFacts:
    path: Path
    size: int  # bytes on disk
    architecture: str
    general_name: str  # the name the file gives itself
    n_params: int
    file_type: str
    context_length: int
    embedding_length: int
    layers: int
    heads: int
    kv_heads: int
    vocab_size: int
    tokenizer: str
    chat_template: bool
    vision: str  # "" | "mmproj beside it: NAME" | "this is a vision projector (mmproj)"

    @property
    def params_label(self) -> str:
        n = self.n_params
        return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"

    def to_json(self) -> dict[str, object]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["path"] = str(self.path)
        return data


def model_facts(path: Path) -> ModelFacts:
    header = check_gguf(path)
    return _facts(path, header)


def _facts(path: Path, h: GgufHeader) -> ModelFacts:
    return ModelFacts(
        path=path, size=path.stat().st_size, architecture=h.architecture or "?",
        general_name=h.strings.get("general.name", ""), n_params=h.n_params,
        file_type=file_type_name(h.numbers.get("general.file_type")),
        context_length=h.number("context_length"), embedding_length=h.number("embedding_length"),
        layers=h.number("block_count"), heads=h.number("attention.head_count"),
        kv_heads=h.number("attention.head_count_kv") or h.number("attention.head_count"),
        vocab_size=h.array_lengths.get("tokenizer.ggml.tokens", 0),
        tokenizer=h.strings.get("tokenizer.ggml.model", ""),
        chat_template="tokenizer.chat_template" in h.strings,
        vision=_vision(path, h),
    )


def _vision(path: Path, h: GgufHeader) -> str:
    if h.architecture == "clip":
        return "this is a vision projector (mmproj)"
    beside = mmproj_beside(path)
    return f"mmproj beside it: {beside.name}" if beside is not None else ""


def format_facts(f: ModelFacts) -> str:
    rows = [
        ("file", f"{f.path} ({f.size / 1e6:,.0f} MB)"), ("name", f.general_name or "-"),
        ("architecture", f.architecture),
        ("parameters", f"{f.n_params:,} ({f.params_label})"), ("quantization", f.file_type),
        ("context length", f"{f.context_length:,}"), ("embedding width", str(f.embedding_length)),
        ("layers", str(f.layers)), ("attention heads", f"{f.heads} ({f.kv_heads} for keys and values)"),
        ("vocabulary", f"{f.vocab_size:,} tokens ({f.tokenizer or '?'})"),
        ("chat template", "yes" if f.chat_template else "no (askgpt uses a plain completion prompt)"),
        ("vision", f.vision or "no"),
    ]
    return "\n".join(f"{k:16s} {v}" for k, v in rows)
