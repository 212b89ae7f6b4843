"""Models from other tools' folders and `askgpt models add|default|rm`, as processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_model_info import write_tiny

from askgpt.runtime.models.discovery import discover
from askgpt.runtime.models.registry import builtin_model
from conftest import ASKGPT_BIN, REPO


def fake_tools(home: Path, outside: Path) -> None:
    """An HF hub cache, LM Studio and Ollama folders holding tiny GGUF files, plus links and
    manifests that point outside their folders (which must be skipped)."""
    repo = home / ".cache" / "huggingface" / "hub" / "models--acme--tiny-GGUF"
    (repo / "blobs").mkdir(parents=True)
    write_tiny(repo / "blobs" / "abc123")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "tiny-q8.gguf").symlink_to("../../blobs/abc123")
    write_tiny(outside / "secret.gguf")
    (snap / "escape.gguf").symlink_to(outside / "secret.gguf")

    lms = home / ".lmstudio" / "models" / "pub" / "repo"
    lms.mkdir(parents=True)
    write_tiny(lms / "model-f16.gguf")

    ollama = home / ".ollama" / "models"
    (ollama / "blobs").mkdir(parents=True)
    write_tiny(ollama / "blobs" / ("sha256-" + "a" * 64))
    write_tiny(ollama / "blobs" / ("sha256-" + "c" * 64), arch="clip")  # a vision model's projector layer
    (ollama / "blobs" / ("sha256-" + "b" * 64)).write_bytes(b"not a gguf")
    manifests = ollama / "manifests" / "registry.ollama.ai" / "library"
    for name, digest in (("tiny", "a" * 64), ("other", "b" * 64), ("evil", "../../../../etc/passwd")):
        (manifests / name).mkdir(parents=True)
        (manifests / name / "latest").write_text(json.dumps({"layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"},
            {"mediaType": "application/vnd.ollama.image.projector", "digest": f"sha256:{'c' * 64}"}]}))


def test_discovery_finds_each_tool_s_models_and_stays_inside(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    fake_tools(home, outside)
    found = {f.name: f for f in discover({"HOME": str(home)})}
    assert set(found) == {"hf:acme/tiny-GGUF/tiny-q8.gguf", "lmstudio:pub/repo/model-f16.gguf", "ollama:tiny:latest"}
    assert found["hf:acme/tiny-GGUF/tiny-q8.gguf"].path.name == "abc123"
    assert found["ollama:tiny:latest"].mmproj == (home / ".ollama" / "models" / "blobs" / ("sha256-" + "c" * 64))
    assert found["lmstudio:pub/repo/model-f16.gguf"].mmproj is None
    assert all(outside not in f.path.parents for f in found.values())


@pytest.mark.model
def test_models_commands_as_processes(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    fake_tools(home, outside)
    env = {**os.environ, "HOME": str(home), "ASKGPT_HOME": str(tmp_path / "askgpt")}
    env.pop("HF_HOME", None)
    env.pop("HF_HUB_CACHE", None)
    env.pop("OLLAMA_MODELS", None)

    def askgpt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ASKGPT_BIN, *args], capture_output=True, text=True, env=env, cwd=REPO / "tests",
                              timeout=120)

    mine = tmp_path / "mine.gguf"
    mine.write_bytes(builtin_model().path.read_bytes())
    assert askgpt("models", "add", str(mine), "--alias", "mine").returncode == 0
    assert askgpt("models", "add", str(tmp_path / "none.gguf"), "--alias", "x").returncode == 3
    rows = {r["name"]: r for r in json.loads(askgpt("models", "list", "--json").stdout)["models"]}
    assert rows["mine"]["source"] == "added" and rows["mine"]["file_type"] == "Q4_1"
    assert rows["ollama:tiny:latest"]["source"] == "ollama" and rows["hf:acme/tiny-GGUF/tiny-q8.gguf"]["n_params"] == 32
    assert rows["ollama:tiny:latest"]["vision"].startswith("mmproj in ollama's manifest: ")  # its projector layer
    assert askgpt("models", "info", "lmstudio:pub/repo/model-f16.gguf").returncode == 0
    answered = askgpt("-m", "mine", "-t", "0", "-n", "4", "Say hi.")
    assert answered.returncode == 0 and answered.stdout.strip()
    assert askgpt("models", "default", "mine").returncode == 0
    assert json.loads(askgpt("models", "list", "--json").stdout)["models"][1]["default"] is True
    removed = askgpt("models", "rm", "mine")
    assert removed.returncode == 0 and "left alone" in removed.stdout and mine.exists()
    assert askgpt("models", "add", str(mine), "--alias", "mine").returncode == 0
    assert askgpt("models", "rm", "mine", "--delete-file").returncode == 0 and not mine.exists()
    assert askgpt("models", "rm", "mine").returncode == 3


@pytest.mark.model
def test_models_pull_from_a_local_fake_hub(tmp_path: Path) -> None:
    import socket

    from fake_hub import FakeHub

    model = builtin_model().path.read_bytes()
    hub = FakeHub({("acme/smol-GGUF", "smol.gguf"): model, ("acme/smol-GGUF", "bad.gguf"): model},
                  lie_about={"bad.gguf"})
    env = {**os.environ, "ASKGPT_HOME": str(tmp_path / "askgpt"), "HF_HUB_DISABLE_TELEMETRY": "1"}

    def askgpt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ASKGPT_BIN, *args], capture_output=True, text=True, env=env, cwd=REPO / "tests",
                              timeout=300)

    try:
        pulled = askgpt("models", "pull", "acme/smol-GGUF", "smol.gguf", "--endpoint", hub.url)
        assert pulled.returncode == 0, pulled.stderr
        target = tmp_path / "askgpt" / "data" / "models" / "smol.gguf"
        assert target.read_bytes() == model
        answered = askgpt("-m", "smol", "-t", "0", "-n", "4", "Say hi.")
        assert answered.returncode == 0 and answered.stdout.strip()
        damaged = askgpt("models", "pull", "acme/smol-GGUF", "bad.gguf", "--endpoint", hub.url)
        assert damaged.returncode == 1 and "damaged" in damaged.stderr
        assert not (target.parent / "bad.gguf").exists()
        missing = askgpt("models", "pull", "acme/smol-GGUF", "nope.gguf", "--endpoint", hub.url)
        assert missing.returncode == 3 and len(missing.stderr.strip().splitlines()) == 1
        assert askgpt("models", "rm", "smol").returncode == 0 and not target.exists()  # askgpt made it
    finally:
        hub.close()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = askgpt("models", "pull", "acme/smol-GGUF", "smol.gguf", "--endpoint", f"http://127.0.0.1:{port}")
    assert refused.returncode == 1 and "cannot reach the hub" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
