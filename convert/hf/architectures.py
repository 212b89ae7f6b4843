"""The one place a checkpoint's architecture picks its converter: config.json's
"architectures" -> a ModelConverter class. A new architecture is one module and one row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from askgpt.convert.hf.base import ModelConverter
from askgpt.convert.hf.bert import BertConverter, BertForMaskedLMConverter
from askgpt.convert.hf.config import CheckpointUsageError, architecture_of, read_config_json
from askgpt.convert.hf.llama import LlamaConverter
from askgpt.convert.hf.phi3 import Phi3Converter

CONVERTERS: dict[str, type[ModelConverter[Any]]] = {
    c.hf_architecture: c for c in (LlamaConverter, Phi3Converter, BertConverter, BertForMaskedLMConverter)}
SUPPORTED = tuple(CONVERTERS)


def read_config(folder: Path) -> ModelConverter[Any]:
    """The converter for the checkpoint in ``folder``, with its config.json read."""
    raw = read_config_json(folder)
    arch = architecture_of(raw)
    kind = CONVERTERS.get(arch)
    if kind is None:
        raise CheckpointUsageError(f"unsupported architecture {arch}; supported: {', '.join(SUPPORTED)}")
    return kind.from_config(raw, folder)
