"""A checkpoint's tokenizer as GGUF wants it: tokenizer.json (byte-level BPE or WordPiece) or
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
    flags: tuple[tuple[str, bool], ...] = ()  # further boolean tokenizer key-values (the normaliser's)


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


def read_tokenizer_json(folder: Path) -> dict[str, Any]:
    """tokenizer.json's content ({} when the folder has none)."""
    tok_json = folder / "tokenizer.json"
    if not tok_json.is_file():
        return {}
    try:
        return dict(json.loads(tok_json.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointUsageError(f"cannot read {tok_json}: {exc}") from exc


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary:
    import gguf

    tok_json = folder / "tokenizer.json"
    tok = read_tokenizer_json(folder)
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


# llama.cpp's WordPiece ("bert") tokenizer always splits like BertPreTokenizer (whitespace, then
# punctuation and CJK characters); only the normaliser's two switches are read from the file.
NORMALIZER_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"
NORMALIZER_STRIP_ACCENTS = "tokenizer.ggml.normalizer.strip_accents"


def _bert_normalizer_flags(tok: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
    norm = tok.get("normalizer")
    if norm is None:
        return ((NORMALIZER_LOWERCASE, False), (NORMALIZER_STRIP_ACCENTS, False))
    if norm.get("type") != "BertNormalizer":
        raise CheckpointUsageError(f"unsupported WordPiece normalizer {json.dumps(norm)[:120]}",
                                   hint="askgpt converts BertNormalizer WordPiece tokenizers")
    lower = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    return ((NORMALIZER_LOWERCASE, lower), (NORMALIZER_STRIP_ACCENTS, lower if strip is None else bool(strip)))


def phantom_space(piece: str) -> str:
    """llama.cpp's WordPiece vocabulary marks word starts instead of continuations: "##ing"
    becomes "ing" and a whole word "play" becomes "\u2581play"."""
    return piece[2:] if piece.startswith("##") else "\u2581" + piece


def read_wordpiece(folder: Path, vocab_size: int) -> Vocabulary:
    """tokenizer.json's WordPiece vocabulary (BERT) as llama.cpp's "bert" tokenizer model."""
    import gguf

    tok = read_tokenizer_json(folder)
    model = tok.get("model", {})
    if model.get("type") != "WordPiece":
        kind = model.get("type") if tok else "none"
        raise CheckpointUsageError(f"{folder} has no WordPiece tokenizer.json (found {kind})",
                                   hint="a BERT model needs its tokenizer.json")
    if model.get("continuing_subword_prefix", "##") != "##":
        raise CheckpointUsageError("a WordPiece subword prefix other than ## is not supported")
    pre = (tok.get("pre_tokenizer") or {}).get("type", "BertPreTokenizer")
    if pre != "BertPreTokenizer":
        raise CheckpointUsageError(f"unsupported WordPiece pre-tokenizer {pre}",
                                   hint="llama.cpp splits BERT input as BertPreTokenizer does")
    by_id = {int(i): t for t, i in model["vocab"].items()}
    added = {int(a["id"]): a for a in tok.get("added_tokens", [])}
    size = max(vocab_size, max(by_id) + 1, max(added, default=-1) + 1)
    tokens, types = [], []
    for i in range(size):
        if i in added and added[i].get("special"):  # [CLS], [SEP], ...: matched whole, never split
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            tokens.append(phantom_space(added[i]["content"]))
            types.append(gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(phantom_space(by_id[i]))
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return Vocabulary("bert", "default", [t.encode("utf-8") for t in tokens], [0.0] * size,
                      [int(t) for t in types], _bert_normalizer_flags(tok))
