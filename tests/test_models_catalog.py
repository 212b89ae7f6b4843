"""`askgpt models catalog` and `askgpt models pull NAME`: the shipped catalog's shape, and
pulls of a test catalog's entries from a fake hub on 127.0.0.1 (the real hub cannot be
reached here): pinned checksums matched and mismatched, an unpinned entry, the projector
registered with its model, a pull that resumes from files already there, and `models rm`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub
from fakes import ScriptedFactory
from test_cli_completion import bash_complete
from test_model_info import write_tiny
from typer.testing import CliRunner

from askgpt.cli.app import create_app
from askgpt.runtime.engine.kinds import is_local
from askgpt.runtime.errors import ModelNotFoundError
from askgpt.runtime.models import catalog as catalog_module
from askgpt.runtime.models.catalog import load_catalog
from askgpt.runtime.models.discovery import Registry
from askgpt.runtime.models.registry import check_model_name, find_mmproj, resolve_model
from askgpt.runtime.store.settings import resolve_paths
from conftest import doc_page

REPO_ID = "acme/tiny-vlm-GGUF"


def invoke(args: list[str]):
    return CliRunner().invoke(create_app(ScriptedFactory()), args, catch_exceptions=False)


def test_the_shipped_catalog_names_exact_files_and_pins_only_what_is_given() -> None:
    entries = list(load_catalog())
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) and len(entries) >= 6
    for entry in entries:
        check_model_name(entry.name)  # each must be a name `-m` reaches once it is registered
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", entry.repo), entry.repo
        assert entry.sources, entry.name  # where its figures come from, confirmed or not
        for file in entry.files:
            assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
        assert entry.confirmed == all(f.sha256 and f.size for f in entry.files)
    vision = {e.name: e for e in entries if e.vision}
    assert any(n.startswith("smolvlm") for n in vision) and any(n.startswith("gemma3") for n in vision)
    assert all(vision[n].mmproj is not None and "mmproj" in vision[n].mmproj.name.lower() for n in vision)
    assert any(not e.vision for e in entries)


def test_the_ram_estimate_is_files_plus_cache_plus_working_buffers() -> None:
    entry = load_catalog().get("smolvlm-256m")
    assert entry.attention is not None and entry.download_bytes is not None
    cache = 2 * entry.attention.layers * entry.attention.kv_heads * entry.attention.head_dim * 2 * 4096
    assert entry.ram_bytes(working_bytes=100) == entry.download_bytes + cache + 100
    unconfirmed = [e for e in load_catalog() if e.download_bytes is None]
    assert all(e.ram_bytes(working_bytes=100) is None for e in unconfirmed)  # no size, no guess


def test_an_unknown_name_is_refused_naming_the_close_ones() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_catalog().get("smolvlm-265m")
    assert "smolvlm-256m" in (caught.value.hint or "")
    result = invoke(["models", "pull", "gemma-4b"])
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "gemma3-4b" in result.stderr
    nothing_close = invoke(["models", "pull", "zzzz"])
    assert nothing_close.exit_code == 3 and "askgpt models catalog" in nothing_close.stderr


def test_a_repository_without_a_file_is_a_usage_error() -> None:
    result = invoke(["models", "pull", "acme/some-GGUF"])
    assert result.exit_code == 2 and "FILE" in result.stderr


def test_catalog_lists_size_ram_licence_vision_and_checksums() -> None:
    result = invoke(["models", "catalog"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "RAM", "LICENCE", "VISION", "CHECKSUMS"]
    rows = {line.split()[0]: line for line in lines[1:] if line and not line.startswith(("RAM:", "askgpt"))}
    assert set(rows) == set(load_catalog().names())
    assert re.search(r"smolvlm-256m\s+279 MB\s+\d+ MB\s+apache-2.0\s+yes\s+pinned$", rows["smolvlm-256m"])
    assert rows["gemma3-4b"].split()[-2:] == ["yes", "pinned"]
    for entry in load_catalog():
        assert rows[entry.name].endswith("not confirmed") == (not entry.confirmed)

    data = json.loads(invoke(["models", "catalog", "--json"]).stdout)
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["smolvlm-256m"]["mmproj"]["size"] == 103769856
    assert by_name["smolvlm-256m"]["download_bytes"] == 175054528 + 103769856
    assert by_name["qwen2.5-0.5b"]["vision"] is False and by_name["qwen2.5-0.5b"]["mmproj"] is None
    assert "4,096 tokens" in data["ram_estimate"]


def test_the_docs_table_matches_the_catalog() -> None:
    page = doc_page("docs/images.md")
    for entry in load_catalog():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{entry.name}` |")), None)
        assert row is not None, entry.name
        assert ("not confirmed" in row) == (not entry.confirmed), entry.name
        assert entry.repo in row


def test_models_pull_completes_catalog_names() -> None:
    assert set(bash_complete("askgpt models pull smolvlm")) == {"smolvlm-256m", "smolvlm-500m"}
    assert "gemma3-4b" in bash_complete("askgpt models pull ")


# --- pulls from a fake hub ----------------------------------------------------------------------

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tiny_files(tmp_path: Path) -> dict[str, bytes]:
    write_tiny(tmp_path / "model.gguf")
    write_tiny(tmp_path / "proj.gguf", arch="clip")
    return {"tiny-vlm.gguf": (tmp_path / "model.gguf").read_bytes(),
            "mmproj-tiny-vlm.gguf": (tmp_path / "proj.gguf").read_bytes()}


@pytest.fixture
def hub(tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    server = FakeHub({(REPO_ID, name): data for name, data in tiny_files.items()})
    yield server
    server.close()


def use_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models: list[dict[str, object]]) -> None:
    """A test-only catalog in place of the shipped one."""
    path = tmp_path / "test-catalog.json"
    path.write_text(json.dumps({"models": models}))
    monkeypatch.setattr(catalog_module, "CATALOG_FILE", path)


def entry(name: str, files: dict[str, bytes], *, model_sha: str | None = "real", mmproj_sha: str | None = "real",
          size: bool = True) -> dict[str, object]:
    def pin(file: str, given: str | None) -> dict[str, object]:
        return {"name": file, "size": len(files[file]) if size else None,
                "sha256": sha(files[file]) if given == "real" else given}

    return {"name": name, "title": "tiny", "description": "a tiny test model", "repo": REPO_ID,
            "licence": "apache-2.0", "file": pin("tiny-vlm.gguf", model_sha),
            "mmproj": pin("mmproj-tiny-vlm.gguf", mmproj_sha),
            "attention": {"layers": 1, "kv_heads": 1, "head_dim": 4}, "sources": ["made by the test"]}


def test_pull_name_fetches_the_model_and_its_projector_and_registers_both(
        hub: FakeHub, tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_catalog(monkeypatch, tmp_path, [entry("tiny-vlm", tiny_files)])
    result = invoke(["models", "pull", "tiny-vlm", "--endpoint", hub.url])
    assert result.exit_code == 0, result.stderr
    assert "SHA-256 as pinned" in result.stdout and "not pin" not in result.stderr
    paths = resolve_paths(os.environ)
    folder = paths.models_dir / "tiny-vlm"
    assert (folder / "tiny-vlm.gguf").read_bytes() == tiny_files["tiny-vlm.gguf"]
    assert (folder / "mmproj-tiny-vlm.gguf").read_bytes() == tiny_files["mmproj-tiny-vlm.gguf"]

    # -m NAME is the model with its projector: the one image_blocks hands to llama.cpp's mtmd.
    ref = resolve_model("tiny-vlm", paths.models_dir)
    assert ref.path == (folder / "tiny-vlm.gguf").resolve()
    assert is_local(ref) and find_mmproj(ref, None, local=is_local(ref)) == (folder / "mmproj-tiny-vlm.gguf").resolve()
    registered = Registry(paths.data_dir).get("tiny-vlm")
    assert registered is not None and registered.created_by_askgpt
    rows = {r["name"]: r for r in json.loads(invoke(["models", "list", "--json"]).stdout)["models"]}
    assert rows["tiny-vlm"]["vision"].startswith("mmproj registered: ")
    assert "mmproj-tiny-vlm" not in rows  # in its own folder, not taken for a model of the models folder

    # Run again with the hub gone: files whose pinned SHA-256 matches are kept, not fetched.
    hub.close()
    again = invoke(["models", "pull", "tiny-vlm", "--endpoint", hub.url])
    assert again.exit_code == 0, again.stderr

    removed = invoke(["models", "rm", "tiny-vlm"])
    assert removed.exit_code == 0 and not folder.exists()  # askgpt made both files and their folder


def test_a_file_that_is_not_the_pinned_one_is_deleted_and_nothing_is_registered(
        hub: FakeHub, tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_catalog(monkeypatch, tmp_path, [entry("tiny-vlm", tiny_files, mmproj_sha="0" * 64)])
    result = invoke(["models", "pull", "tiny-vlm", "--endpoint", hub.url])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "mmproj-tiny-vlm.gguf does not match the catalog: SHA-256" in result.stderr
    folder = resolve_paths(os.environ).models_dir / "tiny-vlm"
    assert not (folder / "mmproj-tiny-vlm.gguf").exists()
    assert not list((folder / ".pulling").rglob("mmproj-tiny-vlm.gguf"))  # the download is gone too
    assert Registry(resolve_paths(os.environ).data_dir).get("tiny-vlm") is None


def test_a_pinned_size_that_differs_is_refused(hub: FakeHub, tiny_files: dict[str, bytes],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = entry("tiny-vlm", tiny_files, model_sha=None)
    bad["file"] = {**bad["file"], "size": len(tiny_files["tiny-vlm.gguf"]) + 1}  # type: ignore[dict-item]
    use_catalog(monkeypatch, tmp_path, [bad])
    result = invoke(["models", "pull", "tiny-vlm", "--endpoint", hub.url])
    assert result.exit_code == 1 and "not the catalog's" in result.stderr


def test_an_unpinned_entry_is_checked_as_far_as_it_can_be_and_says_so(
        hub: FakeHub, tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_catalog(monkeypatch, tmp_path, [entry("tiny-vlm", tiny_files, model_sha=None, mmproj_sha=None, size=False)])
    result = invoke(["models", "pull", "tiny-vlm", "--endpoint", hub.url])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "does not pin" in line]
    assert len(warnings) == 2 and "tiny-vlm.gguf's SHA-256" in warnings[0]
    assert "SHA-256 not pinned" in result.stdout
    listed = json.loads(invoke(["models", "catalog", "--json"]).stdout)["models"][0]
    assert listed["confirmed"] is False and listed["ram_bytes"] is None
    assert "not confirmed" in invoke(["models", "catalog"]).stdout


def test_an_unpinned_file_that_is_not_gguf_is_still_refused(
        tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    files = {**tiny_files, "tiny-vlm.gguf": b"not a gguf at all" * 10}
    server = FakeHub({(REPO_ID, name): data for name, data in files.items()})
    try:
        use_catalog(monkeypatch, tmp_path, [entry("tiny-vlm", files, model_sha=None, size=False)])
        result = invoke(["models", "pull", "tiny-vlm", "--endpoint", server.url])
    finally:
        server.close()
    assert result.exit_code == 4 and "not a GGUF" in result.stderr


def test_pull_repo_file_still_lands_in_the_models_folder(hub: FakeHub) -> None:
    result = invoke(["models", "pull", REPO_ID, "tiny-vlm.gguf", "--endpoint", hub.url])
    assert result.exit_code == 0, result.stderr
    paths = resolve_paths(os.environ)
    assert (paths.models_dir / "tiny-vlm.gguf").is_file()
    assert Registry(paths.data_dir).get("tiny-vlm") is not None
