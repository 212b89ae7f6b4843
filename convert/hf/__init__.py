"""Hugging Face checkpoint folder -> GGUF (f32, f16 or bf16, or quantized through llama.cpp).

One converter class per Hugging Face architecture (the shape of ollama's
``ModelConverter``), chosen in one place, ``architectures.CONVERTERS``, by
config.json's "architectures":

- ``config``: reading config.json, the hyperparameters every architecture has.
- ``base``: ``ModelConverter``: what an architecture reads from config.json, its GGUF
  architecture, its tensor-name map, its tokenizer, per-tensor transforms, its extra
  tensors and key-values.
- ``llama`` (``LlamaForCausalLM``: SmolLM2, TinyLlama, Llama 3.x), ``phi3`` (``Phi3ForCausalLM``).
- ``architectures``: the table, and the one "unsupported architecture" error.
- ``tokenizer``: tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece).
- ``convert``: the job: header first, then one tensor at a time; atomic, checked output.

This file imports nothing: a package that re-exported its children would import itself.
"""
