"""Secrets and files: private modes whatever the umask, pickles refused, native loads guarded.

Files that may hold an API key or a user's documents (the config, the conversation
log and its -wal/-shm files, the chat history, the prefix cache) are 0600 in 0700
folders under a permissive umask too; a CLIP checkpoint that is not safetensors is
refused without --trust-pickle (and never unpickled); a vision projector and a
`convert quantize` input that crash llama.cpp do so in a child process.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from askgpt.runtime import files
from askgpt.runtime.errors import ExitCode
from conftest import ASKGPT_BIN, REPO, run_askgpt

UMASKS = [0o022, 0o000]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask-{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def in_process_umask(value: int) -> dict[str, object]:
    """subprocess.run arguments that start the child under ``value``."""
    return {"preexec_fn": lambda: os.umask(value)}


# --- the atomic writer ---------------------------------------------------------------------------------------

def test_private_files_are_0600_in_new_0700_folders(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "new" / "deeper" / "secret.toml"
    files.atomic_write_bytes(target, b"api_key = 'sk-x'\n")
    assert mode(target) == 0o600
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "deeper") == 0o700
    # A writer that replaces the temporary file (as GNU readline's history writer does) instead of filling it.
    def replacing(tmp: Path) -> None:
        tmp.unlink()
        tmp.write_bytes(b"history\n")
        tmp.chmod(0o666)

    again = tmp_path / "new" / "history"
    files.atomic_write_with(again, replacing)
    assert mode(again) == 0o600 and again.read_bytes() == b"history\n"


def test_public_files_get_the_umask_s_mode_without_changing_it(tmp_path: Path, umask: int) -> None:
    out = tmp_path / "models" / "model.gguf"
    files.atomic_write_bytes(out, b"GGUF", private=False)
    files.atomic_write_with(tmp_path / "models" / "other.gguf", lambda tmp: tmp.write_bytes(b"GGUF"), private=False)
    assert mode(out) == 0o666 & ~umask
    assert mode(tmp_path / "models" / "other.gguf") == 0o666 & ~umask
    assert os.umask(umask) == umask  # still the caller's umask


def test_the_writer_never_changes_the_process_umask() -> None:
    # os.umask is process-wide: reading it by setting it races with every other thread.
    assert "umask(" not in Path(files.__file__).read_text()


def test_an_existing_user_folder_is_left_as_it_is(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o755)
    files.atomic_write_bytes(folder / "saved.md", b"# chat")  # `/save` into a folder of the user's
    assert mode(folder) == 0o755 and mode(folder / "saved.md") == 0o600


# --- the conversation log and the prefix cache ---------------------------------------------------------------

def test_the_log_database_and_its_journal_files_are_private(tmp_path: Path, umask: int) -> None:
    from askgpt.runtime.store.log import ConversationLog, Exchange, new_conversation_id

    path = tmp_path / "data" / "logs.db"
    log = ConversationLog(path)
    log.record(Exchange(new_conversation_id(), "m", "/nonexistent.gguf", "my secret question", "an answer"))
    assert log.recent()[0].prompt == "my secret question"
    present = [p for p in path.parent.iterdir() if p.name.startswith("logs.db")]
    assert path in present
    assert {p.name: mode(p) for p in present} == {p.name: 0o600 for p in present}
    assert mode(path.parent) == 0o700
    # While a connection is open SQLite keeps its -wal and -shm files: private too.
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("SELECT count(*) FROM exchanges").fetchone()
        wal = [p for p in path.parent.iterdir() if p.name in ("logs.db-wal", "logs.db-shm")]
        assert wal and all(mode(p) == 0o600 for p in wal)
    finally:
        conn.close()


def test_a_log_from_an_older_askgpt_is_narrowed(tmp_path: Path) -> None:
    from askgpt.runtime.store.log import ConversationLog

    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    path = data / "logs.db"
    ConversationLog(path).recent()
    path.chmod(0o644)
    ConversationLog(path).recent()
    assert mode(path) == 0o600 and mode(data) == 0o700


def test_prefix_cache_entries_are_private(tmp_path: Path, umask: int) -> None:
    from askgpt.runtime.engine.prefix_cache import PrefixCache, PrefixCacheConfig

    cache = PrefixCache(PrefixCacheConfig(folder=tmp_path / "cache" / "prefix", min_tokens=1), "m" * 24)
    cache.store(list(range(600)), b"state" * 100)
    (entry,) = (tmp_path / "cache" / "prefix").glob("*/*.kv")
    assert mode(entry) == 0o600
    assert mode(entry.parent) == 0o700 and mode(tmp_path / "cache" / "prefix") == 0o700


# --- as processes, under a permissive umask ------------------------------------------------------------------

@pytest.mark.parametrize("value", UMASKS, ids=lambda m: f"umask-{m:03o}")
def test_config_with_an_api_key_is_private(tmp_path: Path, value: int) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ASKGPT_HOME": str(home)}
    done = subprocess.run([ASKGPT_BIN, "config", "set", "api_key", "sk-secret-123"], capture_output=True, text=True,
                          env=env, cwd=REPO / "tests", timeout=60, **in_process_umask(value))  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    assert "sk-secret-123" not in done.stdout + done.stderr  # never echoed either
    config = home / "config" / "config.toml"
    assert mode(config) == 0o600 and mode(config.parent) == 0o700 and mode(home) == 0o700


@pytest.mark.parametrize("value", UMASKS, ids=lambda m: f"umask-{m:03o}")
def test_chat_history_and_log_are_private(tmp_path: Path, value: int) -> None:
    home = tmp_path / "home"
    (tmp_path / "answer.txt").write_text("Fine, thanks.")
    done = subprocess.run([sys.executable, str(REPO / "tests" / "scripted_cli.py"), str(tmp_path / "answer.txt"),
                           "0", "chat"], input="how are you?\n", capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "ASKGPT_HOME": str(home)}, timeout=120,
                          **in_process_umask(value))  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    history, log = home / "data" / "chat_history", home / "data" / "logs.db"
    assert history.is_file() and log.is_file()
    assert mode(history) == 0o600 and mode(log) == 0o600 and mode(home / "data") == 0o700
    assert [p.name for p in history.parent.iterdir() if p.name.endswith(".tmp")] == []


# --- CLIP checkpoints: safetensors only, unless --trust-pickle ----------------------------------------------

class _Planted:
    """Unpickling this creates the file ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["weights.pt", "weights.bin", "disguised.safetensors"])
def test_a_pickle_checkpoint_is_refused_and_never_run(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / name
    checkpoint.write_bytes(pickle.dumps({"state_dict": _Planted(marker)}))
    for command in (["vision", "setup", "ViT-B-32", "--checkpoint", str(checkpoint)],
                    ["convert", "clip", "ViT-B-32", "--checkpoint", str(checkpoint)],
                    ["convert", "mmproj", "ViT-B-32", str(tmp_path / "mm.gguf"), "--for", "smollm2",
                     "--checkpoint", str(checkpoint)]):
        result = run_askgpt(command)
        err = result.stderr.decode()
        assert result.returncode == ExitCode.USAGE_ERROR, err
        assert "not a safetensors file" in err and "--trust-pickle" in err and "Traceback" not in err
    # --pretrained with a file name would reach open_clip's torch.load: refused too.
    for command in (["vision", "setup", "ViT-B-32", "--pretrained", str(checkpoint)],
                    ["convert", "clip", "ViT-B-32", "--pretrained", str(checkpoint)]):
        result = run_askgpt(command)
        err = result.stderr.decode()
        assert result.returncode == ExitCode.USAGE_ERROR and "takes an open_clip tag, not a file" in err, err
    assert not marker.exists()


def test_checkpoint_format_is_judged_by_its_bytes(tmp_path: Path) -> None:
    import json
    import struct

    from askgpt.convert.clip import is_safetensors

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    real = tmp_path / "weights.bin"  # safetensors bytes under another name
    real.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    assert is_safetensors(real)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(pickle.dumps({"a": 1}))
    assert not is_safetensors(fake)
    huge = tmp_path / "huge.safetensors"  # a header length past the end of the file
    huge.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    assert not is_safetensors(huge)
    not_object = tmp_path / "list.safetensors"
    not_object.write_bytes(struct.pack("<Q", 2) + b"[]")
    assert not is_safetensors(not_object)


# --- the child-process guard for projectors and quantize inputs ----------------------------------------------

def _crashing_gguf(folder: Path) -> Path:
    """A corpus file that passes the header walk and then aborts llama.cpp (SIGABRT on load)."""
    from gguf_corpus import cases, write_base

    write_base(folder / "base.gguf")
    data = dict(cases((folder / "base.gguf").read_bytes()))["flipped-20"]
    path = folder / "flipped.gguf"
    path.write_bytes(data)
    return path


def test_quantize_refuses_an_input_that_crashes_llama_cpp_in_a_child(tmp_path: Path) -> None:
    bad = _crashing_gguf(tmp_path)
    home = tmp_path / "home"
    result = run_askgpt(["convert", "quantize", str(bad), str(tmp_path / "out.gguf"), "--type", "Q8_0"],
                        env={"ASKGPT_HOME": str(home)})
    err = result.stderr.decode()
    assert result.returncode == ExitCode.MODEL_FAILURE, err
    # The signal depends on the build (SIGABRT here); the file named is what matters.
    assert re.search(r"llama\.cpp crashed \(SIG[A-Z]+\) while loading flipped\.gguf", err) and "Traceback" not in err
    assert not (tmp_path / "out.gguf").exists()
    # A good input is vouched for once (the verdict cache the language model's guard uses), then quantized.
    good = run_askgpt(["convert", "quantize", str(tmp_path / "base.gguf"), str(tmp_path / "q.gguf"), "--type",
                       "Q8_0"], env={"ASKGPT_HOME": str(home)})
    assert good.returncode == 0, good.stderr
    from askgpt.runtime.engine.guard import VERDICTS_FILE

    assert str((tmp_path / "base.gguf").resolve()) in (home / "cache" / VERDICTS_FILE).read_text()


@pytest.mark.model
def test_a_projector_that_crashes_llama_cpp_is_one_line_and_a_good_one_is_vouched_for(tmp_path: Path) -> None:
    from mmproj_file import write_mmproj
    from PIL import Image

    from askgpt.runtime.engine.guard import VERDICTS_FILE, ensure_projector_loads_safely
    from askgpt.runtime.models.registry import builtin_model

    broken = write_mmproj(tmp_path / "mmproj-broken.gguf", 576, heads=5)  # 64 wide in 5 heads: ggml aborts
    home = tmp_path / "home"
    image = tmp_path / "grey.png"
    Image.new("RGB", (32, 32), (128, 128, 128)).save(image)
    result = run_askgpt(["-n", "4", "describe", "-i", str(image), "--mmproj", str(broken)],
                        env={"ASKGPT_HOME": str(home)}, timeout=300)
    err = result.stderr.decode()
    assert result.returncode == ExitCode.MODEL_FAILURE, err
    assert re.search(r"llama\.cpp crashed \(SIG[A-Z]+\) while loading mmproj-broken\.gguf", err)
    assert "Traceback" not in err
    good = write_mmproj(tmp_path / "mmproj-good.gguf", 576)
    assert ensure_projector_loads_safely(good, builtin_model().path, tmp_path) is True
    assert ensure_projector_loads_safely(good, builtin_model().path, tmp_path) is False  # remembered
    assert str(good.resolve()) in (tmp_path / VERDICTS_FILE).read_text()


def test_a_safetensors_checkpoint_under_another_name_is_read_as_safetensors(tmp_path: Path) -> None:
    """open_clip picks its loader by the file name; askgpt hands it safetensors bytes under a
    .safetensors name, so torch.load (which would fail on these bytes) is never used."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file
    from test_clip import TINY

    from askgpt.convert.clip import ClipSetupConfig, setup_clip
    from askgpt.runtime.files import sha256_file

    config = tmp_path / "tiny-clip.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None, pretrained_text=False).eval()
    checkpoint = tmp_path / "weights.bin"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    report = setup_clip(ClipSetupConfig("tiny-clip", checkpoint=checkpoint, model_config=config, int8=False,
                                        threads=2), tmp_path / "data")
    assert report.meta.source == f"checkpoint:{sha256_file(checkpoint)}"
