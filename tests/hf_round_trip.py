"""The built-in model as a Hugging Face folder, through transformers' GGUF loader: the
converter's round-trip input (tests/test_convert_hf.py, benchmarks/convert.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_builtin_as_hf(folder: Path, tokenizer: Any) -> None:
    """Read the built-in GGUF with transformers (dequantized to float32) and save it as
    safetensors with ``tokenizer``."""
    import torch
    import transformers

    from askgpt.runtime.models.registry import builtin_model

    path = builtin_model().path
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32)
    # transformers marks a GGUF-loaded model as not serialisable; a plain copy of its
    # (dequantized) weights is
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.LlamaForCausalLM(config)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
