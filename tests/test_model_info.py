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

from askgpt.runtime.models.filetypes import FILE_TYPE_NAMES as FILE_TYPES
from askgpt.runtime.models.filetypes import OUTPUT_TYPES, file_type_name, output_type
from askgpt.runtime.models.gguf import QUANT_SIZES, TYPE_NAMES, read_summary, read_tensor, string_array
from askgpt.runtime.models.info import model_facts
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


def test_the_one_reader_agrees_with_the_gguf_package() -> None:
    """read_summary, string_array and read_tensor (the walk) against GGUFReader on the built-in model."""
    path = builtin_model().path
    reader = gguf.GGUFReader(path)
    summary = read_summary(path)
    assert summary.architecture == "llama" and summary.size == path.stat().st_size
    assert [(t.name, t.shape, t.type, t.n_elements) for t in summary.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements)) for t in reader.tensors]
    types = [t.tensor_type.name for t in reader.tensors]
    assert summary.tensor_types() == {name: types.count(name) for name in set(types)}
    assert 0 < summary.n_params == sum(int(t.n_elements) for t in reader.tensors)
    tokens = string_array(path, "tokenizer.ggml.tokens")
    assert [t.decode() for t in tokens] == reader.fields["tokenizer.ggml.tokens"].contents()
    assert string_array(path, "no.such.key") == [] and string_array(path, "tokenizer.ggml.token_type") == []
    table = read_tensor(path, "token_embd.weight")
    theirs = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert table is not None and table.tensor_type == theirs.tensor_type
    assert np.array_equal(np.asarray(table.data), np.asarray(theirs.data))
    assert read_tensor(path, "no.such.tensor") is None


def test_tensor_type_names_are_ggml_s() -> None:
    assert set(TYPE_NAMES) == set(QUANT_SIZES)
    for value, name in TYPE_NAMES.items():
        assert gguf.GGMLQuantizationType(value).name == name


def test_one_file_type_table_for_reading_and_writing() -> None:
    assert all(FILE_TYPES[t.ftype] == t.name for t in OUTPUT_TYPES)
    assert len(FILE_TYPES) == len(set(FILE_TYPES.values()))  # one name per id
    assert file_type_name(3) == "Q4_1" and file_type_name(None) == "?" and file_type_name(999) == "type 999"
    assert output_type("bf16").ftype == 32 and not any(t.name == "IQ2_XXS" for t in OUTPUT_TYPES)


def test_gguf_files_are_read_in_one_place() -> None:
    """runtime/models/gguf.py is askgpt's one GGUF reader: no other module of the package
    opens a GGUF with the gguf package's reader or checks the magic itself."""
    readers = []
    for folder in ("askgpt", "cli", "runtime", "vision", "convert"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "GGUFReader(" in text or 'b"GGUF"' in text:
                readers.append(path.relative_to(REPO).as_posix())
    assert readers == ["runtime/models/gguf.py"]


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
