"""`askgpt models info|list`: a GGUF's facts from its header, checked against the
`gguf` package's own reading of the same files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np

from askgpt.runtime.models.info import FILE_TYPES, model_facts
from askgpt.runtime.models.registry import builtin_model
from conftest import ASKGPT_BIN, REPO


def test_facts_agree_with_the_gguf_package() -> None:
    path = builtin_model().path
    facts = model_facts(path)
    reader = gguf.GGUFReader(path)

    def field(key: str) -> object:
        return reader.fields[key].contents()

    assert facts.architecture == field("general.architecture") == "llama"
    assert facts.general_name == field("general.name")
    assert facts.n_params == sum(int(t.n_elements) for t in reader.tensors)
    assert facts.file_type == "Q4_1" and facts.context_length == field("llama.context_length")
    assert facts.layers == field("llama.block_count") and facts.kv_heads == field("llama.attention.head_count_kv")
    assert facts.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert facts.chat_template and facts.vision == "" and facts.params_label == "135M"


def test_file_type_names_are_llama_cpp_s() -> None:
    for member in gguf.LlamaFileType:
        if member.name == "GUESSED":
            continue
        expected = "F32" if member.name == "ALL_F32" else member.name.removeprefix("MOSTLY_")
        assert FILE_TYPES[member.value] == expected


def write_tiny(path: Path, arch: str = "llama") -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny test model")
    writer.add_context_length(256)
    writer.add_file_type(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_models_list_and_info_as_processes(tmp_path: Path) -> None:
    models = tmp_path / "home" / "data" / "models"
    models.mkdir(parents=True)
    write_tiny(models / "tiny.gguf")
    write_tiny(models / "mmproj-tiny.gguf", arch="clip")
    (models / "broken.gguf").write_bytes(b"GGUF" + b"\xff" * 40)
    env = {**os.environ, "ASKGPT_HOME": str(tmp_path / "home")}

    def askgpt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ASKGPT_BIN, *args], capture_output=True, text=True, env=env, cwd=REPO / "tests",
                              timeout=60)

    listed = askgpt("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["models"]}
    assert rows["smollm2"]["builtin"] and rows["smollm2"]["file_type"] == "Q4_1"
    assert rows["tiny"]["n_params"] == 32 and rows["tiny"]["context_length"] == 256
    assert rows["tiny"]["vision"] == "mmproj beside it: mmproj-tiny.gguf"
    assert rows["mmproj-tiny"]["vision"] == "this is a vision projector (mmproj)"
    assert "architecture" not in rows["broken"] and "broken" in listed.stderr  # warned, others still listed
    info = askgpt("models", "info", "tiny")
    assert info.returncode == 0 and "tiny test model" in info.stdout and "F16" in info.stdout
    assert askgpt("models", "info", "nope").returncode == 3
    copied = tmp_path / "copy.gguf"
    shutil.copy(builtin_model().path, copied)
    assert "49,152 tokens" in askgpt("models", "info", str(copied)).stdout
