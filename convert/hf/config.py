"""What every converter reads from a checkpoint folder's config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from askgpt.runtime.errors import AskgptError, ExitCode


class CheckpointUsageError(AskgptError):
    """A folder that is not a convertible checkpoint: what the user gave is wrong."""

    exit_code = ExitCode.USAGE_ERROR


@dataclass(frozen=True)
class HfConfig:
    """What the GGUF needs from config.json, for every architecture (a converter may
    read more: see phi3.Phi3Config)."""

    architecture: str  # HF class name
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_theta: float
    n_ctx_train: int
    vocab_size: int
    tied_embeddings: bool
    rope_scaling: dict[str, Any]

    @property
    def rope_kind(self) -> str | None:
        kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
        return None if kind is None else str(kind)


def read_config_json(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointUsageError(f"{folder} is not a folder", hint="give a Hugging Face model folder")
    if not path.is_file():
        raise CheckpointUsageError(f"{folder} has no config.json", hint="give a Hugging Face model folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointUsageError(f"cannot read {path}: {exc}") from exc
    return dict(cfg)


def architecture_of(cfg: dict[str, Any]) -> str:
    """config.json's first "architectures" entry (its model_type when it has none)."""
    archs = cfg.get("architectures") or [cfg.get("model_type", "unknown")]
    return str(archs[0])


def rope_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
    return dict(cfg.get("rope_scaling") or cfg.get("rope_parameters") or {})


def common_config(cfg: dict[str, Any], architecture: str) -> HfConfig:
    """Raises KeyError, TypeError or ValueError for a config.json that lacks or garbles a field."""
    n_embd, n_head = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    rope = rope_parameters(cfg)
    n_ctx = int(cfg.get("max_position_embeddings", 4096))
    return HfConfig(
        architecture=architecture, n_layer=int(cfg["num_hidden_layers"]), n_embd=n_embd,
        n_ff=int(cfg["intermediate_size"]), n_head=n_head,
        n_head_kv=int(cfg.get("num_key_value_heads") or n_head),
        head_dim=int(cfg.get("head_dim") or n_embd // n_head), rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0),
        n_ctx_train=n_ctx, vocab_size=int(cfg["vocab_size"]),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)), rope_scaling=rope)
