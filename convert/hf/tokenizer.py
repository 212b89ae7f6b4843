"""A checkpoint's tokenizer as GGUF wants it: tokenizer.json (byte-level BPE) or
tokenizer.model (SentencePiece)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askgpt.convert.hf.config import CheckpointUsageError


@dataclass(frozen=True)
class Vocabulary:
    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    pre: str  # tokenizer.ggml.pre
    tokens: list[bytes]
    scores: list[float]
    types: list[int]


# llama.cpp picks its pre-tokenizer regex by name; these are the shapes of tokenizer.json's
# "pre_tokenizer" it knows, matched on structure rather than on a hash of sample output.
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"


def pre_tokenizer_name(tok: dict[str, Any]) -> str:
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = (steps[0].get("pattern") or {}).get("Regex", "")
        if pattern.startswith(_LLAMA3_SPLIT):
            return "llama-bpe"
    raise CheckpointUsageError(
        f"unknown pre-tokenizer {json.dumps(pre)[:120]}; askgpt knows gpt-2, smollm and llama-bpe",
        hint="a wrong pre-tokenizer silently degrades the model, so askgpt stops here")


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    import gguf

    tok_json = folder / "tokenizer.json"
    tok: dict[str, Any] = {}
    if tok_json.is_file():
        try:
            tok = json.loads(tok_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointUsageError(f"cannot read {tok_json}: {exc}") from exc
    model = tok.get("model", {})
    if model.get("type") == "BPE" and not model.get("byte_fallback"):
        by_id = {int(i): t for t, i in model["vocab"].items()}
        added = {int(a["id"]): a for a in tok.get("added_tokens", [])}
        size = max(vocab_size, max(by_id) + 1, max(added, default=-1) + 1)
        tokens, types = [], []
        for i in range(size):
            if i in added:
                tokens.append(added[i]["content"].encode("utf-8"))
                types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
            elif i in by_id:
                tokens.append(by_id[i].encode("utf-8"))
                types.append(gguf.TokenType.NORMAL)
            else:  # rows of the embedding with no token: padding the model never produces
                tokens.append(f"[PAD{i}]".encode())
                types.append(gguf.TokenType.UNUSED)
        return Vocabulary("gpt2", pre_tokenizer_name(tok), tokens, [0.0] * size, [int(t) for t in types])
    if (folder / "tokenizer.model").is_file():
        return _sentencepiece_vocabulary(folder, vocab_size)
    if tok:
        raise CheckpointUsageError(f"unsupported tokenizer in {tok_json} (model type {model.get('type')})",
                                   hint="byte-level BPE tokenizer.json or a SentencePiece tokenizer.model")
    raise CheckpointUsageError(f"{folder} has no tokenizer (tokenizer.json or tokenizer.model)")


def _sentencepiece_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    import gguf

    try:
        spm = gguf.SentencePieceVocab(folder)
    except ImportError as exc:
        raise CheckpointUsageError("this model's tokenizer.model needs the sentencepiece package",
                                   hint="pip install sentencepiece") from exc
    tokens, scores, types = [], [], []
    for text, score, kind in spm.all_tokens():
        tokens.append(text)
        scores.append(float(score))
        types.append(int(kind))
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(int(gguf.TokenType.UNUSED))
    return Vocabulary("llama", "default", tokens, scores, types)
