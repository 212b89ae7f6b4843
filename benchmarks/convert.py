"""`convert hf`, measured: time and peak memory of whole CLI processes.

    python benchmarks/convert.py

Needs the test extra (torch, transformers, accelerate). Two HF folders are made:
1. the built-in SmolLM2-135M, read from its GGUF by transformers (dequantized to
   float32) and saved as safetensors: the round trip of tests/test_convert_hf.py;
2. a random model of SmolLM2-360M's shape (960 wide, 32 layers, 15/5 heads,
   2560 FFN, 49,152 tokens; 362M parameters), saved as float32 safetensors.
Each is converted by `askgpt convert hf` to F16 and to Q4_K_M in a fresh process;
the figures are that process's own summary (time, peak RSS).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hf_round_trip import save_builtin_as_hf  # noqa: E402


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors")


def convert(folder: Path, out: Path, out_type: str) -> None:
    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or "askgpt"
    start = time.perf_counter()
    result = subprocess.run([askgpt, "convert", "hf", str(folder), str(out), "--type", out_type, "--force"],
                            capture_output=True, text=True, env={**os.environ, "ASKGPT_HOME": str(out.parent)})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    peak = re.search(r"peak memory: ([\d,]+) MB", result.stderr)
    took = re.search(r"time: ([\d.]+) s", result.stderr)
    print(f"  {out_type:7s} {out.stat().st_size / 1e6:8,.1f} MB  conversion {took.group(1) if took else '?'} s "
          f"(process {wall:.1f} s)  peak RSS {peak.group(1) if peak else '?'} MB")


def main() -> None:
    import torch
    import transformers

    from askgpt.runtime.models.registry import builtin_model

    work = Path(tempfile.mkdtemp())
    path = builtin_model().path
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

    smol = work / "smollm2-135m-hf"
    save_builtin_as_hf(smol, tok)
    print(f"135M round trip: {folder_size(smol) / 1e6:,.1f} MB of float32 safetensors")
    for out_type in ("F16", "Q4_K_M"):
        convert(smol, work / f"smol-{out_type}.gguf", out_type)

    big = work / "random-360m-hf"
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=49152, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                                      num_attention_heads=15, num_key_value_heads=5, max_position_embeddings=8192,
                                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                      bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(big)
    tok.save_pretrained(big)
    del model
    print(f"360M-shaped random model: {params / 1e6:,.0f}M parameters, "
          f"{folder_size(big) / 1e6:,.1f} MB of float32 safetensors")
    for out_type in ("F16", "Q4_K_M"):
        convert(big, work / f"big-{out_type}.gguf", out_type)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
