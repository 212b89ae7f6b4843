"""llama.cpp's own log lines reach stderr only with --debug; its errors become the detail of ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.errors import ModelLoadError
from askgpt.runtime.models.registry import ModelRef
from conftest import builtin_without, run_askgpt

pytestmark = pytest.mark.model


def test_a_warning_at_context_creation_stays_off_stderr() -> None:
    # A context past the training length makes llama.cpp warn while it creates the
    # context, the same path as Gemma 3's SWA notice; llama-cpp-python's own logger
    # lets such warnings through even with verbose=False.
    args = ["--ctx", "16384", "-n", "3", "-t", "0", "hi"]
    quiet = run_askgpt(["-q", *args])
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == b""
    plain = run_askgpt(args)
    assert b"n_ctx_train" not in plain.stderr and b"llama_context" not in plain.stderr
    assert b"askgpt: " in plain.stderr  # askgpt's own warning about the long context
    debug = run_askgpt(["--debug", *args])
    assert debug.returncode == 0, debug.stderr
    assert b"n_ctx_train" in debug.stderr  # the native line, shown on request


@pytest.fixture(scope="module")
def model_without_pretokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model without `tokenizer.ggml.pre`: llama.cpp warns while loading it."""
    return builtin_without("tokenizer.ggml.pre", tmp_path_factory.mktemp("models"))


def test_load_warnings_show_only_with_debug(model_without_pretokenizer: Path) -> None:
    args = ["-m", str(model_without_pretokenizer), "-q", "-n", "3", "-t", "0", "hi"]
    quiet = run_askgpt(args)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == b""
    debug = run_askgpt(["--debug", *args])
    assert b"missing pre-tokenizer" in debug.stderr


def test_native_lines_go_to_the_configured_sink_in_process(model_without_pretokenizer: Path) -> None:
    lines: list[str] = []
    engine = load_llama_engine(ModelRef("no-pre", model_without_pretokenizer), EngineConfig(
        n_ctx=512, native_log=lines.append))
    engine.close()
    assert any("missing pre-tokenizer" in line for line in lines)
    before = len(lines)
    silent = load_llama_engine(ModelRef("no-pre", model_without_pretokenizer), EngineConfig(n_ctx=512))
    silent.close()
    assert len(lines) == before  # a later load without a sink does not feed the earlier one


def test_a_load_error_carries_llama_cpp_s_own_reason(tmp_path: Path) -> None:
    from gguf_corpus import write_base

    cut = tmp_path / "cut.gguf"  # well formed (askgpt's header check passes it), but of no known architecture
    write_base(cut, arch="nosucharch")
    with pytest.raises(ModelLoadError) as err:
        load_llama_engine(ModelRef("cut", cut), EngineConfig(n_ctx=512))
    message = err.value.message
    assert message.startswith("llama.cpp could not load cut.gguf: ")
    assert "nosucharch" in message
    # llama.cpp's first error line says why, not only that loading failed.
    assert "Failed to load model from file" not in message and "\n" not in message
