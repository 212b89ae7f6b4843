"""The docs' command blocks for models (docs/cli-reference.md) and JSON output (docs/prompts.md),
run as written on the built-in model (the served-model block runs in test_remote.py, against a
real server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from mmproj_file import write_mmproj

from askgpt.runtime.models.registry import builtin_model
from conftest import doc_block, run_readme_lines


def test_the_models_block_runs_as_written(tmp_path: Path) -> None:
    lines = doc_block("docs/cli-reference.md", "## Where models and settings live")
    assert [line.split()[:3] for line in lines] == [
        ["askgpt", "models", "list"], ["askgpt", "models", "info"], ["askgpt", "models", "add"],
        ["askgpt", "models", "default"], ["askgpt", "models", "rm"]]
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    model = downloads / "vlm-q4.gguf"
    shutil.copy(builtin_model().path, model)
    mmproj = write_mmproj(downloads / "mmproj-vlm.gguf", 576)
    home = tmp_path / "home"
    paths = {"~/Downloads/vlm-q4.gguf": str(model), "~/Downloads/mmproj-vlm.gguf": str(mmproj)}
    results = run_readme_lines(lines[:3], cwd=tmp_path, home=home, replace=paths)
    # Between `add` and the rest: the list shows the registered projector as vision.
    (listed,) = run_readme_lines(["askgpt models list --json"], cwd=tmp_path, home=home)
    vlm = next(m for m in json.loads(listed.stdout)["models"] if m["name"] == "vlm")
    assert vlm["vision"] == f"mmproj registered: {mmproj}"
    results += run_readme_lines(lines[3:], cwd=tmp_path, home=home, replace=paths)
    for line, result in zip(lines, results, strict=True):
        assert result.returncode == 0, (line, result.stderr)
    assert "smollm2" in results[0].stdout and "llama" in results[1].stdout
    assert "vlm" in results[2].stdout and str(mmproj) in results[2].stdout
    assert "default model: vlm" in results[3].stdout
    assert model.is_file()  # rm forgets the name only
    assert "vlm" not in json.dumps(json.loads((home / "data" / "models.json").read_text()))


@pytest.mark.model
def test_the_json_block_runs_as_written(tmp_path: Path) -> None:
    lines = doc_block("docs/prompts.md", "## JSON output")
    assert len(lines) == 4
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    (tmp_path / "person.schema.json").write_text(json.dumps(schema))
    (tmp_path / "bio.txt").write_text("Ada Lovelace was born in 1815 and was 36 when she died.\n")
    results = run_readme_lines([line.replace("askgpt", "askgpt -t 0", 1) for line in lines], cwd=tmp_path,
                               home=tmp_path / "home")
    for line, result in zip(lines, results, strict=True):
        assert result.returncode == 0, (line, result.stderr)
    assert isinstance(json.loads(results[0].stdout), dict)
    person = json.loads(results[1].stdout)
    assert set(person) == {"name", "age", "tags"} and isinstance(person["tags"], list)
    jsonschema.validate(json.loads(results[2].stdout), schema)
    assert (tmp_path / "add.py").read_text().strip()  # -x wrote the code block (or the answer) to the file
